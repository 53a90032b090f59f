package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gRPC builds: test/targets/grpcsvc links grpc-go v1.85 (Go 1.26 and 1.27),
// test/targets/grpcold the same program with grpc-go v1.60 (Go 1.21 and
// 1.23, whose grpc-go hands handleStream a *transport.Stream and writes
// statuses through (*http2Server).WriteStatus). Each build serves and
// calls itself over TLS or plaintext; the Go 1.26 build also as PIE and
// linked externally.
var grpcBuilds = []struct {
	b   matrixBuild
	tls bool
}{
	{matrixBuild{"grpcsvc", "plain", 26}, false},
	{matrixBuild{"grpcsvc", "stripped", 26}, true},
	{matrixBuild{"grpcsvc", "stripped", 27}, false},
	{matrixBuild{"grpcsvc", "pie", 26}, true},      // return addresses moved by the load bias
	{matrixBuild{"grpcsvc", "extlink", 26}, false}, // cgo, linked by the system linker, stripped
	{matrixBuild{"grpcold", "plain", 23}, true},
	{matrixBuild{"grpcold", "stripped", 23}, false},
	{matrixBuild{"grpcold", "stripped", 21}, true},
}

// grpcRound is what one round of the target's script calls: service|method|code
// → count, as both sides see it (the server sees the unknown method as
// _OTHER). old says grpc-go v1.60 (grpcold), whose server reports a call
// whose connection the client closed before the answer with the status
// it then writes, Unknown (the transport's "transport is closing" as a
// status); v1.85 writes Unavailable (toRPCErr of that error). The client
// sees Canceled (its ClientConn closing) on both. Each is what otelgrpc
// reports for that release.
func grpcRound(server, old bool) map[string]uint64 {
	const svc = "blindspot.test.Echo"
	k := func(method, code string) string { return svc + "|" + method + "|" + code }
	m := map[string]uint64{
		k("Unary", "0"):        3,
		k("Unary", "13"):       1, // a panic recovered into Internal
		k("Unary", "4"):        1, // deadline exceeded
		k("Unary", "1"):        2, // canceled by the client; reset before the answer
		k("ServerStream", "0"): 1, k("ServerStream", "9"): 1, k("ServerStream", "13"): 1,
		k("Bidi", "0"): 1, k("Bidi", "8"): 1,
	}
	for code := 1; code <= 16; code++ { // every status returned by the handler
		m[k("Unary", strconv.Itoa(code))]++
	}
	// Reset, then its connection closed, before the answer: Canceled on
	// the client; Unavailable on the server (v1.85 writes it; v1.60 writes
	// nothing, and the call ends where processUnaryRPC finds that the
	// answer's error carries no status).
	if server {
		m[k("Unary", "14")]++
	} else {
		m[k("Unary", "1")]++
	}
	switch {
	case !server:
		m[k("NoSuchMethod", "12")] = 1
		m[k("Unary", "1")]++ // its connection closed before the answer
	case old:
		m["_OTHER|_OTHER|12"] = 1
		m[k("Unary", "2")]++
	default:
		m["_OTHER|_OTHER|12"] = 1
		m[k("Unary", "14")]++
	}
	return m
}

// grpcFailing is what the round's calls whose stream is never created
// count on the client (service|method|code|address|port), for the
// server's port, the closed one and the silent one.
func grpcFailing(port, closed, silent string) map[string]uint64 {
	const svc = "blindspot.test.Echo"
	k := func(method, code, port string) string { return svc + "|" + method + "|" + code + "|localhost|" + port }
	return map[string]uint64{
		k("Unary", "14", closed): 3, k("ServerStream", "14", closed): 3, // connection refused (one through interceptors)
		k("Unary", "4", silent): 2, k("ServerStream", "4", silent): 2, // deadline while connecting
		k("Unary", "1", port): 2, k("ServerStream", "1", port): 2, // closed ClientConn
	}
}

