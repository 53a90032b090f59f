package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// sysRoot is where kernel interfaces are looked up; tests point it at a
// fake tree to check the start-up errors of kernels they cannot boot.
var sysRoot = envOr("BLINDSPOT_SYS_ROOT", "/sys")

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// neededCaps is the exact capability set the agent needs, proven by
// test/e2e/caps_test.go (the agent with only these instruments a target;
// without any one it refuses to start) and granted by
// deploy/blindspot.service and deploy/daemonset.yaml (test/deploy checks it).
var neededCaps = []struct {
	bit  uint
	name string
}{
	// Create BPF maps and load the probe programs (bpf(2)).
	{unix.CAP_BPF, "CAP_BPF"},
	// Attach uprobes through perf_event_open(2) and load tracing programs.
	{unix.CAP_PERFMON, "CAP_PERFMON"},
	// Open /proc/PID/exe and read other programs' memory (process_vm_readv).
	{unix.CAP_SYS_PTRACE, "CAP_SYS_PTRACE"},
	// Read executables not readable by the agent's user (e.g. mode 0711).
	{unix.CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"},
}

// checkSystem says, before anything is loaded, what keeps this host from
// running the agent and what to do about it.
func checkSystem() error {
	if missing := missingCaps(); len(missing) > 0 {
		return fmt.Errorf("insufficient privileges: missing %s: run blindspot as root, or grant it these capabilities (as deploy/blindspot.service and deploy/daemonset.yaml do)", strings.Join(missing, ", "))
	}
	if _, err := os.Stat(filepath.Join(sysRoot, "kernel/btf/vmlinux")); err != nil {
		return errors.New("kernel BTF unavailable (no /sys/kernel/btf/vmlinux): use a kernel built with CONFIG_DEBUG_INFO_BTF=y")
	}
	if _, err := os.Stat(filepath.Join(sysRoot, "bus/event_source/devices/uprobe")); err != nil {
		return errors.New("uprobes unavailable: kernel built without CONFIG_UPROBE_EVENTS (no /sys/bus/event_source/devices/uprobe)")
	}
	return nil
}

func missingCaps() []string {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil // cannot tell: let the loader report what fails
	}
	var missing []string
	for _, c := range neededCaps {
		if data[c.bit/32].Effective&(1<<(c.bit%32)) == 0 {
			missing = append(missing, c.name)
		}
	}
	return missing
}

func possibleCPUs() int {
	n, err := ebpf.PossibleCPU()
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// explainLoadError turns a failure to load the BPF programs into advice.
func explainLoadError(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("load BPF programs: %w: run blindspot as root (or with CAP_BPF and CAP_PERFMON), and check that kernel.unprivileged_bpf_disabled or a security module does not forbid it", err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("load BPF programs: %w: blindspot needs Linux 5.8 or newer with BPF ring buffers", err)
	}
	return fmt.Errorf("load BPF programs: %w", err)
}
