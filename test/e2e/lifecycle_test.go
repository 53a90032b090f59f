package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLateStart checks that a program started after the agent is
// instrumented (within the test's bound of 10s). How soon is a performance
// figure, not a test assertion (no timing assertions in tests: on a loaded
// machine it took 2.9s): make bench measures attach time, and the latency
// seen here is logged.
func TestLateStart(t *testing.T) {
	requireBPF(t)
	cases := []struct {
		name, variant string
		outOfScope    int // Go programs outside the include glob, running before the agent
	}{
		{"go126-plain", "go126-plain", 0},
		{"go119-stripped", "go119-stripped", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := variantByName(t, c.variant)
			if c.outOfScope > 0 {
				startOutOfScope(t, v, c.outOfScope)
			}
			a := startAgent(t, "")
			time.Sleep(700 * time.Millisecond) // not just after a /proc scan
			tp := startTarget(t, v.exe, uniqueService("late", v))
			var latency time.Duration
			ok := waitFor(10*time.Second, func() bool {
				if a.findTarget(tp.pid) != nil {
					latency = time.Since(tp.started)
					return true
				}
				return false
			})
			if !ok {
				t.Fatalf("pid %d not in /targets 10s after its exec", tp.pid)
			}
			t.Logf("%s: in /targets %v after exec (%d other Go programs outside the include glob)",
				v.name, latency.Round(time.Millisecond), c.outOfScope)
		})
	}
}

// startOutOfScope runs n copies of v's executable from a directory the
// agent's include glob does not match, each under its own file name.
func startOutOfScope(t *testing.T, v variant, n int) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		exe := filepath.Join(dir, fmt.Sprintf("other-%d", i))
		if out, err := exec.Command("cp", v.exe, exe).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		startTarget(t, exe, fmt.Sprintf("e2e-out-of-scope-%d", i))
	}
}

// TestExitCleanup checks that a killed program leaves /targets and
// blindspot_targets, and that the agent closes every file descriptor it
// opened for it (perf events, BPF links, ring buffers), but for at most its
// cached executable.
func TestExitCleanup(t *testing.T) {
	requireBPF(t)
	a := startAgent(t, "")
	apid := a.cmd.Process.Pid
	for _, name := range []string{"go126-pie", "go119-plain"} {
		t.Run(name, func(t *testing.T) {
			v := variantByName(t, name)
			before, beforeLinks := stableFDCount(apid)
			tp := startTarget(t, v.exe, uniqueService("exit", v))
			a.waitTargeted(t, tp.pid, 10*time.Second)
			for i := 0; i < 5; i++ {
				if _, _, err := tp.do("GET", "/items/1"); err != nil {
					t.Fatal(err)
				}
			}
			waitTotal(t, a, tp.service, 5, 10*time.Second)
			during, _ := fdCount(apid)
			if n, ok := a.mustScrape(t).value("blindspot_targets", nil); !ok || n != 1 {
				t.Errorf("blindspot_targets = %v (present %v) while attached, want 1", n, ok)
			}

			tp.kill()
			killed := time.Now()
			if !waitFor(5*time.Second, func() bool { return a.findTarget(tp.pid) == nil }) {
				t.Fatalf("pid %d still in /targets 5s after it was killed", tp.pid)
			}
			t.Logf("left /targets %v after the kill", time.Since(killed).Round(time.Millisecond))
			if n, ok := a.mustScrape(t).value("blindspot_targets", nil); !ok || n != 0 {
				t.Errorf("blindspot_targets = %v (present %v) after exit, want 0", n, ok)
			}
			if _, ok := a.mustScrape(t).value("blindspot_target_info", map[string]string{"service_name": tp.service}); ok {
				t.Errorf("blindspot_target_info still lists %s after exit", tp.service)
			}
			// Everything opened for the target must be closed, except that the
			// agent may keep the parsed executable itself open for a while
			// (its cache of recently released binaries, bounded in count and
			// time) in case the program starts again.
			var after int
			var leaked []string
			ok := waitFor(5*time.Second, func() bool {
				var afterLinks map[string]string
				after, afterLinks = fdCount(apid)
				leaked = nil
				for _, d := range fdDiff(beforeLinks, afterLinks) {
					if !strings.HasSuffix(d, " -> "+v.exe) {
						leaked = append(leaked, d)
					}
				}
				return len(leaked) == 0 && after <= before+1
			})
			t.Logf("agent fds: %d before, %d attached, %d after exit", before, during, after)
			if !ok {
				t.Errorf("agent has %d fds 5s after the target exited, %d before it started; not released: %v",
					after, before, leaked)
			}
		})
	}
}

