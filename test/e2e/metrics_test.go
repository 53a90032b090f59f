package e2e

import (
	"bufio"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// mixRequest is one request of the traffic mix and what the agent must
// record for it.
type mixRequest struct {
	method, path string
	fresh        bool // send on its own connection (the server drops it)
	wantStatus   int  // status the client sees; 0: the connection is dropped
	key          httpKey
}

// usersRoute is the route of /users/{id}/orders/{oid} for a Go minor
// version: the ServeMux pattern from 1.22, the folded path before.
func usersRoute(minor int) string {
	if minor >= 22 {
		return "/users/{id}/orders/{oid}"
	}
	return "/users/{id}/orders/{id}"
}

// trafficMix is the known request mix of the exact-count tests, shuffled
// with a fixed seed so that keep-alive connections carry varied requests.
func trafficMix(minor int) []mixRequest {
	var m []mixRequest
	add := func(n int, method string, path func(i int) string, fresh bool, status int, key httpKey) {
		for i := 0; i < n; i++ {
			m = append(m, mixRequest{method, path(i), fresh, status, key})
		}
	}
	fixed := func(p string) func(int) string { return func(int) string { return p } }
	add(25, "GET", func(i int) string { return fmt.Sprintf("/items/%d", 1000+i*37) }, false, 200,
		httpKey{"GET", "200", "/items/{id}", ""})
	add(7, "POST", fixed("/items"), false, 201, httpKey{"POST", "201", "/items", ""})
	add(5, "GET", fixed("/teapot"), false, 418, httpKey{"GET", "418", "/teapot", ""})
	add(3, "GET", fixed("/nothing"), false, 200, httpKey{"GET", "200", "/nothing", ""})
	add(4, "GET", fixed("/fail"), false, 503, httpKey{"GET", "503", "/fail", "503"})
	add(2, "GET", fixed("/panic"), true, 0, httpKey{"GET", "500", "/panic", "panic"})
	add(3, "GET", fixed("/deep?depth=50000"), false, 200, httpKey{"GET", "200", "/deep", ""})
	add(2, "GET", fixed("/slow?ms=300"), false, 200, httpKey{"GET", "200", "/slow", ""})
	add(6, "GET", func(i int) string { return fmt.Sprintf("/users/%d/orders/%d", 7+i, 90210+i*11) }, false, 200,
		httpKey{"GET", "200", usersRoute(minor), ""})
	add(2, "PURGE", fixed("/items/1"), false, 405, httpKey{"_OTHER", "405", "/items/{id}", ""})
	r := rand.New(rand.NewSource(1))
	r.Shuffle(len(m), func(i, j int) { m[i], m[j] = m[j], m[i] })
	return m
}

// expectedCounts is how many requests of each series mix makes.
func expectedCounts(mix []mixRequest) map[httpKey]uint64 {
	want := map[httpKey]uint64{}
	for _, r := range mix {
		want[r.key]++
	}
	return want
}

// sendMix sends mix to the target and checks what the client sees.
func sendMix(t *testing.T, tp *targetProc, mix []mixRequest) {
	t.Helper()
	for _, r := range mix {
		var status int
		var err error
		if r.fresh {
			status, _, err = tp.doFresh(r.method, r.path)
		} else {
			status, _, err = tp.do(r.method, r.path)
		}
		switch {
		case r.wantStatus == 0 && err == nil:
			t.Errorf("%s %s: got status %d, want a dropped connection", r.method, r.path, status)
		case r.wantStatus != 0 && err != nil:
			t.Fatalf("%s %s: %v (target stderr: %s)", r.method, r.path, err, tp.stderr.String())
		case r.wantStatus != 0 && status != r.wantStatus:
			t.Errorf("%s %s: status %d, want %d", r.method, r.path, status, r.wantStatus)
		}
	}
}

// waitTotal waits until the agent has recorded want requests for service
// and returns its series; it fails if more are recorded or time runs out.
func waitTotal(t *testing.T, a *agentProc, service string, want uint64, timeout time.Duration) map[httpKey]series {
	t.Helper()
	var got map[httpKey]series
	waitFor(timeout, func() bool {
		s, err := a.scrape()
		if err != nil {
			t.Logf("scrape: %v", err)
			return false
		}
		got = s.httpSeries(t, service)
		return total(got) >= want
	})
	if n := total(got); n != want {
		t.Fatalf("service %s: agent recorded %d requests, sent %d (waited up to %v):\n%s", service, n, want, timeout, dump(got))
	}
	return got
}

// TestExactCounts drives a known mix of requests through every variant of
// the target (concurrently, one agent) and checks that the agent counted
// every request exactly once, under exactly the right labels.
func TestExactCounts(t *testing.T) {
	requireBPF(t)
	a := startAgent(t, "")
	for _, name := range allVariantNames() {
		t.Run(name, func(t *testing.T) {
			v := variantByName(t, name)
			t.Parallel()
			tp := startTarget(t, v.exe, uniqueService("counts", v))
			st := a.waitTargeted(t, tp.pid, 10*time.Second)
			checkTargetStatus(t, st, tp, v)

			mix := trafficMix(v.minor)
			sendMix(t, tp, mix)
			want := expectedCounts(mix)
			got := waitTotal(t, a, tp.service, uint64(len(mix)), 15*time.Second)
			for k, n := range want {
				if got[k].count != n {
					t.Errorf("%v: count %d, want %d", k, got[k].count, n)
				}
			}
			for k, se := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("unexpected series %v count=%d", k, se.count)
				}
				if se.labels["otel_metric_overflow"] != "" {
					t.Errorf("%v: otel_metric_overflow=%q", k, se.labels["otel_metric_overflow"])
				}
				if se.sum <= 0 {
					t.Errorf("%v: _sum %v, want > 0", k, se.sum)
				}
			}
			if s := got[httpKey{"GET", "200", "/slow", ""}].sum; s < 0.6 {
				t.Errorf("/slow: _sum %.4fs, want >= 0.6s (2 x 300ms)", s)
			}
			if s := got[httpKey{"GET", "200", "/slow", ""}].sum; s > 5 {
				t.Errorf("/slow: _sum %.4fs, want about 0.6s", s)
			}
			// Go's client speaks HTTP/1.1 over plain TCP; two HTTP/1.0
			// requests after the mix are told apart.
			for k, se := range got {
				if se.labels["url_scheme"] != "http" || se.labels["network_protocol_version"] != "1.1" {
					t.Errorf("%v: url_scheme %q network_protocol_version %q, want http and 1.1", k, se.labels["url_scheme"], se.labels["network_protocol_version"])
				}
			}
			for i := 0; i < 2; i++ {
				conn, err := net.DialTimeout("tcp", tp.addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				rawHTTP10(t, conn, "/teapot", 418)
			}
			checkSchemeVersionCounts(t, a, tp.service, "/teapot", map[string]uint64{"http|1.1": 5, "http|1.0": 2})
			if t.Failed() {
				t.Logf("series of %s:\n%s", tp.service, dump(got))
			}
		})
	}
	t.Cleanup(func() {
		if s, err := a.scrape(); err == nil {
			if lost, ok := s.value("blindspot_events_lost_total", map[string]string{"probe": "http_server"}); ok && lost != 0 {
				t.Errorf("blindspot_events_lost_total{probe=\"http_server\"} = %v, want 0", lost)
			}
		}
	})
}

