package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/blindspot-dev/blindspot/test/crafted"
)

// maxAgentRSS bounds the agent's resident memory while it reads the damaged
// binaries (it holds 40-90 MB watching a few programs).
const maxAgentRSS = 300 << 20

// TestHostileBinaries runs damaged copies of the HTTP server — tables that
// lie (every function naming one long name, huge counts, a pclntab outside
// the file), overlapping or long-named sections, a truncated file, a
// damaged .symtab — as a hostile user of the host could. Each still serves
// requests. The agent skips those it cannot read with a reason in
// /targets?state=skipped, instruments those whose damage spares what it
// needs, and keeps its memory bounded, its endpoints answering and its
// discovery going: a clean program started after them is instrumented and
// counted exactly.
func TestHostileBinaries(t *testing.T) {
	requireBPF(t)
	stripped, err := os.ReadFile(variantByName(t, "go126-stripped").exe)
	if err != nil {
		t.Fatal(err)
	}
	plainV := variantByName(t, "go126-plain")
	plain, err := os.ReadFile(plainV.exe)
	if err != nil {
		t.Fatal(err)
	}
	type damaged struct {
		name   string
		data   []byte
		refuse bool // the agent cannot read it
	}
	var all []damaged
	for _, v := range crafted.Variants(512 << 10) {
		data, err := v.Make(stripped)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		all = append(all, damaged{"stripped-" + v.Name, data, true})
	}
	for name, damage := range map[string]func([]byte) ([]byte, error){
		"symtab-overlapping-names": crafted.OverlappingSymbolNames,
		"symtab-broken-link":       crafted.BrokenSymtabLink,
	} {
		data, err := damage(plain)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		all = append(all, damaged{name, data, false})
	}
	truncated, err := crafted.Truncated(plain)
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, damaged{"truncated", truncated, true})

	a := startAgent(t, "")
	cpu0 := agentCPU(t, a)
	for _, d := range all {
		exe := filepath.Join(env.dir, "hostile-"+d.name)
		if err := os.WriteFile(exe, d.data, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(exe) })
		// Twice: the second exec of a file that failed to parse is not
		// parsed again.
		for run := 0; run < 2; run++ {
			tp := startTarget(t, exe, "e2e-hostile-"+d.name)
			if code, _, err := tp.do("GET", "/items/1"); err != nil || code != 200 {
				t.Fatalf("%s does not serve: %d %v", d.name, code, err)
			}
			var verdict string
			ok := waitFor(10*time.Second, func() bool {
				if ts := a.findTarget(tp.pid); ts != nil {
					verdict = "instrumented"
					return true
				}
				skipped, err := a.targets("skipped")
				if err != nil {
					return false
				}
				for _, s := range skipped {
					if s.PID == tp.pid {
						verdict = "skipped"
						return true
					}
				}
				return false
			})
			if !ok {
				t.Fatalf("%s (pid %d): neither in /targets nor skipped within 10s", d.name, tp.pid)
			}
			if want := map[bool]string{true: "skipped", false: "instrumented"}[d.refuse]; verdict != want {
				b, _ := a.get("/targets?state=skipped")
				t.Errorf("%s: %s, want %s; skipped: %s", d.name, verdict, want, b)
			}
			if verdict == "skipped" {
				reason := skippedReason(a, tp.pid)
				if !strings.Contains(reason, "read executable") {
					t.Errorf("%s: reason %q does not say the executable could not be read", d.name, reason)
				}
				if run == 0 {
					t.Logf("%s: skipped: %s", d.name, reason)
				}
			} else if run == 0 {
				t.Logf("%s: instrumented", d.name)
			}
			tp.kill()
		}
		if rss := agentRSS(t, a); rss > maxAgentRSS {
			t.Fatalf("after %s the agent holds %d MB, bound %d MB", d.name, rss>>20, maxAgentRSS>>20)
		}
	}
	t.Logf("the agent spent %v of CPU on %d execs of damaged binaries", agentCPU(t, a)-cpu0, 2*len(all))
	select {
	case <-a.done:
		t.Fatalf("the agent exited: %v\n%s", a.err, a.stderr.String())
	default:
	}
	if b, err := a.get("/healthz"); err != nil || !bytes.Contains(b, []byte("ok")) {
		t.Fatalf("/healthz: %q %v", b, err)
	}
	// Discovery goes on: a clean program is instrumented and counted.
	tp := startTarget(t, plainV.exe, uniqueService("after-hostile", plainV))
	a.waitTargeted(t, tp.pid, 10*time.Second)
	const n = 20
	time.Sleep(300 * time.Millisecond) // probes attached before the traffic
	for i := 0; i < n; i++ {
		if code, _, err := tp.do("GET", "/items/"+strconv.Itoa(i)); err != nil || code != 200 {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
	}
	var got uint64
	if !waitFor(10*time.Second, func() bool {
		s, err := a.scrape()
		if err != nil {
			return false
		}
		got = total(s.httpSeries(t, tp.service))
		return got == n
	}) {
		t.Fatalf("clean program after the hostile ones: %d requests counted, want %d", got, n)
	}
	t.Logf("agent RSS at the end: %d MB", agentRSS(t, a)>>20)
}