// tracefs is where uprobe_events lives; mountTracefs mounts it there if
// needed and unmounts it when the test ends.
const tracefs = "/sys/kernel/tracing"

func mountTracefs(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(tracefs, "uprobe_events")); err == nil {
		return
	}
	if err := syscall.Mount("nodev", tracefs, "tracefs", 0, ""); err != nil {
		t.Fatalf("mount tracefs at %s: %v", tracefs, err)
	}
	t.Cleanup(func() { syscall.Unmount(tracefs, 0) })
}

// uprobeEventsMentioning returns the lines of uprobe_events naming exe.
func uprobeEventsMentioning(t *testing.T, exe string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(tracefs, "uprobe_events"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), exe) || strings.Contains(sc.Text(), filepath.Base(exe)) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// TestSignals checks that SIGTERM and SIGINT each stop the agent cleanly
// (exit 0 within 10s), that the observed program keeps serving and that no
// uprobe is left on it.
func TestSignals(t *testing.T) {
	requireBPF(t)
	mountTracefs(t)
	cases := []struct {
		sig     syscall.Signal
		variant string
	}{
		{syscall.SIGTERM, "go126-plain"},
		{syscall.SIGINT, "go119-pie"},
	}
	for _, c := range cases {
		t.Run(c.sig.String(), func(t *testing.T) {
			v := variantByName(t, c.variant)
			a := startAgent(t, "")
			tp := startTarget(t, v.exe, uniqueService("signal", v))
			a.waitTargeted(t, tp.pid, 10*time.Second)
			burst := func() {
				t.Helper()
				for i := 0; i < 10; i++ {
					if code, body, err := tp.do("GET", "/items/7"); err != nil || code != 200 || body != "item 7\n" {
						t.Fatalf("GET /items/7: %d %q %v", code, body, err)
					}
				}
				if code, _, err := tp.do("GET", "/deep?depth=20000"); err != nil || code != 200 {
					t.Fatalf("GET /deep: %d %v", code, err)
				}
			}
			burst()
			waitTotal(t, a, tp.service, 11, 10*time.Second)
			t.Logf("uprobe_events lines for the target while attached: %d", len(uprobeEventsMentioning(t, v.exe)))

			start := time.Now()
			err, inTime := a.stop(c.sig, 10*time.Second)
			if !inTime {
				t.Fatalf("agent still running 10s after %v (killed)", c.sig)
			}
			t.Logf("agent exited %v after %v: %v", time.Since(start).Round(time.Millisecond), c.sig, err)
			if err != nil {
				t.Errorf("agent exit after %v: %v, want exit status 0\n%s", c.sig, err, a.stderr.String())
			}
			if !tp.alive() {
				t.Fatalf("target died with the agent: %v", tp.err)
			}
			if lines := uprobeEventsMentioning(t, v.exe); len(lines) > 0 {
				t.Errorf("uprobe_events still mentions %s after the agent stopped:\n%s", v.exe, strings.Join(lines, "\n"))
			}
			burst()
			time.Sleep(200 * time.Millisecond)
			if !tp.alive() {
				t.Fatalf("target died after the agent stopped: %v", tp.err)
			}
			checkOnlyPanicLogs(t, tp.stderr.String(), 0)
		})
	}
}

