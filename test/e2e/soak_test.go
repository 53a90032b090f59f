package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Churn, overflow, faults and held load: each runs short under `make test`
// and long under `make soak` (BLINDSPOT_SOAK=1), with the same assertions.
// Figures are logged, never asserted as timings.

// soakBuilds are the builds the churn and fault tests use, as many as this
// host has (at least the current Go's).
func soakBuilds(t *testing.T) []variant {
	t.Helper()
	var out []variant
	for _, name := range []string{"go126-plain", "go126-pie", "go119-stripped", "go124-plain", "go122-pie", "go127-stripped"} {
		for _, v := range env.variants {
			if v.name == name {
				out = append(out, v)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no target build for the soak tests")
	}
	return out
}

// runShortLived starts exe, waits until it listens, sends it one request
// after life and ends it (SIGKILL when kill, else SIGTERM).
func runShortLived(exe, service string, life time.Duration, kill bool) error {
	cmd := exec.Command(exe, "-listen", "127.0.0.1:0")
	cmd.Env = append(filteredEnv("OTEL_SERVICE_NAME"), "OTEL_SERVICE_NAME="+service)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		// SIGTERM is given 5s to end it (the Go runtime exits at once).
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
		cmd.Process.Kill()
		<-exited
	}()
	sc := bufio.NewScanner(out)
	addr := ""
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		return fmt.Errorf("%s exited before listening", exe)
	}
	time.Sleep(life)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/items/3")
	if err != nil {
		return fmt.Errorf("short-lived %s: %w", exe, err)
	}
	resp.Body.Close()
	if kill {
		return cmd.Process.Kill()
	}
	return cmd.Process.Signal(syscall.SIGTERM)
}