// TestHostileCyclicTypeData runs a copy of the HTTP server whose DWARF
// makes the type of a business function's parameter a struct that contains
// itself (crafted.CyclicDWARFType; no Go type can), with a business entry
// that reads that parameter: the walk of its type used to recurse until the
// agent's stack overflowed, a fatal error. The agent now refuses the entry
// in that program with a reason in /targets, instruments the rest of it,
// stays alive with its memory bounded, and measures a clean program of the
// same entry exactly afterwards.
func TestHostileCyclicTypeData(t *testing.T) {
	requireBPF(t)
	v := variantByName(t, "go126-plain")
	plain, err := os.ReadFile(v.exe)
	if err != nil {
		t.Fatal(err)
	}
	data, err := crafted.CyclicDWARFType(plain, "main.slow", "r")
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(env.dir, "hostile-cyclic-type")
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(exe) })
	prefix := fmt.Sprintf("e2e-hostile-cyclic-%d-", serviceSeq.Add(1))
	const metric = "hostile_slow_duration_seconds"
	a := startAgent(t, fmt.Sprintf(`
functions:
  - metric: %s
    service: "%s*"
    function: main.slow
    labels: {method: r.Method}
`, metric, prefix))
	entryStatus := func(pid int) (string, bool) {
		ts := a.findTarget(pid)
		if ts == nil {
			return "", false
		}
		for _, p := range ts.Probes {
			if p.Family == "userfunc:"+metric {
				return p.Error, true
			}
		}
		return "", false
	}
	cpu0 := agentCPU(t, a)
	for run := 0; run < 2; run++ {
		tp := startTarget(t, exe, prefix+"bad")
		if code, body, err := tp.do("GET", "/slow?ms=1"); err != nil || code != 200 || body != "slept 1ms\n" {
			t.Fatalf("the crafted program does not serve: %d %q %v", code, body, err)
		}
		var reason string
		if !waitFor(15*time.Second, func() bool {
			var ok bool
			reason, ok = entryStatus(tp.pid)
			return ok
		}) {
			t.Fatalf("run %d: no status of %s for the crafted program in /targets: %+v\n%s", run, metric, a.findTarget(tp.pid), a.stderr.String())
		}
		if !strings.Contains(reason, "cyclic type data") {
			t.Errorf("run %d: %s attached or refused without saying why: %q", run, metric, reason)
		}
		checkFamily(t, *a.findTarget(tp.pid), "http_server")
		if run == 0 {
			t.Logf("crafted program: %s refused: %s", metric, reason)
		}
		tp.kill()
	}
	select {
	case <-a.done:
		t.Fatalf("the agent exited: %v\n%s", a.err, a.stderr.String())
	default:
	}
	if rss := agentRSS(t, a); rss > maxAgentRSS {
		t.Fatalf("the agent holds %d MB after the crafted program, bound %d MB", rss>>20, maxAgentRSS>>20)
	}
	// A generous bound, far above the few tens of milliseconds this takes:
	// a walk without end would spend it all.
	if cpu := agentCPU(t, a) - cpu0; cpu > 10*time.Second {
		t.Errorf("the agent spent %v of CPU on two execs of the crafted program", cpu)
	} else {
		t.Logf("the agent spent %v of CPU on two execs of the crafted program", cpu)
	}

	// The same entry measures a clean program exactly.
	tp := startTarget(t, v.exe, prefix+"clean")
	if !waitFor(15*time.Second, func() bool { e, ok := entryStatus(tp.pid); return ok && e == "" }) {
		t.Fatalf("%s not attached to the clean program: %+v", metric, a.findTarget(tp.pid))
	}
	time.Sleep(300 * time.Millisecond) // probes attached before the traffic
	const n = 20
	for i := 0; i < n; i++ {
		if code, _, err := tp.do("GET", "/slow?ms=1"); err != nil || code != 200 {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
	}
	var got map[string]float64
	if !waitFor(10*time.Second, func() bool {
		s, err := a.scrape()
		if err != nil {
			return false
		}
		got = s.counts(metric, tp.service, "method")
		return got["method=GET"] >= n
	}) || got["method=GET"] != n || len(got) != 1 {
		t.Fatalf("clean program after the crafted one: %s counts %v, want method=GET: %d", metric, got, n)
	}
}

