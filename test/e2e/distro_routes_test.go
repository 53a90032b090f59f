package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// distroRoute is one request of a distribution program and the route
// template it must be counted under.
type distroRoute struct {
	req   corpusRequest
	route string
}

// TestDistroRoutes drives docker-registry, which routes with gorilla/mux,
// as bookworm, trixie and sid build it, and checks that every request is
// counted once under the route template the registry registered (in
// ServeMux syntax), and that a request no route matched keeps today's
// route from its path.
func TestDistroRoutes(t *testing.T) {
	requireBPF(t)
	fetchCorpus(t)
	a := startAgent(t, "")
	for _, suite := range []string{"bookworm", "trixie", "sid"} {
		t.Run(suite+"/docker-registry", func(t *testing.T) {
			p := corpusProgramsByPkg["docker-registry"]
			p.suite, p.pkg = suite, "docker-registry"
			cp, bi := startCorpusProgram(t, a, p)
			ts := a.waitTargeted(t, cp.pid, 10*time.Second)
			checkRouterProbed(t, ts, "github.com/gorilla/mux.(*Router).ServeHTTP")
			if !waitFor(30*time.Second, func() bool {
				code, err := cp.do(corpusRequest{method: "GET", path: "/v2/"})
				return err == nil && code == 200
			}) {
				t.Fatalf("GET /v2/ not 200 within 30s")
			}
			routes := []distroRoute{
				{corpusGet("/v2/"), "/v2/"},
				{corpusGet("/v2/_catalog"), "/v2/_catalog"},
				{corpusGet("/v2/library/app/manifests/latest"), "/v2/{name}/manifests/{reference}"},
				{corpusHead("/v2/x/manifests/v1.2"), "/v2/{name}/manifests/{reference}"},
				{corpusGet("/v2/x/tags/list"), "/v2/{name}/tags/list"},
				{corpusGet("/v2/x/blobs/sha256:" + strings.Repeat("ab", 32)), "/v2/{name}/blobs/{digest}"},
				{corpusRequest{method: "POST", path: "/v2/x/blobs/uploads/"}, "/v2/{name}/blobs/uploads/"},
				{corpusGet("/v2/x/blobs/uploads/0d8fb6f4-d6e4-4bb8-bd2c-6fa6b6ac1d63"), "/v2/{name}/blobs/uploads/{uuid}"},
				{corpusGet("/nope/12345"), "/nope/{id}"}, // matches no route: 404, route from the path
			}
			want := map[string]uint64{"GET|200|/v2/": 1} // the readiness request above
			for round := 0; round < 2; round++ {
				for _, r := range routes {
					code, _, err := cp.doBody(r.req)
					if code == 0 {
						t.Fatalf("%s %s: %v", r.req.method, r.req.path, err)
					}
					want[r.req.method+"|"+strconv.Itoa(code)+"|"+r.route]++
				}
			}
			var got map[string]uint64
			waitFor(10*time.Second, func() bool {
				s, err := a.scrape()
				if err != nil {
					return false
				}
				got = s.histCounts("http_server_request_duration_seconds", cp.service, "http_request_method", "http_response_status_code", "http_route")
				return diffCounts(got, want) == ""
			})
			if d := diffCounts(got, want); d != "" {
				t.Errorf("%s (%s): counts by method|status|route differ:\n%s", p.name(), bi.GoVersion, d)
			} else {
				t.Logf("%s (%s): counted exactly: %s", p.name(), bi.GoVersion, formatCounts(want))
			}
		})
	}
}