// TestSoakChurn starts and ends many short-lived Go programs of several
// builds (60 here, 500 under make soak) while keep-alive load runs against
// two long-lived ones: afterwards the agent's descriptors, BPF links, map
// entries, threads, goroutines and RSS are within 10% of their baseline,
// nothing is left in uprobe_events or /sys/fs/bpf, and every long-lived
// program's count is exact.
func TestSoakChurn(t *testing.T) {
	requireBPF(t)
	mountTracefs(t)
	builds := soakBuilds(t)
	pinnedBefore := pinnedObjects(t)
	// Exited programs' series stay for the grace period (default 5m): a
	// short one lets the test see the agent after it too.
	const grace = 5 * time.Second
	a := startAgent(t, fmt.Sprintf("grace: %v\n", grace))
	long := []*targetProc{
		startTarget(t, builds[0].exe, uniqueService("churn-long", builds[0])),
		startTarget(t, builds[len(builds)-1].exe, uniqueService("churn-long", builds[len(builds)-1])),
	}
	for _, tp := range long {
		a.waitTargeted(t, tp.pid, 10*time.Second)
	}
	// One short-lived program of each build first: the agent's cache of
	// recently parsed executables is part of its steady state.
	for i, v := range builds {
		if err := runShortLived(v.exe, fmt.Sprintf("e2e-churn-warm-%d", i), 800*time.Millisecond, true); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second)
	base := stableUsage(t, a, 10*time.Second)
	t.Logf("baseline: %v", base)

	n := sized(60, 500)
	stop := make(chan struct{})
	results := make([]*loadResult, len(long))
	var loadWG sync.WaitGroup
	for i, tp := range long {
		loadWG.Add(1)
		go func() {
			defer loadWG.Done()
			results[i] = driveLoad(tp, 2, "/items/7", "item 7\n", 1<<40, stop)
		}()
	}
	start := time.Now()
	var (
		mu       sync.Mutex
		errs     []string
		peak     agentUsage
		churnWG  sync.WaitGroup
		parallel = make(chan struct{}, 4)
	)
	for i := 0; i < n; i++ {
		v := builds[i%len(builds)]
		parallel <- struct{}{}
		churnWG.Add(1)
		go func() {
			defer churnWG.Done()
			defer func() { <-parallel }()
			// Lives from a few ms to ~0.6 s: some end before the agent
			// has attached, some while it attaches, some after.
			life := time.Duration(i*37%600) * time.Millisecond
			if err := runShortLived(v.exe, fmt.Sprintf("e2e-churn-%d", i), life, i%2 == 0); err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
			}
		}()
		if i%50 == 25 {
			if u := measureAgent(t, a); u.FDs > peak.FDs {
				peak = u
			}
		}
		if env.ctx.Err() != nil {
			break
		}
	}
	churnWG.Wait()
	churnEnd := time.Now()
	churn := churnEnd.Sub(start)
	close(stop)
	loadWG.Wait()
	if len(errs) > 0 {
		t.Errorf("%d short-lived programs failed, e.g. %s", len(errs), errs[0])
	}
	t.Logf("%d short-lived programs of %d builds in %v (%.1f/s); peak during churn: %v",
		n, len(builds), churn.Round(time.Millisecond), float64(n)/churn.Seconds(), peak)

	// Programs that lived long enough were attached and their one request
	// counted; none may count more.
	measured := 0
	for _, se := range a.mustScrape(t).histograms["http_server_request_duration_seconds"] {
		if strings.HasPrefix(se.labels["service_name"], "e2e-churn-") && !strings.HasPrefix(se.labels["service_name"], "e2e-churn-long") {
			if se.count != 1 {
				t.Errorf("%s counted %d requests, sent 1", se.labels["service_name"], se.count)
			}
			measured++
		}
	}
	t.Logf("%d of the %d short-lived programs were measured (the others ended before the agent attached)", measured, n)
	if measured == 0 {
		t.Errorf("no short-lived program was measured: the churn never attached")
	}
	for i, tp := range long {
		r := results[i]
		if r.failed.Load() != 0 || r.wrong.Load() != 0 {
			t.Errorf("%s: %d requests failed, %d wrong answers of %d", tp.service, r.failed.Load(), r.wrong.Load(), r.sent.Load())
		}
		waitTotal(t, a, tp.service, uint64(r.sent.Load()), 15*time.Second)
		t.Logf("%s: %d requests, counted exactly", tp.service, r.sent.Load())
	}
	// Let exits be noticed, the grace period of the last ones end and
	// released binaries leave the agent's cache.
	time.Sleep(time.Until(churnEnd.Add(grace + time.Second)))
	var after agentUsage
	ok := waitFor(sized(40*time.Second, 90*time.Second), func() bool {
		after = stableUsage(t, a, 5*time.Second)
		// RSS too: the agent gives freed memory back on its 10s tick
		// after programs went.
		return withinTenPercent(base.FDs, after.FDs, 2) && withinTenPercent(base.Links, after.Links, 0) &&
			withinTenPercent(base.mapEntriesTotal(), after.mapEntriesTotal(), 0) &&
			withinTenPercent(base.RSSKiB, after.RSSKiB, 0)
	})
	t.Logf("after:    %v", after)
	if !ok {
		t.Errorf("descriptors, links, map entries or RSS not back within 10%% of the baseline:\nbaseline %v\nafter    %v", base, after)
	}
	for _, c := range []struct {
		what          string
		before, after int
		slack         int
	}{
		{"threads", base.Threads, after.Threads, 2},
		{"goroutines", base.Goroutines, after.Goroutines, 3},
		{"RSS (KiB)", base.RSSKiB, after.RSSKiB, 0},
		{"perf events", base.PerfEvents, after.PerfEvents, 0},
	} {
		if !withinTenPercent(c.before, c.after, c.slack) {
			t.Errorf("agent %s: %d after churn, %d before (more than 10%% up)", c.what, c.after, c.before)
		}
	}
	if ts, err := a.targets(""); err != nil || len(ts) != len(long) {
		t.Errorf("/targets lists %d programs (%v), want the %d long-lived ones", len(ts), err, len(long))
	}
	if lines := uprobeEventsUnder(env.dir); len(lines) > 0 {
		t.Errorf("uprobe_events names the targets:\n%s", strings.Join(lines, "\n"))
	}
	if p := pinnedObjects(t); strings.Join(p, ",") != strings.Join(pinnedBefore, ",") {
		t.Errorf("pinned BPF objects changed: before %v, after %v", pinnedBefore, p)
	}
}

// lostHTTP returns blindspot_events_lost_total{probe="http_server"} and the
// count of service's requests.
func lostHTTP(t *testing.T, a *agentProc, service string) (lost, counted uint64) {
	t.Helper()
	s := a.mustScrape(t)
	l, _ := s.value("blindspot_events_lost_total", map[string]string{"probe": "http_server"})
	return uint64(l), total(s.httpSeries(t, service))
}

