package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blindspot-dev/blindspot/test/testrepo"
	"golang.org/x/sys/unix"
)

// TestCaps runs the agent as root with every capability dropped except the
// set cmd/agent/checks.go declares: with exactly that set it instruments a
// target, readable or not (mode 0711, another owner), exactly; without any
// one of them it exits within seconds naming the missing capability.
func TestCaps(t *testing.T) {
	requireBPF(t)
	setpriv := requireTool(t, "/usr/bin/setpriv", "util-linux")
	caps := declaredCaps(t)
	v := variantByName(t, "go126-plain")

	t.Run("exact_set", func(t *testing.T) {
		// A copy of the target that only its owner (nobody) may read.
		b, err := os.ReadFile(v.exe)
		if err != nil {
			t.Fatal(err)
		}
		unreadable := filepath.Join(env.dir, fmt.Sprintf("httpserver-caps-0711-%d", serviceSeq.Add(1)))
		if err := os.WriteFile(unreadable, b, 0o711); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(unreadable) })
		if err := os.Chown(unreadable, 65534, 65534); err != nil {
			t.Fatal(err)
		}

		a := startAgentUnder(t, setprivArgs(setpriv, caps), "")
		if got, want := capEff(t, a.cmd.Process.Pid), capMask(t, caps); got != want {
			t.Fatalf("agent's effective capabilities %#x, want exactly %#x (%v)", got, want, caps)
		}
		for _, exe := range []string{v.exe, unreadable} {
			tp := startTarget(t, exe, uniqueService("caps", v))
			a.waitTargeted(t, tp.pid, 10*time.Second)
			countTeapots(t, a, tp, 7, filepath.Base(exe))
			// The runtime sampler reads the program's memory (process_vm_readv).
			if !waitFor(10*time.Second, func() bool {
				s, err := a.scrape()
				if err != nil {
					return false
				}
				g, ok := s.value("go_goroutine_count", map[string]string{"service_name": tp.service})
				return ok && g >= 1
			}) {
				t.Errorf("%s: no go_goroutine_count for %s within 10s", filepath.Base(exe), tp.service)
			}
		}
	})

	for _, missing := range caps {
		t.Run("without_"+missing, func(t *testing.T) {
			var rest []string
			for _, c := range caps {
				if c != missing {
					rest = append(rest, c)
				}
			}
			ctx, cancel := context.WithTimeout(env.ctx, 10*time.Second)
			defer cancel()
			args := append(setprivArgs(setpriv, rest), env.agent, "--web.listen-address", freePort(t))
			cmd := exec.CommandContext(ctx, args[0], args[1:]...)
			cmd.Dir = "/"
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			start := time.Now()
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("agent still running after 10s without %s (killed); stderr:\n%s", missing, stderr.String())
			}
			t.Logf("exited after %v: %v", time.Since(start).Round(time.Millisecond), err)
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
				t.Errorf("exit: %v, want a non-zero exit status", err)
			}
			line := strings.TrimRight(stderr.String(), "\n")
			want := "blindspot: insufficient privileges: missing " + missing + ":"
			if strings.Contains(line, "\n") || !strings.HasPrefix(line, want) {
				t.Errorf("stderr %q, want one line starting %q", line, want)
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout not empty: %q", stdout.String())
			}
		})
	}
}

// declaredCaps returns the capability names in neededCaps of
// cmd/agent/checks.go, in order.
func declaredCaps(t *testing.T) []string {
	t.Helper()
	caps, err := testrepo.DeclaredCaps(env.repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	return caps
}

// setprivArgs is a setpriv command line that runs what follows as root with
// exactly caps: inheritable, ambient and bounding sets hold only them, and
// no new privileges can be gained.
func setprivArgs(setpriv string, caps []string) []string {
	set := "-all"
	for _, c := range caps {
		set += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	return []string{setpriv, "--reuid=0", "--regid=0", "--clear-groups",
		"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set, "--no-new-privs"}
}

// capMask is the capability bit mask of the named capabilities.
func capMask(t *testing.T, caps []string) uint64 {
	t.Helper()
	bits := map[string]int{
		"CAP_BPF": unix.CAP_BPF, "CAP_PERFMON": unix.CAP_PERFMON, "CAP_SYS_PTRACE": unix.CAP_SYS_PTRACE,
		"CAP_DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH, "CAP_DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE,
		"CAP_SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN,
		"CAP_NET_ADMIN": unix.CAP_NET_ADMIN, "CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	}
	var m uint64
	for _, c := range caps {
		b, ok := bits[c]
		if !ok {
			t.Fatalf("capMask does not know %s", c)
		}
		m |= 1 << b
	}
	return m
}

// capEff reads the effective capability set of pid.
func capEff(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatalf("no CapEff in /proc/%d/status", pid)
	return 0
}

// startAgentUnder is startAgent with the agent's command line prefixed by
// wrapper (e.g. setpriv ...), which must exec the agent in its own process.
func startAgentUnder(t *testing.T, wrapper []string, extraYAML string) *agentProc {
	t.Helper()
	return startAgentCmd(t, wrapper, extraYAML, nil, "http", agentClient, "", "")
}

// countTeapots sends n requests for /teapot to tp and checks that the
// agent counts exactly n for its service (what names the program in a
// failure).
func countTeapots(t *testing.T, a *agentProc, tp *targetProc, n uint64, what string) {
	t.Helper()
	for i := uint64(0); i < n; i++ {
		if code, _, err := tp.do("GET", "/teapot"); err != nil || code != 418 {
			t.Fatalf("GET /teapot: %d %v", code, err)
		}
	}
	waitFor(10*time.Second, func() bool {
		s, err := a.scrape()
		return err == nil && total(s.httpSeries(t, tp.service)) >= n
	})
	// Give a late event the chance to show as an over-count.
	time.Sleep(500 * time.Millisecond)
	ss := a.mustScrape(t).httpSeries(t, tp.service)
	if got := total(ss); got != n {
		t.Errorf("%s: %d requests counted, want %d: %s", what, got, n, dump(ss))
	}
}
