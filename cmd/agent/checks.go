package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/blindspot-dev/blindspot/probes"
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

// minKernel is the oldest Linux with every kernelFeature.
const minKernel = "5.15"

// kernelFeature is something the probe programs use that older kernels
// lack. Each is probed at start-up, not guessed from the kernel version
// (distributions backport). What else the programs use is older than the
// newest of these: bpf_probe_read_user (5.5), global variables (5.2),
// ring buffers as inner maps of an array of maps; uprobe_multi links
// (6.6) are used only where the kernel has them.
type kernelFeature struct {
	name, since string
	probe       func() error
}

var kernelFeatures = []kernelFeature{
	// Every family sends its events through BPF ring buffers (one per CPU,
	// in an array of maps).
	{"BPF ring buffers", "5.8", func() error { return features.HaveMapType(ebpf.RingBuf) }},
	// The business functions' programs read which entry fired from the
	// uprobe's BPF cookie; they are loaded with the others.
	{"BPF cookies on uprobes (bpf_get_attach_cookie)", "5.15", func() error {
		return features.HaveProgramHelper(ebpf.Kprobe, asm.FnGetAttachCookie)
	}},
}

// checkKernel says which kernel feature the probe programs need is missing.
// A probe that fails for another reason (a refused bpf(2) call) is left
// for the loader to report.
func checkKernel(fs []kernelFeature) error {
	for _, f := range fs {
		if err := f.probe(); errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("this kernel lacks %s (Linux %s): blindspot needs Linux %s or newer", f.name, f.since, minKernel)
		}
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
		return fmt.Errorf("load BPF programs: %w: blindspot needs Linux %s or newer (BPF ring buffers, BPF cookies on uprobes)", err, minKernel)
	}
	return fmt.Errorf("load BPF programs: %w", err)
}

// testProbeOptions returns the probe manager's options, which only tests
// change: BLINDSPOT_TEST_READ_DELAY (a Go duration up to 1s) slows every
// ring reader by that much per event, and BLINDSPOT_TEST_RING_BYTES (a power
// of two from 4096) shrinks the rings, and BLINDSPOT_TEST_MAX_IN_FLIGHT
// shrinks the maps of calls in flight, so that test/e2e can fill them and
// check that every lost event is counted; BLINDSPOT_TEST_SINGLE_UPROBES=1
// attaches one perf-event uprobe per site, as kernels before 6.6 must, so
// that the fault tests cover that path too. Undocumented on purpose: no user
// needs them.
func testProbeOptions() *probes.Options {
	var o probes.Options
	if d, err := time.ParseDuration(os.Getenv("BLINDSPOT_TEST_READ_DELAY")); err == nil && d > 0 && d <= time.Second {
		o.ReadDelay = d
	}
	if n, err := strconv.Atoi(os.Getenv("BLINDSPOT_TEST_RING_BYTES")); err == nil && n >= 4096 && n&(n-1) == 0 {
		o.RingBytes = n
	}
	if n, err := strconv.Atoi(os.Getenv("BLINDSPOT_TEST_MAX_IN_FLIGHT")); err == nil && n > 0 {
		o.MaxInFlight = n
	}
	o.SingleUprobes = os.Getenv("BLINDSPOT_TEST_SINGLE_UPROBES") == "1"
	if o == (probes.Options{}) {
		return nil
	}
	return &o
}