// TestSoakOverflow slows the agent's readers (a test hook) and shrinks its
// rings so that they fill under load: every request is either counted or
// counted as lost (counted + lost = sent), the server answers every request
// meanwhile, and once the load stops the readers catch up and the agent
// counts the next requests without loss, by itself.
func TestSoakOverflow(t *testing.T) {
	requireBPF(t)
	t.Setenv("BLINDSPOT_TEST_READ_DELAY", "1ms")
	t.Setenv("BLINDSPOT_TEST_RING_BYTES", "65536")
	v := variantByName(t, "go126-plain")
	a := startAgent(t, "")
	tp := startTarget(t, v.exe, uniqueService("overflow", v))
	a.waitTargeted(t, tp.pid, 10*time.Second)
	lost0, _ := lostHTTP(t, a, tp.service)

	stop := make(chan struct{})
	timer := time.AfterFunc(sized(4*time.Second, 30*time.Second), func() { close(stop) })
	defer timer.Stop()
	start := time.Now()
	r := driveLoad(tp, 4, "/items/7", "item 7\n", 1<<40, stop)
	elapsed := time.Since(start)
	sent := uint64(r.sent.Load())
	if r.failed.Load() != 0 || r.wrong.Load() != 0 {
		t.Errorf("%d requests failed, %d wrong answers of %d while the rings were full", r.failed.Load(), r.wrong.Load(), sent)
	}
	var lost, counted uint64
	caught := waitFor(60*time.Second, func() bool {
		l, c := lostHTTP(t, a, tp.service)
		lost, counted = l-lost0, c
		return counted+lost >= sent
	})
	t.Logf("sent %d requests in %v (%.0f/s) with a reader slowed to ~1 event/ms: counted %d, lost %d",
		sent, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(), counted, lost)
	if !caught || counted+lost != sent {
		t.Fatalf("counted %d + lost %d = %d, sent %d", counted, lost, counted+lost, sent)
	}
	if lost == 0 {
		t.Fatalf("no event lost: the rings never filled, the test proves nothing")
	}
	// Recovered: the next requests, fewer than a ring holds, all counted.
	time.Sleep(time.Second)
	for i := 0; i < 100; i++ {
		if code, body, err := tp.do("GET", "/items/7"); err != nil || code != 200 || body != "item 7\n" {
			t.Fatalf("GET /items/7 after the overflow: %d %q %v", code, body, err)
		}
	}
	waitTotal(t, a, tp.service, counted+100, 20*time.Second)
	if l, _ := lostHTTP(t, a, tp.service); l-lost0 != lost {
		t.Errorf("lost events went from %d to %d after the readers caught up", lost, l-lost0)
	}
}

// faultPaths are the requests whose raw responses must not change with the
// agent attached, killed, restarted or stopped.
var faultPaths = []string{"/items/7", "/teapot", "/fail", "/nothing", "/deep?depth=3000", "/users/3/orders/9", "/no/such/route"}

// transcript sends every faultPaths request on its own connection and
// returns the raw responses, byte for byte but for the Date header.
func transcript(t *testing.T, tp *targetProc) string {
	t.Helper()
	var b strings.Builder
	for _, p := range faultPaths {
		c, err := net.DialTimeout("tcp", tp.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", tp.addr, err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n", p)
		raw, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		for _, line := range strings.SplitAfter(string(raw), "\r\n") {
			if !strings.HasPrefix(line, "Date: ") {
				b.WriteString(line)
			}
		}
	}
	return b.String()
}

// sameTranscript fails when tp's responses differ from ref.
func sameTranscript(t *testing.T, tp *targetProc, ref, when string) {
	t.Helper()
	if got := transcript(t, tp); got != ref {
		t.Errorf("%s: responses changed %s:\nwant %q\ngot  %q", tp.service, when, ref, got)
	}
}

