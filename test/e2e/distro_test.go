package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// TestDistroGRPC runs etcd (a grpc-go server: v1.33 in bookworm, older
// than the releases the families check, v1.64 in trixie, v1.81 in sid) and
// etcdctl (a grpc-go client of it) as Debian builds them, and
// drives a bounded number of calls. Debian builds them without module
// information, so the grpc-go release they link, on which the probes'
// signatures depend, cannot be proven from the binary: both gRPC families
// must refuse to attach and say why on /targets, and no RPC series may
// appear for either program.
func TestDistroGRPC(t *testing.T) {
	requireBPF(t)
	fetchCorpus(t)
	a := startAgent(t, "")
	const why = "google.golang.org/grpc version unknown (no module information)"
	// checkRefused: the family that must be there is refused, and so is
	// the other where the program links it (bookworm's etcdctl links no
	// gRPC server).
	checkRefused := func(t *testing.T, ts targetStatus, what, must string) {
		t.Helper()
		for _, fam := range []string{"grpc_server", "grpc_client"} {
			e, _, sites, ok := distroFamily(ts, fam)
			switch {
			case !ok && fam != must:
			case !ok:
				t.Errorf("%s: no %s family on /targets, want it refused with the reason", what, fam)
			case !strings.Contains(e, why) || len(sites) > 0:
				t.Errorf("%s: %s error %q, sites %v; want it refused: %q", what, fam, e, sites, why)
			}
		}
	}
	for _, suite := range []string{"bookworm", "trixie", "sid"} {
		t.Run(suite+"/etcd", func(t *testing.T) {
			p := corpusProgramsByPkg["etcd-server"]
			p.suite, p.pkg = suite, "etcd-server"
			cp, bi := startCorpusProgram(t, a, p)
			checkRefused(t, a.waitTargeted(t, cp.pid, 10*time.Second), "etcd "+bi.GoVersion, "grpc_server")

			// A long-lived client: a watch, instrumented before it calls.
			ctl := filepath.Join(corpusDir(t, suite+"/etcd-client"), "usr/bin/etcdctl")
			exe := filepath.Join(env.dir, "corpus-"+suite+"-etcdctl")
			if err := linkOrCopy(ctl, exe); err != nil {
				t.Fatal(err)
			}
			w := startLineProc(t, exe, fmt.Sprintf("e2e-distro-etcdctl-%s-%d", suite, serviceSeq.Add(1)),
				"--endpoints=http://"+cp.addr, "--command-timeout=10s", "watch", "distro")
			checkRefused(t, a.waitTargeted(t, w.pid, 15*time.Second), "etcdctl watch", "grpc_client")
			// Three puts by one-shot etcdctl runs (the agent's include
			// filter does not cover them: they run from the package).
			for i := 0; i < 3; i++ {
				ctx, cancel := context.WithTimeout(env.ctx, 15*time.Second)
				out, err := exec.CommandContext(ctx, ctl, "--endpoints=http://"+cp.addr, "--command-timeout=10s", "put", "distro", strconv.Itoa(i)).CombinedOutput()
				cancel()
				if err != nil {
					t.Fatalf("etcdctl put: %v: %s", err, out)
				}
			}
			// The watch saw every put: the calls went through while
			// both programs were observed.
			w.waitLine(t, "2", 15*time.Second)
			s := a.mustScrape(t)
			for _, m := range []string{"rpc_server_call_duration_seconds", "rpc_client_call_duration_seconds"} {
				for _, svc := range []string{cp.service, w.service} {
					if n := s.histCounts(m, svc, "rpc_method"); len(n) > 0 {
						t.Errorf("%s of %s: %v, want none (the families are refused)", m, svc, n)
					}
				}
			}
		})
	}
}