// rawHTTP10 sends "GET path HTTP/1.0" on conn, which it closes, and checks
// the status of the answer.
func rawHTTP10(t *testing.T, conn net.Conn, path string, wantStatus int) {
	t.Helper()
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: e2e\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("HTTP/1.0 GET %s: %v", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != wantStatus || resp.ProtoMinor != 0 {
		t.Fatalf("HTTP/1.0 GET %s: %s %d, want HTTP/1.0 %d", path, resp.Proto, resp.StatusCode, wantStatus)
	}
}

// checkSchemeVersionCounts waits until the requests of service on route,
// by url_scheme|network_protocol_version, are exactly want.
func checkSchemeVersionCounts(t *testing.T, a *agentProc, service, route string, want map[string]uint64) {
	t.Helper()
	var got map[string]uint64
	waitFor(10*time.Second, func() bool {
		s, err := a.scrape()
		if err != nil {
			return false
		}
		got = map[string]uint64{}
		for k, n := range s.histCounts("http_server_request_duration_seconds", service, "http_route", "url_scheme", "network_protocol_version") {
			if r, sv, _ := strings.Cut(k, "|"); r == route {
				got[sv] += n
			}
		}
		return diffCounts(got, want) == ""
	})
	if d := diffCounts(got, want); d != "" {
		t.Errorf("%s by url_scheme|network_protocol_version:\n%s", route, d)
	}
}

// checkTargetStatus checks the /targets entry and blindspot_target_info
// of a freshly attached target.
func checkTargetStatus(t *testing.T, st targetStatus, tp *targetProc, v variant) {
	t.Helper()
	if st.ServiceName != tp.service || st.Exe != v.exe || st.GoVersion != v.goVersion {
		t.Errorf("/targets entry: service %q exe %q go %q; want %q %q %q", st.ServiceName, st.Exe, st.GoVersion, tp.service, v.exe, v.goVersion)
	}
	// The HTTP server family with its sites, and the runtime sampler (no
	// sites: it probes nothing); no family in error.
	families := map[string]int{}
	for _, p := range st.Probes {
		families[p.Family]++
		if p.Error != "" {
			t.Errorf("/targets: family %s in error: %s", p.Family, p.Error)
		}
		if p.Family == "http_server" && len(p.Sites) != 5 {
			t.Errorf("/targets: http_server at %d sites %v, want 5", len(p.Sites), p.Sites)
		}
	}
	if len(families) != 2 || families["http_server"] != 1 || families["go_runtime"] != 1 {
		t.Errorf("/targets probes: %+v; want http_server and go_runtime once each", st.Probes)
	}
}

// panicHeader is the first line net/http logs for a recovered panic.
var panicHeader = regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d http: panic serving 127\.0\.0\.1:\d+: e2e test panic$`)

// stackLine matches the other lines of the goroutine dump net/http logs.
var stackLine = regexp.MustCompile(`^(goroutine \d+ \[[^\]]+\]:|\t.*|created by .*|\S.*\(.*\)|)$`)

// checkOnlyPanicLogs checks that stderr holds nothing but want net/http
// panic reports.
func checkOnlyPanicLogs(t *testing.T, stderr string, want int) {
	t.Helper()
	headers := 0
	for _, line := range strings.Split(stderr, "\n") {
		switch {
		case panicHeader.MatchString(line):
			headers++
		case strings.Contains(line, "fatal") || strings.Contains(line, "runtime:") ||
			strings.Contains(line, "SIG") || strings.Contains(line, "unexpected"):
			t.Errorf("target stderr has a runtime failure: %q", line)
		case !stackLine.MatchString(line):
			t.Errorf("target stderr has an unexpected line: %q", line)
		}
	}
	if headers != want {
		t.Errorf("target stderr has %d net/http panic reports, want %d", headers, want)
	}
	if t.Failed() {
		t.Logf("target stderr:\n%s", stderr)
	}
}

// TestObservedProgramUnharmed checks that instrumented programs survive the
// deep-recursion, panic and slow handlers intact: after the mix (fully
// recorded by the agent) every variant still answers correctly and logged
// nothing but net/http's own panic reports.
func TestObservedProgramUnharmed(t *testing.T) {
	requireBPF(t)
	a := startAgent(t, "")
	for _, name := range allVariantNames() {
		t.Run(name, func(t *testing.T) {
			v := variantByName(t, name)
			t.Parallel()
			tp := startTarget(t, v.exe, uniqueService("unharmed", v))
			a.waitTargeted(t, tp.pid, 10*time.Second)
			mix := trafficMix(v.minor)
			sendMix(t, tp, mix)
			// Twice as deep as the mix, while instrumented.
			if code, body, err := tp.do("GET", "/deep?depth=100000"); err != nil || code != 200 || !strings.HasPrefix(body, "deep 100000 ") {
				t.Errorf("GET /deep?depth=100000 after the mix: %d %q %v", code, body, err)
			}
			waitTotal(t, a, tp.service, uint64(len(mix)+1), 15*time.Second)
			if !tp.alive() {
				t.Fatalf("target exited: %v\nstderr:\n%s", tp.err, tp.stderr.String())
			}
			checks := []struct {
				method, path string
				status       int
				body         string
			}{
				{"GET", "/items/42", 200, "item 42\n"},
				{"POST", "/items", 201, "created\n"},
				{"GET", "/teapot", 418, "I'm a teapot\n"},
				{"GET", "/nothing", 200, ""},
				{"GET", "/fail", 503, "unavailable\n"},
				{"GET", "/slow?ms=20", 200, "slept 20ms\n"},
				{"GET", "/users/5/orders/6", 200, "user 5 order 6\n"},
			}
			for _, c := range checks {
				code, body, err := tp.do(c.method, c.path)
				if err != nil || code != c.status || body != c.body {
					t.Errorf("%s %s after the mix: %d %q %v; want %d %q", c.method, c.path, code, body, err, c.status, c.body)
				}
			}
			if code, body, err := tp.do("GET", "/deep?depth=1000"); err != nil || code != http.StatusOK || !strings.HasPrefix(body, "deep 1000 ") {
				t.Errorf("GET /deep?depth=1000 after the mix: %d %q %v", code, body, err)
			}
			if !tp.alive() {
				t.Fatalf("target exited: %v", tp.err)
			}
			checkOnlyPanicLogs(t, tp.stderr.String(), 2)
		})
	}
}