// TestSoakFaults kills things mid-flight: the agent with SIGKILL under
// load (every link, map and program it held is gone from the kernel,
// nothing in uprobe_events or /sys/fs/bpf, the programs keep serving the
// same bytes), a restarted agent re-attaches to every program and counts
// exactly, SIGTERM under load detaches cleanly, and a program killed
// mid-request leaves no call in flight and no per-process entry behind.
func TestSoakFaults(t *testing.T) {
	requireBPF(t)
	mountTracefs(t)
	builds := soakBuilds(t)
	pinnedBefore := pinnedObjects(t)
	targets := []*targetProc{
		startTarget(t, builds[0].exe, uniqueService("fault", builds[0])),
		startTarget(t, builds[len(builds)-1].exe, uniqueService("fault", builds[len(builds)-1])),
	}
	refs := make([]string, len(targets))
	for i, tp := range targets {
		refs[i] = transcript(t, tp) // no agent yet
	}
	loadAll := func() (stop func() []*loadResult) {
		ch := make(chan struct{})
		res := make([]*loadResult, len(targets))
		var wg sync.WaitGroup
		for i, tp := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i] = driveLoad(tp, 2, "/items/7", "item 7\n", 1<<40, ch)
			}()
		}
		return func() []*loadResult {
			close(ch)
			wg.Wait()
			for i, r := range res {
				if r.failed.Load() != 0 || r.wrong.Load() != 0 {
					t.Errorf("%s: %d of %d requests failed, %d wrong", targets[i].service, r.failed.Load(), r.sent.Load(), r.wrong.Load())
				}
			}
			return res
		}
	}
	noKernelState := func(u agentUsage, when string) {
		t.Helper()
		if left := waitKernelObjectsGone(u, 10*time.Second); len(left) > 0 {
			t.Errorf("%s: still in the kernel: %v", when, left)
		}
		if lines := uprobeEventsUnder(env.dir); len(lines) > 0 {
			t.Errorf("%s: uprobe_events names the targets:\n%s", when, strings.Join(lines, "\n"))
		}
		if p := pinnedObjects(t); strings.Join(p, ",") != strings.Join(pinnedBefore, ",") {
			t.Errorf("%s: pinned BPF objects changed: before %v, after %v", when, pinnedBefore, p)
		}
	}

	for round := 0; round < sized(2, 6); round++ {
		// Odd rounds attach one perf-event uprobe per site (kernels before
		// 6.6), even ones uprobe_multi links.
		mode := "uprobe_multi links"
		if round%2 == 1 {
			mode = "perf-event uprobes"
			t.Setenv("BLINDSPOT_TEST_SINGLE_UPROBES", "1")
		} else {
			os.Unsetenv("BLINDSPOT_TEST_SINGLE_UPROBES")
		}
		// SIGKILL under load.
		a := startAgent(t, "")
		for i, tp := range targets {
			a.waitTargeted(t, tp.pid, 10*time.Second)
			sameTranscript(t, tp, refs[i], "with the agent attached")
		}
		stop := loadAll()
		time.Sleep(sized(time.Second, 5*time.Second))
		u := measureAgent(t, a)
		a.cmd.Process.Kill()
		<-a.done
		time.Sleep(500 * time.Millisecond) // load goes on without the agent
		res := stop()
		t.Logf("round %d (%s): agent SIGKILLed holding %d links, %d perf events, %d maps, %d programs under %d+%d requests",
			round, mode, len(u.LinkIDs), u.PerfEvents, len(u.MapIDs), len(u.ProgIDs), res[0].sent.Load(), res[1].sent.Load())
		if u.Links+u.PerfEvents == 0 {
			t.Fatalf("agent held no probe before the kill: %v", u)
		}
		noKernelState(u, "after SIGKILL")
		for i, tp := range targets {
			if !tp.alive() {
				t.Fatalf("%s died with the agent: %v", tp.service, tp.err)
			}
			sameTranscript(t, tp, refs[i], "after the agent was killed")
		}

		// Restarted: re-attaches to everything and counts exactly.
		a = startAgent(t, "")
		for _, tp := range targets {
			a.waitTargeted(t, tp.pid, 10*time.Second)
		}
		for _, tp := range targets {
			for j := 0; j < 200; j++ {
				if code, body, err := tp.do("GET", "/items/7"); err != nil || code != 200 || body != "item 7\n" {
					t.Fatalf("GET /items/7: %d %q %v", code, body, err)
				}
			}
			waitTotal(t, a, tp.service, 200, 10*time.Second)
		}

		// SIGTERM under load: exits 0 in time, leaves nothing.
		stop = loadAll()
		time.Sleep(sized(time.Second, 5*time.Second))
		u = measureAgent(t, a)
		began := time.Now()
		err, inTime := a.stop(syscall.SIGTERM, 10*time.Second)
		took := time.Since(began)
		stop()
		t.Logf("round %d (%s): SIGTERM under load: exited after %v (%v)", round, mode, took.Round(time.Millisecond), err)
		if !inTime || err != nil {
			t.Errorf("agent after SIGTERM under load: exit %v, in time %v\n%s", err, inTime, a.stderr.String())
		}
		noKernelState(u, "after SIGTERM")
		for i, tp := range targets {
			sameTranscript(t, tp, refs[i], "after the agent stopped")
			checkOnlyPanicLogs(t, tp.stderr.String(), 0)
		}
	}

	// A program killed mid-request leaves nothing in flight.
	os.Unsetenv("BLINDSPOT_TEST_SINGLE_UPROBES")
	a := startAgent(t, "")
	for _, tp := range targets {
		a.waitTargeted(t, tp.pid, 10*time.Second)
	}
	base := stableUsage(t, a, 5*time.Second)
	v := builds[0]
	victim := startTarget(t, v.exe, uniqueService("fault-victim", v))
	a.waitTargeted(t, victim.pid, 10*time.Second)
	for i := 0; i < 8; i++ {
		go victim.doFresh("GET", "/slow?ms=20000")
	}
	var during agentUsage
	if !waitFor(10*time.Second, func() bool {
		during = measureAgent(t, a)
		return during.MapEntries["http_server_sta"] >= base.MapEntries["http_server_sta"]+8
	}) {
		t.Fatalf("8 slow requests never showed as in flight: %v", during)
	}
	victim.kill()
	var after agentUsage
	ok := waitFor(10*time.Second, func() bool {
		after = measureAgent(t, a)
		return a.findTarget(victim.pid) == nil && after.mapEntriesTotal() == base.mapEntriesTotal() &&
			after.Links == base.Links && after.FDs <= base.FDs+1
	})
	t.Logf("killed mid-request: before %v\nduring %v\nafter  %v", base, during, after)
	if !ok {
		t.Errorf("state left after a program was killed mid-request:\nbefore %v\nafter  %v", base, after)
	}
}