// TestConfigNarrowing checks that exclude rules (by service name) and
// include rules (by executable path) keep programs out of /targets and
// /metrics.
func TestConfigNarrowing(t *testing.T) {
	requireBPF(t)
	v := variantByName(t, "go126-plain")
	a := startAgent(t, "exclude:\n  - service: \"e2e-excluded-*\"\n")

	// A copy of the target outside the include glob (a subdirectory).
	sub := filepath.Join(env.dir, "narrowing-sub")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(sub, "hs-outside")
	if out, err := exec.Command("cp", v.exe, outside).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}

	excluded := startTarget(t, v.exe, "e2e-excluded-"+v.name)
	notIncluded := startTarget(t, outside, uniqueService("outside", v))
	kept := startTarget(t, v.exe, uniqueService("kept", v))
	a.waitTargeted(t, kept.pid, 10*time.Second)
	time.Sleep(1500 * time.Millisecond) // three more discovery intervals

	for _, tp := range []*targetProc{excluded, notIncluded, kept} {
		for i := 0; i < 3; i++ {
			if _, _, err := tp.do("GET", "/nothing"); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitTotal(t, a, kept.service, 3, 10*time.Second)
	s := a.mustScrape(t)
	for _, tp := range []*targetProc{excluded, notIncluded} {
		if a.findTarget(tp.pid) != nil {
			t.Errorf("%s (pid %d, %s) is in /targets", tp.service, tp.pid, tp.exe)
		}
		if ss := s.httpSeries(t, tp.service); len(ss) > 0 {
			t.Errorf("%s has series:\n%s", tp.service, dump(ss))
		}
		if _, ok := s.value("blindspot_target_info", map[string]string{"service_name": tp.service}); ok {
			t.Errorf("blindspot_target_info lists %s", tp.service)
		}
	}
	if n, ok := s.value("blindspot_targets", nil); !ok || n != 1 {
		t.Errorf("blindspot_targets = %v, want 1", n)
	}
}

// procIO returns a field of /proc/PID/io, e.g. "rchar".
func procIO(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+": "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/io", field, pid)
	return 0
}

// fileSize returns the size of a file, or 0.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// TestOutOfScopeProgramsIgnored checks that the agent does not read the
// executables of Go programs its include rule leaves out: with 20 of them
// running, what the agent reads until it has instrumented one in-scope
// program must stay within the kernel BTF, that one program and some slack.
// (An agent that parses every Go binary before filtering spends seconds of
// CPU on a busy host and instruments wanted programs late.)
func TestOutOfScopeProgramsIgnored(t *testing.T) {
	requireBPF(t)
	v := variantByName(t, "go126-plain")
	const n = 20
	startOutOfScope(t, v, n)
	a := startAgent(t, "")
	apid := a.cmd.Process.Pid
	// The first /proc scan is handled before any later exec, so once this
	// target is listed every out-of-scope program has been considered.
	tp := startTarget(t, v.exe, uniqueService("in-scope", v))
	a.waitTargeted(t, tp.pid, 15*time.Second)
	read := procIO(t, apid, "rchar")
	exeSize := fileSize(v.exe)
	budget := fileSize("/sys/kernel/btf/vmlinux") + 2*exeSize + 16<<20
	t.Logf("agent read %.1f MiB by the time it instrumented the in-scope program (budget %.1f MiB; %d out-of-scope programs of %.1f MiB each)",
		float64(read)/(1<<20), float64(budget)/(1<<20), n, float64(exeSize)/(1<<20))
	if read > budget {
		t.Errorf("agent read %d bytes, want <= %d: it reads executables outside its include glob", read, budget)
	}
	skipped, _ := a.targets("skipped")
	for _, s := range skipped {
		if strings.Contains(s.Exe, "elsewhere") {
			t.Errorf("/targets?state=skipped lists out-of-scope %s", s.Exe)
		}
	}
}