// skippedReason returns the reason /targets?state=skipped gives for pid.
func skippedReason(a *agentProc, pid int) string {
	var skipped []struct {
		PID    int    `json:"pid"`
		Reason string `json:"reason"`
	}
	b, err := a.get("/targets?state=skipped")
	if err != nil {
		return err.Error()
	}
	if err := json.Unmarshal(b, &skipped); err != nil {
		return err.Error()
	}
	for _, s := range skipped {
		if s.PID == pid {
			return s.Reason
		}
	}
	return ""
}

// agentRSS returns the agent's resident memory in bytes.
func agentRSS(t *testing.T, a *agentProc) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(a.cmd.Process.Pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestIdleConnections opens thousands of idle connections to the agent's
// endpoint — half silent, half after one keep-alive request — as a hostile
// user of the host could: the agent holds at most its connection limit of
// descriptors for them, /healthz and /metrics answer new clients, and new
// programs are still instrumented.
func TestIdleConnections(t *testing.T) {
	requireBPF(t)
	const (
		n        = 3000 // idle connections opened
		maxConns = 256  // the agent's limit (exporter.defaultMaxConns)
	)
	a := startAgent(t, "")
	pid := a.cmd.Process.Pid
	before, _ := stableFDCount(pid)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", a.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%2 == 1 {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			c.Read(make([]byte, 512)) // an idle one may be closed to make room: no check
		}
	}
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := fresh.Get("http://" + a.addr + path)
		if err != nil {
			t.Fatalf("GET %s with %d idle connections: %v", path, n, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
	}
	now, _ := fdCount(pid)
	t.Logf("agent descriptors: %d before, %d with %d idle connections open", before, now, n)
	if now > before+maxConns+16 {
		t.Errorf("agent holds %d descriptors with %d idle connections (%d before): more than its limit of %d connections", now, n, before, maxConns)
	}
	v := variantByName(t, "go126-plain")
	tp := startTarget(t, v.exe, uniqueService("idle-conns", v))
	a.waitTargeted(t, tp.pid, 10*time.Second)
}

// agentCPU returns the agent's CPU time (user and system) so far.
func agentCPU(t *testing.T, a *agentProc) time.Duration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(a.cmd.Process.Pid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64) // fields 14 and 15
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}