// letters spells i in base 26 with lowercase letters: a path segment the
// route folding keeps as it is (no digits, short).
func letters(i int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('a' + i%26)}, b...)
		i /= 26
		if i == 0 {
			return string(b)
		}
	}
}

// slowScrapeClient fetches large /metrics pages (gzip, as Prometheus asks).
var slowScrapeClient = &http.Client{
	Timeout:   60 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// fetchMetrics fetches /metrics in the text format and returns it and how
// long it took.
func fetchMetrics(a *agentProc) (string, time.Duration, error) {
	req, _ := http.NewRequest("GET", "http://"+a.addr+"/metrics", nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	start := time.Now()
	resp, err := slowScrapeClient.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("/metrics: %s", resp.Status)
	}
	return string(b), took, err
}

// timedScrape fetches /metrics and returns how long it took and its size.
func timedScrape(a *agentProc) (time.Duration, int, error) {
	b, d, err := fetchMetrics(a)
	return d, len(b), err
}

// bigCounts reads, from a large /metrics without parsing all of it, the
// number of service's request-duration series, their summed count and
// blindspot_events_lost_total{probe="http_server"}.
func bigCounts(t *testing.T, a *agentProc, service string) (series int, counted, lost uint64) {
	t.Helper()
	page, _, err := fetchMetrics(a)
	if err != nil {
		t.Fatal(err)
	}
	svc := `service_name="` + service + `"`
	for _, line := range strings.Split(page, "\n") {
		var v float64
		switch {
		case strings.HasPrefix(line, "http_server_request_duration_seconds_count{") && strings.Contains(line, svc):
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err != nil {
				t.Fatalf("bad line %q: %v", line, err)
			}
			series++
			counted += uint64(v)
		case strings.HasPrefix(line, `blindspot_events_lost_total{probe="http_server"}`):
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err != nil {
				t.Fatalf("bad line %q: %v", line, err)
			}
			lost = uint64(v)
		}
	}
	return series, counted, lost
}

// sampleLines counts the samples (lines that are not comments) of a
// text-format page: its Prometheus series.
func sampleLines(page string) int {
	n := 0
	for _, line := range strings.Split(page, "\n") {
		if line != "" && line[0] != '#' {
			n++
		}
	}
	return n
}

// TestSoakLoad holds the highest request rate this host sustains against an
// instrumented server (the best of 1–8 keep-alive connections) while
// /metrics, grown to 20,000 series (sample lines) by distinct routes, is
// scraped every half second: every request is counted or counted as lost,
// and the scrape latency and the request rate are logged (not asserted: no
// timing assertions). Under make soak it also grows the server to 20,000
// routes (20,000 series of each HTTP histogram, about a million samples)
// and logs that scrape too.
func TestSoakLoad(t *testing.T) {
	requireBPF(t)
	const wantSeries = 20000
	v := variantByName(t, "go126-plain")
	a := startAgent(t, "series_limit: 50000\nhttp:\n  route_limit: 25000\n")
	tp := startTarget(t, v.exe, uniqueService("load", v))
	a.waitTargeted(t, tp.pid, 10*time.Second)
	_, _, lost0 := bigCounts(t, a, tp.service)
	var sent int64
	settle := func() {
		t.Helper()
		if !waitFor(60*time.Second, func() bool {
			_, c, l := bigCounts(t, a, tp.service)
			return c+l-lost0 >= uint64(sent)
		}) {
			t.Fatalf("requests not all counted (or counted as lost) 60s after they were sent")
		}
	}
	// Distinct routes: unmatched paths, folded to themselves (404).
	routes := 0
	addRoutes := func(to int) {
		t.Helper()
		var wg sync.WaitGroup
		var failed atomic.Int64
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := routes + w; i < to; i += 4 {
					if code, _, err := tp.do("GET", "/s/"+letters(i)); err != nil || code != 404 {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		sent += int64(to - routes)
		routes = to
		if failed.Load() != 0 {
			t.Fatalf("%d of the route requests failed", failed.Load())
		}
		settle()
	}
	var page string
	for {
		var err error
		if page, _, err = fetchMetrics(a); err != nil {
			t.Fatal(err)
		}
		if sampleLines(page) >= wantSeries || routes >= 2000 {
			break
		}
		addRoutes(routes + 50)
	}
	nSeries := sampleLines(page)
	idle, size, err := timedScrape(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("/metrics: %d series (%d routes of the server); idle scrape %v, %.1f MiB",
		nSeries, routes, idle.Round(time.Millisecond), float64(size)/(1<<20))
	if nSeries < wantSeries {
		t.Fatalf("%d series with %d routes, want %d", nSeries, routes, wantSeries)
	}

	// The best rate over 1, 2, 4 and 8 connections.
	best, bestConns := 0.0, 1
	for _, conns := range []int{1, 2, 4, 8} {
		stop := make(chan struct{})
		time.AfterFunc(sized(1500*time.Millisecond, 5*time.Second), func() { close(stop) })
		start := time.Now()
		r := driveLoad(tp, conns, "/items/7", "item 7\n", 1<<40, stop)
		rate := float64(r.sent.Load()) / time.Since(start).Seconds()
		sent += r.sent.Load()
		t.Logf("%d connections: %.0f req/s", conns, rate)
		if r.failed.Load() != 0 || r.wrong.Load() != 0 {
			t.Errorf("%d connections: %d failed, %d wrong of %d", conns, r.failed.Load(), r.wrong.Load(), r.sent.Load())
		}
		if rate > best {
			best, bestConns = rate, conns
		}
	}

	// Held at that rate while /metrics is scraped every second.
	stop := make(chan struct{})
	hold := sized(5*time.Second, 60*time.Second)
	time.AfterFunc(hold, func() { close(stop) })
	var lat []time.Duration
	var mu sync.Mutex
	scrapesDone := make(chan struct{})
	go func() {
		defer close(scrapesDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			d, _, err := timedScrape(a)
			if err != nil {
				t.Errorf("/metrics under load: %v", err)
				continue
			}
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}
	}()
	start := time.Now()
	r := driveLoad(tp, bestConns, "/items/7", "item 7\n", 1<<40, stop)
	held := float64(r.sent.Load()) / time.Since(start).Seconds()
	<-scrapesDone
	sent += r.sent.Load()
	if r.failed.Load() != 0 || r.wrong.Load() != 0 {
		t.Errorf("held load: %d failed, %d wrong of %d", r.failed.Load(), r.wrong.Load(), r.sent.Load())
	}
	settle()
	_, counted, lost := bigCounts(t, a, tp.service)
	lost -= lost0
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	var med, max time.Duration
	if len(lat) > 0 {
		med, max = lat[len(lat)/2], lat[len(lat)-1]
	}
	t.Logf("held %.0f req/s over %d connections for %v; /metrics with %d series under load: median %v, max %v (%d scrapes); sent %d, counted %d, lost %d",
		held, bestConns, hold, nSeries, med.Round(time.Millisecond), max.Round(time.Millisecond), len(lat), sent, counted, lost)
	if counted+lost != uint64(sent) {
		t.Errorf("counted %d + lost %d = %d, sent %d", counted, lost, counted+lost, sent)
	}
	if !soakLong() {
		return
	}
	// 20,000 routes: 20,000 series of each HTTP histogram.
	addRoutes(20000)
	idle, size, err = timedScrape(a)
	if err != nil {
		t.Fatal(err)
	}
	stop = make(chan struct{})
	time.AfterFunc(5*time.Second, func() { close(stop) })
	busy := make(chan time.Duration, 1)
	go func() {
		time.Sleep(time.Second)
		d, _, err := timedScrape(a)
		if err != nil {
			t.Errorf("/metrics under load: %v", err)
		}
		busy <- d
	}()
	r = driveLoad(tp, bestConns, "/items/7", "item 7\n", 1<<40, stop)
	sent += r.sent.Load()
	settle()
	n, counted, lost := bigCounts(t, a, tp.service)
	lost -= lost0
	t.Logf("%d routes (%d series of the request-duration histogram): /metrics %.1f MiB, idle scrape %v, under load %v; sent %d, counted %d, lost %d",
		routes, n, float64(size)/(1<<20), idle.Round(time.Millisecond), (<-busy).Round(time.Millisecond), sent, counted, lost)
	if counted+lost != uint64(sent) {
		t.Errorf("counted %d + lost %d = %d, sent %d", counted, lost, counted+lost, sent)
	}
}

// TestSoakInFlightBound shrinks the maps of calls in flight to 64 entries
// (a test hook) and keeps 100 slow requests in flight at once, each also a
// business function measured as a duration: the maps stay bounded, and
// every request and every business call is either counted or counted as
// lost, never dropped silently (an LRU map that evicts a start leaves its
// end unmatched and the call uncounted); afterwards both are counted
// exactly again.
func TestSoakInFlightBound(t *testing.T) {
	requireBPF(t)
	const bound, n = 64, 100
	t.Setenv("BLINDSPOT_TEST_MAX_IN_FLIGHT", fmt.Sprint(bound))
	v := variantByName(t, "go126-plain")
	svc := uniqueService("inflight", v)
	const biz = "inflight_slow_duration_seconds"
	a := startAgent(t, fmt.Sprintf(`
functions:
  - metric: %s
    kind: duration
    service: %q
    function: main.slow
`, biz, svc))
	tp := startTarget(t, v.exe, svc)
	a.waitTargeted(t, tp.pid, 10*time.Second)
	if !waitFor(10*time.Second, func() bool {
		ts := a.findTarget(tp.pid)
		if ts == nil {
			return false
		}
		for _, p := range ts.Probes {
			if p.Family == "userfunc:"+biz && p.Error == "" {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("%s not attached: %+v", biz, a.findTarget(tp.pid))
	}
	lost0, _ := lostHTTP(t, a, tp.service)
	bizLost0, _ := lostBusiness(t, a, tp.service, biz)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, body, err := tp.doFresh("GET", "/slow?ms=3000"); err != nil || code != 200 || body != "slept 3000ms\n" {
				failed.Add(1)
			}
		}()
	}
	peak := map[string]int{}
	waitFor(2500*time.Millisecond, func() bool {
		u := measureAgent(t, a)
		for _, m := range []string{"http_server_sta", "uf_starts"} {
			peak[m] = max(peak[m], u.MapEntries[m])
		}
		return false
	})
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d slow requests failed", failed.Load(), n)
	}
	var lost, counted, bizLost, bizCounted uint64
	waitFor(10*time.Second, func() bool {
		l, c := lostHTTP(t, a, tp.service)
		lost, counted = l-lost0, c
		bl, bc := lostBusiness(t, a, tp.service, biz)
		bizLost, bizCounted = bl-bizLost0, bc
		return counted+lost >= n && bizCounted+bizLost >= n
	})
	t.Logf("%d requests in flight at once, map bound %d (peak entries %v): requests counted %d, lost %d; business calls counted %d, lost %d",
		n, bound, peak, counted, lost, bizCounted, bizLost)
	for m, p := range peak {
		if p > bound {
			t.Errorf("map of calls in flight %s held %d entries, bound %d", m, p, bound)
		}
	}
	if counted+lost != n {
		t.Errorf("requests: counted %d + lost %d = %d, sent %d: requests dropped without being counted as lost", counted, lost, counted+lost, n)
	}
	if bizCounted+bizLost != n || bizLost == 0 {
		t.Errorf("business calls: counted %d + lost %d = %d, made %d (and some must not fit the map): calls dropped without being counted as lost", bizCounted, bizLost, bizCounted+bizLost, n)
	}
	for i := 0; i < 20; i++ {
		if code, _, err := tp.do("GET", "/items/7"); err != nil || code != 200 {
			t.Fatalf("GET /items/7: %d %v", code, err)
		}
		if code, _, err := tp.do("GET", "/slow?ms=1"); err != nil || code != 200 {
			t.Fatalf("GET /slow: %d %v", code, err)
		}
	}
	waitTotal(t, a, tp.service, counted+40, 10*time.Second)
	var after uint64
	if !waitFor(10*time.Second, func() bool {
		_, c := lostBusiness(t, a, tp.service, biz)
		after = c - bizCounted
		return after >= 20
	}) || after != 20 {
		t.Errorf("after the overflow: %d business calls counted, want 20", after)
	}
}

// lostBusiness returns blindspot_events_lost_total{probe="userfunc"} and
// the count of service's calls of the business metric.
func lostBusiness(t *testing.T, a *agentProc, service, metric string) (lost, counted uint64) {
	t.Helper()
	s := a.mustScrape(t)
	l, _ := s.value("blindspot_events_lost_total", map[string]string{"probe": "userfunc"})
	return uint64(l), uint64(sumCounts(s.counts(metric, service)))
}

// TestSoakInFlightBoundPoolWaits shrinks the maps of calls in flight to 64
// entries (a test hook) and makes 100 queries at once on a PostgreSQL pool
// of two connections: about 98 waits for a connection are in flight at
// once, more than the map of waits holds. Every wait the pool itself
// counts (sql.DBStats.WaitCount) is either measured or counted as lost,
// never dropped silently; the next saturation, within the bound, is
// measured exactly.
func TestSoakInFlightBoundPoolWaits(t *testing.T) {
	requireBPF(t)
	const bound, queries = 64, 100
	pg := startPostgres(t)
	vs, skipped, err := buildMatrix(env.ctx, []matrixBuild{{"dbclient", "plain", 26}})
	if err != nil {
		t.Fatal(err)
	}
	requireMatrix(t, skipped)
	t.Setenv("BLINDSPOT_TEST_MAX_IN_FLIGHT", fmt.Sprint(bound))
	a := startAgent(t, "")
	p := startLineProc(t, vs[0].exe, fmt.Sprintf("e2e-inflight-db-%d", serviceSeq.Add(1)), "-dir", t.TempDir(), "-pg", pg.createDB(t, "inflight"))
	p.waitLine(t, "ready", 15*time.Second)
	checkFamily(t, a.waitTargeted(t, p.pid, 15*time.Second), "db")

	lostDB := func() (lost, measured uint64) {
		s := a.mustScrape(t)
		l, _ := s.value("blindspot_events_lost_total", map[string]string{"probe": "db"})
		for _, n := range s.histCounts("db_client_connection_wait_time_seconds", p.service) {
			measured += n // every pool of the program (each saturation opens one)
		}
		return uint64(l), measured
	}
	saturate := func(n, ms int) (waits, lost, measured uint64) {
		lost0, measured0 := lostDB()
		p.send(t, fmt.Sprintf("saturate %d %d", n, ms))
		line := p.waitLine(t, "saturated waits=", 60*time.Second)
		p.mu.Lock()
		p.lines = nil // the next saturation waits for its own line
		p.mu.Unlock()
		waits, _ = strconv.ParseUint(strings.TrimPrefix(line, "saturated waits="), 10, 64)
		waitFor(10*time.Second, func() bool {
			l, m := lostDB()
			lost, measured = l-lost0, m-measured0
			return lost+measured >= waits
		})
		return waits, lost, measured
	}
	waits, lost, measured := saturate(queries, 20)
	t.Logf("%d queries at once on a pool of 2, map bound %d: the pool counted %d waits; blindspot measured %d, lost %d", queries, bound, waits, measured, lost)
	if waits <= bound {
		t.Fatalf("the pool counted %d waits, want more than the bound %d in flight", waits, bound)
	}
	if measured+lost != waits || lost == 0 {
		t.Errorf("waits: measured %d + lost %d = %d, the pool counted %d (and some must not fit the map): waits dropped without being counted as lost", measured, lost, measured+lost, waits)
	}
	waits, lost, measured = saturate(10, 50)
	t.Logf("then 10 queries: the pool counted %d waits; blindspot measured %d, lost %d", waits, measured, lost)
	if waits == 0 || measured != waits || lost != 0 {
		t.Errorf("after the overflow: measured %d, lost %d of %d waits; want all measured", measured, lost, waits)
	}
}
