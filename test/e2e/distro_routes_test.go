package e2e

import (
	"fmt"
	"path/filepath"
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

// distroRouted is a distribution program that routes with a router, and
// the requests that show it.
type distroRouted struct {
	name   string // subtest name
	pkg    string // its corpus package
	suites []string
	probed string // the router's probed function
	// prog changes the corpus program (configuration) where needed.
	prog   func(p corpusProgram) corpusProgram
	ready  string // a path that answers 2xx once it serves
	routes []distroRoute
}

var distroRoutedPrograms = []distroRouted{
	{
		// aptly's REST API (gin v1.8 in bookworm's build, newer in
		// trixie's and sid's): api := router.Group("/api") with
		// api.GET("/repos/:name", ...) and the like.
		name: "aptly", pkg: "aptly", suites: []string{"bookworm", "trixie", "sid"},
		probed: "github.com/gin-gonic/gin.(*Engine).ServeHTTP",
		ready:  "/api/version",
		routes: []distroRoute{
			{corpusGet("/api/version"), "/api/version"},
			{corpusGet("/api/repos"), "/api/repos"},
			{corpusGet("/api/repos/nosuch"), "/api/repos/{name}"}, // 404 from the handler
			{corpusGet("/api/repos/other-repo-7/packages"), "/api/repos/{name}/packages"},
			{corpusGet("/api/snapshots/snap1"), "/api/snapshots/{name}"},
			{corpusGet("/api/files"), "/api/files"},
			{corpusGet("/api/publish"), "/api/publish"},
			{corpusGet("/nope/12345"), "/nope/{id}"}, // matches no route: 404, route from the path
		},
	},
	{
		// The registry's v2 API (gorilla/mux v1.8.0 in bookworm,
		// v1.8.1 in trixie and sid), whose templates carry long
		// regexps: "/v2/{name:(?:(?:[a-zA-Z0-9]|...)}/manifests/...".
		name: "docker-registry", pkg: "docker-registry", suites: []string{"bookworm", "trixie", "sid"},
		probed: "github.com/gorilla/mux.(*Router).ServeHTTP",
		ready:  "/v2/",
		routes: []distroRoute{
			{corpusGet("/v2/"), "/v2/"},
			{corpusGet("/v2/_catalog"), "/v2/_catalog"},
			{corpusGet("/v2/library/app/manifests/latest"), "/v2/{name}/manifests/{reference}"},
			{corpusHead("/v2/x/manifests/v1.2"), "/v2/{name}/manifests/{reference}"},
			{corpusGet("/v2/x/tags/list"), "/v2/{name}/tags/list"},
			{corpusGet("/v2/x/blobs/sha256:" + strings.Repeat("ab", 32)), "/v2/{name}/blobs/{digest}"},
			{corpusRequest{method: "POST", path: "/v2/x/blobs/uploads/"}, "/v2/{name}/blobs/uploads/"},
			{corpusGet("/v2/x/blobs/uploads/0d8fb6f4-d6e4-4bb8-bd2c-6fa6b6ac1d63"), "/v2/{name}/blobs/uploads/{uuid}"},
			{corpusGet("/nope/12345"), "/nope/{id}"}, // matches no route: 404, route from the path
		},
	},
	{
		// rclone serve http: router.Get("/*", ...) and router.Head("/*",
		// ...) on chi (Debian's chi v5 sources, imported as
		// github.com/go-chi/chi).
		name: "rclone", pkg: "rclone", suites: []string{"bookworm", "trixie", "sid"},
		probed: "github.com/go-chi/chi.(*Mux).ServeHTTP",
		ready:  "/",
		routes: []distroRoute{
			{corpusGet("/"), "/*"},
			{corpusGet("/a.txt"), "/*"},
			{corpusHead("/a.txt"), "/*"},
			{corpusGet("/sub/"), "/*"},
			{corpusGet("/nope/12345"), "/*"}, // 404 from the handler
			// chi's 405: no route matched the method, chi's own
			// RoutePattern() is empty: the route from the path.
			{corpusRequest{method: "POST", path: "/a.txt"}, "/a.txt"},
		},
	},
	{
		// caddy's ACME server (smallstep's ACME API on chi, imported
		// as github.com/go-chi/chi), mounted at /acme/ by caddy:
		// chi.Route("/acme/", ...) around "/{provisionerID}/directory".
		name: "caddy-acme", pkg: "caddy", suites: []string{"bookworm", "trixie", "sid"},
		probed: "github.com/go-chi/chi.(*Mux).ServeHTTP",
		prog: func(p corpusProgram) corpusProgram {
			p.privateTrust = true // the PKI app may install its root
			p.args = func(dir, addr string) []string {
				writeFile(dir, "caddy.json", fmt.Sprintf(`{"admin": {"disabled": true},
 "storage": {"module": "file_system", "root": %q},
 "apps": {
  "pki": {"certificate_authorities": {"local": {"install_trust": false}}},
  "http": {"servers": {"s": {"listen": [%q], "automatic_https": {"disable": true},
    "routes": [{"handle": [{"handler": "acme_server"}]}]}}}}}
`, filepath.Join(dir, "storage"), addr))
				return []string{"run", "--config", filepath.Join(dir, "caddy.json")}
			}
			return p
		},
		ready: "/acme/local/directory",
		routes: []distroRoute{
			{corpusGet("/acme/local/directory"), "/acme/{provisionerID}/directory"},
			{corpusHead("/acme/local/directory"), "/acme/{provisionerID}/directory"},
			{corpusGet("/acme/local/new-nonce"), "/acme/{provisionerID}/new-nonce"},
			{corpusHead("/acme/local/new-nonce"), "/acme/{provisionerID}/new-nonce"},
			// Inside the mount, no route of the ACME API: chi's own
			// RoutePattern is the mount's.
			{corpusGet("/acme/local/nope"), "/acme/*"},
			{corpusGet("/nope/12345"), "/nope/{id}"}, // not routed by chi: the path's route
		},
	},
}

// TestDistroRoutes drives Debian-built programs that route with gin
// (aptly's API), gorilla/mux (docker-registry) and chi under its v1 import
// path (rclone serve http, caddy's ACME server), as bookworm, trixie
// and sid build them (Go 1.19 to 1.26, stripped, no module information),
// and checks that every request is counted once under the route template
// the program registered (in ServeMux syntax), and that a request no route
// matched keeps today's route from its path.
func TestDistroRoutes(t *testing.T) {
	requireBPF(t)
	fetchCorpus(t)
	a := startAgent(t, "")
	for _, d := range distroRoutedPrograms {
		for _, suite := range d.suites {
			t.Run(suite+"/"+d.name, func(t *testing.T) { distroRoutes(t, a, d, suite) })
		}
	}
}

func distroRoutes(t *testing.T, a *agentProc, d distroRouted, suite string) {
	p := corpusProgramsByPkg[d.pkg]
	p.suite, p.pkg = suite, d.pkg
	if d.prog != nil {
		p = d.prog(p)
	}
	cp, bi := startCorpusProgram(t, a, p)
	ts := a.waitTargeted(t, cp.pid, 10*time.Second)
	checkRouterProbed(t, ts, d.probed)
	want := map[string]uint64{}
	if !waitFor(30*time.Second, func() bool {
		code, err := cp.do(corpusRequest{method: "GET", path: d.ready})
		if err == nil {
			want["GET|"+strconv.Itoa(code)+"|"+d.routes[0].route]++ // the ready path is the first route's
		}
		return err == nil && code/100 == 2
	}) {
		t.Fatalf("GET %s not 2xx within 30s", d.ready)
	}
	for round := 0; round < 2; round++ {
		for _, r := range d.routes {
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
}