// TestGRPC runs grpc-go servers and clients (two grpc-go releases, four Go
// releases, plain and stripped, TLS and plaintext) under one agent and
// checks the exact count of every (service, method, status) on both sides,
// and the client's server address and port; calls whose stream is never
// created (refused, deadline while connecting, closed ClientConn) count on
// the client with their status.
func TestGRPC(t *testing.T) {
	requireBPF(t)
	var want []matrixBuild
	for _, g := range grpcBuilds {
		want = append(want, g.b)
	}
	vs, skipped, err := buildMatrix(env.ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	requireMatrix(t, skipped)
	a := startAgent(t, "")
	type run struct {
		name                 string
		p                    *lineProc
		port, closed, silent string
	}
	var runs []run
	for _, v := range vs {
		mode := "plaintext"
		for _, g := range grpcBuilds {
			if g.b.minor == v.minor && g.b.flavor == v.flavor && strings.Contains(v.exe, g.b.prog+"-") && g.tls {
				mode = "tls"
			}
		}
		name := fmt.Sprintf("%s-%s-%s", strings.SplitN(strings.TrimPrefix(v.exe, env.dir+"/"), "-", 2)[0], v.name, mode)
		p := startLineProc(t, v.exe, fmt.Sprintf("e2e-grpc-%s-%d", name, serviceSeq.Add(1)), mode)
		port := strings.TrimPrefix(p.waitLine(t, "port ", 10*time.Second), "port ")
		closed := strings.TrimPrefix(p.waitLine(t, "closed ", 10*time.Second), "closed ")
		silent := strings.TrimPrefix(p.waitLine(t, "silent ", 10*time.Second), "silent ")
		runs = append(runs, run{name, p, port, closed, silent})
	}
	for _, r := range runs {
		ts := a.waitTargeted(t, r.p.pid, 15*time.Second)
		checkFamily(t, ts, "grpc_server")
		checkFamily(t, ts, "grpc_client")
		r.p.send(t, "run")
	}
	// The status page lists both families for each program.
	page, err := a.get("/")
	if err != nil {
		t.Fatal(err)
	}
	// (3 server functions where processUnaryRPC exists: v1.60.)
	for _, fam := range [][]string{
		{"grpc_server: <details><summary>2 functions", "grpc_server: <details><summary>3 functions"},
		{"grpc_client: <details><summary>4 functions"},
	} {
		n := 0
		for _, f := range fam {
			n += strings.Count(string(page), f)
		}
		if n < len(runs) {
			t.Errorf("status page shows %q %d times, want %d (one per program)", fam, n, len(runs))
		}
	}
	for _, r := range runs {
		r.p.waitLine(t, "done 1", 30*time.Second)
		// The target checks each call's outcome against the script.
		if e := r.p.stderr.String(); strings.Contains(e, "unexpected error") {
			t.Errorf("%s: calls did not end as scripted:\n%s", r.name, e)
		}
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			old := strings.HasPrefix(r.name, "grpcold-")
			wantServer := grpcRound(true, old)
			wantClient := map[string]uint64{}
			for k, n := range grpcRound(false, old) {
				wantClient[k+"|localhost|"+r.port] = n
			}
			for k, n := range grpcFailing(r.port, r.closed, r.silent) {
				wantClient[k] += n
			}
			var gotServer, gotClient map[string]uint64
			waitFor(10*time.Second, func() bool {
				s, err := a.scrape()
				if err != nil {
					return false
				}
				gotServer = s.histCounts("rpc_server_call_duration_seconds", r.p.service, "rpc_service", "rpc_method", "rpc_grpc_status_code")
				gotClient = s.histCounts("rpc_client_call_duration_seconds", r.p.service, "rpc_service", "rpc_method", "rpc_grpc_status_code", "server_address", "server_port")
				return diffCounts(gotServer, wantServer) == "" && diffCounts(gotClient, wantClient) == ""
			})
			if d := diffCounts(gotServer, wantServer); d != "" {
				t.Errorf("rpc_server_call_duration_seconds counts differ:\n%s", d)
			}
			if d := diffCounts(gotClient, wantClient); d != "" {
				t.Errorf("rpc_client_call_duration_seconds counts differ:\n%s", d)
			}
			s := a.mustScrape(t)
			for _, name := range []string{"rpc_server_call_duration_seconds", "rpc_client_call_duration_seconds"} {
				for _, se := range s.histograms[name] {
					if se.labels["service_name"] == r.p.service && se.labels["rpc_system"] != "grpc" {
						t.Errorf("%s: rpc_system = %q, want grpc", name, se.labels["rpc_system"])
					}
				}
			}
		})
	}
}

