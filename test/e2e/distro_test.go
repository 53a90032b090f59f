package e2e

import (
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Routes and RPCs of programs as Debian builds them (stripped, -trimpath,
// no module information, Go 1.19 to 1.27), from the corpus's packages
// (corpus_test.go): the router and gRPC probes must read exactly what the
// program did, or leave themselves out and say why.

// distroFamily returns the /targets entry of family in ts, and whether
// the family is there.
func distroFamily(ts targetStatus, family string) (error string, left []string, sites []string, ok bool) {
	for _, p := range ts.Probes {
		if p.Family == family {
			return p.Error, p.Left, p.Sites, true
		}
	}
	return "", nil, nil, false
}

// runObserved runs a short-lived program (exe under env.dir, so that the
// agent's include filter covers it) with OTEL_SERVICE_NAME=service, held
// stopped at its exec (ptrace) until the agent lists it in /targets with
// its probes attached: every call it makes is observed. It returns the
// program's /targets entry, its output and its exit error.
func runObserved(t *testing.T, a *agentProc, exe, service string, args ...string) (targetStatus, string, error) {
	t.Helper()
	// The tracer is the thread that started the program: it alone may
	// detach it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	out := &syncBuffer{}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(filteredEnv("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"), "OTEL_SERVICE_NAME="+service)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Until its waiter runs, a failure kills and reaps the program here
	// (SIGKILL ends a traced process too).
	errc := make(chan error, 1)
	waiting := false
	defer func() {
		cmd.Process.Kill()
		if waiting {
			<-errc
		} else {
			cmd.Wait()
		}
	}()
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || !ws.Stopped() {
		t.Fatalf("%s: not stopped at its exec: %v (status %#x)", service, err, ws)
	}
	ts := a.waitTargeted(t, pid, 15*time.Second)
	if err := syscall.PtraceDetach(pid); err != nil {
		t.Fatalf("%s: detach: %v", service, err)
	}
	waiting = true
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		errc <- err // for the deferred reap
		return ts, out.String(), err
	case <-time.After(30 * time.Second):
		t.Fatalf("%s %v: still running after 30s: %s", service, args, out.String())
	}
	return ts, "", nil
}

// distroCall is one etcdctl command and the one RPC it makes
// (service|method|status code), as etcd 3.4 and 3.5's etcdctl make it:
// clientv3.New makes no call (no auth, no version check, no auto-sync),
// and its retry interceptor does not retry these codes.
type distroCall struct {
	args  []string
	fails bool
	rpc   string
}

var distroCalls = []distroCall{
	{[]string{"put", "distro", "0"}, false, "etcdserverpb.KV|Put|0"},
	{[]string{"put", "distro", "1"}, false, "etcdserverpb.KV|Put|0"},
	{[]string{"put", "distro", "2"}, false, "etcdserverpb.KV|Put|0"},
	{[]string{"get", "distro"}, false, "etcdserverpb.KV|Range|0"},
	{[]string{"get", "distro", "--rev=1000"}, true, "etcdserverpb.KV|Range|11"},    // a future revision: OutOfRange
	{[]string{"put", "other", "x", "--lease=1234"}, true, "etcdserverpb.KV|Put|5"}, // no such lease: NotFound
	{[]string{"del", "distro"}, false, "etcdserverpb.KV|DeleteRange|0"},
	{[]string{"lease", "revoke", "1234"}, true, "etcdserverpb.Lease|LeaseRevoke|5"},
	{[]string{"endpoint", "status"}, false, "etcdserverpb.Maintenance|Status|0"},
	{[]string{"snapshot", "save", "SNAPSHOT"}, false, "etcdserverpb.Maintenance|Snapshot|0"}, // a server stream to its end
}

// TestDistroGRPC runs etcd (a grpc-go server: v1.33 in bookworm, older
// than the releases the families check, v1.64 in trixie, v1.81 in sid)
// and etcdctl (a grpc-go client of it) as Debian builds them: stripped,
// without DWARF or module information. The families read the grpc-go
// release from its user-agent constant and the struct offsets from the
// binaries' type data. bookworm's release is refused as out of range, on
// both programs, and no RPC series appears. trixie's and sid's attach:
// a long-lived etcdctl watch and a bounded set of one-shot etcdctl
// commands, each held at its exec until the agent attached, count
// exactly on both sides, per (service, method, status). etcd calls
// itself over gRPC only through its grpc-gateway, for HTTP /v3/ requests:
// the test sends one, counted on etcd's client side and its server side,
// and one the gateway refuses before calling. Nothing else calls: the
// server's counts are the commands' and the gateway's.
func TestDistroGRPC(t *testing.T) {
	requireBPF(t)
	fetchCorpus(t)
	a := startAgent(t, "")
	const (
		server = "rpc_server_call_duration_seconds"
		client = "rpc_client_call_duration_seconds"
	)
	rpcLabels := []string{"rpc_service", "rpc_method", "rpc_grpc_status_code"}
	peerLabels := append(rpcLabels, "server_address", "server_port")
	for _, suite := range []string{"bookworm", "trixie", "sid"} {
		t.Run(suite+"/etcd", func(t *testing.T) {
			p := corpusProgramsByPkg["etcd-server"]
			p.suite, p.pkg = suite, "etcd-server"
			cp, bi := startCorpusProgram(t, a, p)
			_, port, _ := strings.Cut(cp.addr, ":")
			refused := suite == "bookworm"
			// check: the family is attached, or refused as out of range
			// (bookworm: grpc-go v1.33.3); must says it has to be there
			// (bookworm's etcdctl links no gRPC server).
			check := func(t *testing.T, ts targetStatus, what, fam string, must bool) {
				t.Helper()
				e, _, sites, ok := distroFamily(ts, fam)
				const why = "google.golang.org/grpc v1.33.3 (no module information: read from its user-agent string grpc-go/1.33.3): only v1.50 to v1.85 are checked"
				switch {
				case !ok && !must:
				case !ok:
					t.Errorf("%s: no %s family on /targets", what, fam)
				case refused && (e != why || len(sites) > 0):
					t.Errorf("%s: %s error %q, sites %v; want it refused: %q", what, fam, e, sites, why)
				case !refused && (e != "" || len(sites) == 0):
					t.Errorf("%s: %s error %q, sites %v; want it attached", what, fam, e, sites)
				case !refused && !strings.HasPrefix(what, "etcdctl ["):
					t.Logf("%s: %s attached: %v", what, fam, sites)
				}
			}
			ts := a.waitTargeted(t, cp.pid, 10*time.Second)
			check(t, ts, "etcd "+bi.GoVersion, "grpc_server", true)
			check(t, ts, "etcd "+bi.GoVersion, "grpc_client", true)

			ctl := filepath.Join(corpusDir(t, suite+"/etcd-client"), "usr/bin/etcdctl")
			exe := filepath.Join(env.dir, "corpus-"+suite+"-etcdctl")
			if err := linkOrCopy(ctl, exe); err != nil {
				t.Fatal(err)
			}
			endpoint := []string{"--endpoints=http://" + cp.addr, "--command-timeout=10s"}
			// A long-lived client: a watch, instrumented before it calls.
			w := startLineProc(t, exe, fmt.Sprintf("e2e-distro-etcdctl-%s-%d", suite, serviceSeq.Add(1)), append(endpoint, "watch", "distro")...)
			wts := a.waitTargeted(t, w.pid, 15*time.Second)
			check(t, wts, "etcdctl watch", "grpc_client", true)
			check(t, wts, "etcdctl watch", "grpc_server", !refused)

			wantServer := map[string]uint64{}
			var runs []string // service of each command
			for _, c := range distroCalls {
				args := append(append([]string{}, endpoint...), c.args...)
				if c.args[0] == "snapshot" {
					args[len(args)-1] = filepath.Join(t.TempDir(), "snap.db")
				}
				svc := fmt.Sprintf("e2e-distro-etcdctl-%s-%d", suite, serviceSeq.Add(1))
				ts, out, err := runObserved(t, a, exe, svc, args...)
				if (err != nil) != c.fails {
					t.Fatalf("etcdctl %v: %v, want failure %v: %s", c.args, err, c.fails, lastLines(out, 3))
				}
				check(t, ts, fmt.Sprintf("etcdctl %v", c.args), "grpc_client", true)
				wantServer[c.rpc]++
				runs = append(runs, svc)
			}
			// The watch saw every put: the calls went through while both
			// programs were observed.
			w.waitLine(t, "2", 15*time.Second)
			// etcd's own gRPC client: its grpc-gateway answers HTTP /v3/
			// requests by calling etcd over gRPC, on its client port. A
			// body that is not JSON is refused (400) before any call.
			for _, r := range []struct {
				body string
				code int
			}{{`{"key":"ZGlzdHJv"}`, 200}, {"garbage", 400}} {
				code, body, err := cp.doBody(corpusRequest{method: "POST", path: "/v3/kv/range", body: r.body})
				if err != nil || code != r.code {
					t.Fatalf("POST /v3/kv/range %s: %d %v, want %d: %s", r.body, code, err, r.code, body)
				}
			}
			wantServer["etcdserverpb.KV|Range|0"]++
			// service → metric → labels → count: every program, both
			// sides. The watch's stream is still open: counted on neither.
			// etcdctl links a gRPC server too, which serves nothing.
			want := map[string]map[string]map[string]uint64{
				cp.service: {server: wantServer, client: {"etcdserverpb.KV|Range|0|127.0.0.1|" + port: 1}},
				w.service:  {server: {}, client: {}},
			}
			for i, c := range distroCalls {
				want[runs[i]] = map[string]map[string]uint64{server: {}, client: {c.rpc + "|127.0.0.1|" + port: 1}}
			}
			if refused {
				for _, m := range want {
					m[server], m[client] = map[string]uint64{}, map[string]uint64{}
				}
			}
			got := map[string]map[string]map[string]uint64{}
			diff := func() string {
				var out []string
				for svc, m := range want {
					for _, metric := range []string{server, client} {
						labels := rpcLabels
						if metric == client {
							labels = peerLabels
						}
						if d := diffCounts(got[svc][metric], m[metric]); d != "" {
							out = append(out, fmt.Sprintf("%s of %s (%s):\n%s", metric, svc, strings.Join(labels, "|"), d))
						}
					}
				}
				sort.Strings(out)
				return strings.Join(out, "\n")
			}
			waitFor(10*time.Second, func() bool {
				s, err := a.scrape()
				if err != nil {
					return false
				}
				for svc := range want {
					got[svc] = map[string]map[string]uint64{server: s.histCounts(server, svc, rpcLabels...), client: s.histCounts(client, svc, peerLabels...)}
				}
				return diff() == ""
			})
			if d := diff(); d != "" {
				t.Errorf("counts differ (etcdctl runs in order: %v):\n%s", runs, d)
			}
			if refused {
				return
			}
			// The watch's client killed, its stream ends on the server.
			// etcd's watch server races two ends: its context canceled
			// (Canceled) or its receive failing on the closed transport
			// (Unavailable); both were seen to be Canceled here, but the
			// race is etcd's, so either is accepted. Exactly one call.
			w.cmd.Process.Kill()
			<-w.done
			var codes map[string]uint64
			waitFor(10*time.Second, func() bool {
				s, err := a.scrape()
				if err != nil {
					return false
				}
				codes = s.histCounts(server, cp.service, rpcLabels...)
				return codes["etcdserverpb.Watch|Watch|1"]+codes["etcdserverpb.Watch|Watch|14"] > 0
			})
			after := maps.Clone(wantServer)
			for _, code := range []string{"1", "14"} {
				if k := "etcdserverpb.Watch|Watch|" + code; codes[k] > 0 {
					after[k] = 1
				}
			}
			if d := diffCounts(codes, after); d != "" || len(after) != len(wantServer)+1 {
				t.Errorf("%s of etcd after the watch's client ended: %v; want the commands' and one Watch, Canceled or Unavailable:\n%s", server, codes, d)
			}
		})
	}
}
