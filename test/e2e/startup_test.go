package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStartupErrors checks that every start-up failure is reported as one
// line "blindspot: ..." on stderr with a non-zero exit within 10s.
func TestStartupErrors(t *testing.T) {
	requireBPF(t) // the agent must get past the privilege check where meant to
	writeFile := func(t *testing.T, name, content string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// fakeSys builds a fake sysfs tree holding the given files.
	fakeSys := func(t *testing.T, files ...string) string {
		root := t.TempDir()
		for _, f := range files {
			p := filepath.Join(root, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	cases := []struct {
		name  string
		setup func(t *testing.T) (args, env []string, cred *syscall.Credential, bin string)
		want  []string
	}{
		{"bad YAML", func(t *testing.T) ([]string, []string, *syscall.Credential, string) {
			return []string{"--config", writeFile(t, "bad.yaml", "include: [exe: \"/x\"\n  - : :\n")}, nil, nil, ""
		}, []string{"config"}},
		{"unknown key", func(t *testing.T) ([]string, []string, *syscall.Credential, string) {
			return []string{"--config", writeFile(t, "unknown.yaml", "discovery_interval: 1s\nbogus_key: 3\n")}, nil, nil, ""
		}, []string{"config", "bogus_key"}},
		{"config is a device", func(t *testing.T) ([]string, []string, *syscall.Credential, string) {
			return []string{"--config", "/dev/zero"}, nil, nil, ""
		}, []string{"config", "/dev/zero", "not a regular file"}},
		{"config is a FIFO", func(t *testing.T) ([]string, []string, *syscall.Credential, string) {
			p := filepath.Join(t.TempDir(), "fifo")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{"--config", p}, nil, nil, ""
		}, []string{"config", "not a regular file (a FIFO)"}},
		{"two documents", func(t *testing.T) ([]string, []string, *syscall.Credential, string) {
			return []string{"--config", writeFile(t, "two.yaml", "series_limit: 10\n---\ninclude: [{exe: /x}]\n")}, nil, nil, ""
		}, []string{"config", "more than one YAML document"}},
		{"discovery every 1ns", func(t *testing.T) ([]string, []string, *syscall.Credential, string) {
			return []string{"--config", writeFile(t, "fast.yaml", "discovery_interval: 1ns\n")}, nil, nil, ""
		}, []string{"config", "discovery_interval", "at least"}},
		{"runtime every 1ns", func(t *testing.T) ([]string, []string, *syscall.Credential, string) {
			return []string{"--config", writeFile(t, "fast.yaml", "runtime:\n  interval: 1ns\n")}, nil, nil, ""
		}, []string{"config", "runtime.interval", "at least"}},
		{"port in use", func(t *testing.T) ([]string, []string, *syscall.Credential, string) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return []string{"--web.listen-address", l.Addr().String()}, nil, nil, ""
		}, []string{"address already in use"}},
		{"not root", func(t *testing.T) ([]string, []string, *syscall.Credential, string) {
			return nil, nil, &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}, filepath.Join(env.nobodyDir, "blindspot")
		}, []string{"insufficient privileges", "CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}},
		{"no BTF", func(t *testing.T) ([]string, []string, *syscall.Credential, string) {
			return nil, []string{"BLINDSPOT_SYS_ROOT=" + fakeSys(t, "bus/event_source/devices/uprobe/type")}, nil, ""
		}, []string{"kernel BTF unavailable"}},
		{"no uprobes", func(t *testing.T) ([]string, []string, *syscall.Credential, string) {
			return nil, []string{"BLINDSPOT_SYS_ROOT=" + fakeSys(t, "kernel/btf/vmlinux")}, nil, ""
		}, []string{"uprobes unavailable", "CONFIG_UPROBE_EVENTS"}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			args, extraEnv, cred, bin := c.setup(t)
			if bin == "" {
				bin = env.agent
			}
			if !hasFlag(args, "--web.listen-address") {
				args = append(args, "--web.listen-address", freePort(t))
			}
			ctx, cancel := context.WithTimeout(env.ctx, 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = append(filteredEnv("BLINDSPOT_SYS_ROOT"), extraEnv...)
			cmd.Dir = "/"
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
			start := time.Now()
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("agent still running after 10s (killed); stderr:\n%s", stderr.String())
			}
			t.Logf("exited after %v: %v", time.Since(start).Round(time.Millisecond), err)
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() == 0 {
				t.Errorf("exit: %v, want a non-zero exit status", err)
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "blindspot: ") {
				t.Fatalf("stderr is %d lines, want one line starting \"blindspot: \":\n%s", len(lines), stderr.String())
			}
			for _, w := range c.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("stderr %q does not contain %q", lines[0], w)
				}
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout not empty: %q", stdout.String())
			}
		})
	}
}

// hasFlag reports whether args contain flag.
func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}