// grpcCounted returns blindspot_events_lost_total of the gRPC family fam
// and the number of calls metric counts for service.
func grpcCounted(t *testing.T, a *agentProc, fam, metric, service string) (lost, counted uint64) {
	t.Helper()
	s := a.mustScrape(t)
	l, _ := s.value("blindspot_events_lost_total", map[string]string{"probe": fam})
	for _, n := range s.histCounts(metric, service, "rpc_method") {
		counted += n
	}
	return uint64(l), counted
}

// TestGRPCInFlightBound shrinks the maps of calls in flight to 64 entries
// (a test hook) and keeps 100 slow unary calls in flight at once: each
// map stays bounded, and every call is counted or counted as lost on each
// side, never dropped silently (an LRU map would evict a start and leave
// its end unmatched); afterwards calls are counted exactly again.
func TestGRPCInFlightBound(t *testing.T) {
	requireBPF(t)
	const bound, n = 64, 100
	t.Setenv("BLINDSPOT_TEST_MAX_IN_FLIGHT", fmt.Sprint(bound))
	vs, skipped, err := buildMatrix(env.ctx, []matrixBuild{{"grpcsvc", "plain", 26}})
	if err != nil {
		t.Fatal(err)
	}
	requireMatrix(t, skipped)
	a := startAgent(t, "")
	p := startLineProc(t, vs[0].exe, fmt.Sprintf("e2e-grpc-inflight-%d", serviceSeq.Add(1)), "plaintext")
	p.waitLine(t, "port ", 10*time.Second)
	a.waitTargeted(t, p.pid, 15*time.Second)
	sides := []struct{ fam, metric, short string }{
		{"grpc_server", "rpc_server_call_duration_seconds", "grpc_server_sta"},
		{"grpc_client", "rpc_client_call_duration_seconds", "grpc_client_sta"},
	}
	var lost0 [2]uint64
	for i, sd := range sides {
		lost0[i], _ = grpcCounted(t, a, sd.fam, sd.metric, p.service)
	}
	p.send(t, fmt.Sprintf("burst %d 3000", n))
	peak := map[string]int{}
	waitFor(2500*time.Millisecond, func() bool {
		u := measureAgent(t, a)
		for _, sd := range sides {
			peak[sd.short] = max(peak[sd.short], u.MapEntries[sd.short])
		}
		return false
	})
	p.waitLine(t, fmt.Sprintf("burst done %d", n), 30*time.Second)
	var counted [2]uint64
	for i, sd := range sides {
		var lost uint64
		waitFor(10*time.Second, func() bool {
			l, c := grpcCounted(t, a, sd.fam, sd.metric, p.service)
			lost, counted[i] = l-lost0[i], c
			return counted[i]+lost >= n
		})
		t.Logf("%s: %d calls in flight at once, map bound %d (peak %d entries): counted %d, lost %d", sd.fam, n, bound, peak[sd.short], counted[i], lost)
		if peak[sd.short] > bound {
			t.Errorf("%s: map of calls in flight held %d entries, bound %d", sd.fam, peak[sd.short], bound)
		}
		if counted[i]+lost != n {
			t.Errorf("%s: counted %d + lost %d = %d, sent %d: calls dropped without being counted as lost", sd.fam, counted[i], lost, counted[i]+lost, n)
		}
		if lost == 0 {
			t.Errorf("%s: no call lost: the map never filled, the test proves nothing", sd.fam)
		}
	}
	if e := p.stderr.String(); strings.Contains(e, "unexpected error") {
		t.Fatalf("calls failed:\n%s", e)
	}
	// With the map free again, every call counts.
	p.send(t, "burst 20 10")
	p.waitLine(t, "burst done 20", 30*time.Second)
	for i, sd := range sides {
		var c uint64
		waitFor(10*time.Second, func() bool {
			_, c = grpcCounted(t, a, sd.fam, sd.metric, p.service)
			return c >= counted[i]+20
		})
		if c != counted[i]+20 {
			t.Errorf("%s: %d calls counted after 20 more, want %d", sd.fam, c, counted[i]+20)
		}
	}
}
