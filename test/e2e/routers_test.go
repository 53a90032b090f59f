package e2e

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The routers targets: one service per router, built with the routers' real
// modules, plain and stripped: test/targets/routers (gin v1.10, chi v5.2,
// echo v4.13, gorilla/mux v1.8.1) on Go 1.26 and 1.27; the same source
// with its go.old.mod (gin v1.8.1, chi v5.0.8, echo v4.10.2, gorilla/mux
// v1.8.0: modules that build with Go 1.19) on Go 1.19, 1.21 and 1.23, and
// with its go.mid.mod (gin v1.9.1, chi v5.0.12, echo v4.11.4, gorilla/mux
// v1.8.1: Go 1.20 and later) on Go 1.21 and 1.23.
var routerBuilds struct {
	once     sync.Once
	variants []variant
	skipped  []string
	err      error
}

func routerVariants(t *testing.T) []variant {
	t.Helper()
	routerBuilds.once.Do(func() {
		want := []matrixBuild{{"routers", "plain", 26}, {"routers", "stripped", 26}, {"routers", "stripped", 27}}
		for _, minor := range []int{19, 21, 23} {
			want = append(want, matrixBuild{"routers:old", "plain", minor}, matrixBuild{"routers:old", "stripped", minor})
		}
		want = append(want, matrixBuild{"routers:mid", "stripped", 21}, matrixBuild{"routers:mid", "plain", 23})
		routerBuilds.variants, routerBuilds.skipped, routerBuilds.err = buildMatrix(env.ctx, want)
	})
	if routerBuilds.err != nil {
		t.Fatal(routerBuilds.err)
	}
	for _, s := range routerBuilds.skipped {
		t.Logf("left out: %s", s)
	}
	return routerBuilds.variants
}

// routerCase is one router and the route its templates render as.
type routerCase struct {
	router, probed string
	files          string // http_route of the catch-all route
}

var routerCases = []routerCase{
	{"gin", "github.com/gin-gonic/gin.(*Engine).ServeHTTP", "/files/{path...}"},
	{"chi", "github.com/go-chi/chi/v5.(*Mux).ServeHTTP", "/files/*"},
	{"echo", "github.com/labstack/echo/v4.(*Echo).ServeHTTP", "/files/*"},
	{"mux", "github.com/gorilla/mux.(*Router).ServeHTTP", "/files/"},
}

// TestRouterRoutes serves a known mix through gin, chi, echo and
// gorilla/mux, plain and stripped, and checks that every request is
// counted once under the route template the program registered (in
// ServeMux syntax: ":id" and "{id:[a-z0-9]+}" are "{id}"), sub-routers'
// routes joined to their mount point, and that a request no route matched
// keeps today's route from its path.
//
// Served through a ServeMux pattern "/" (Go 1.22+), a router's route
// replaces the pattern, and a request no route matched keeps the pattern.
func TestRouterRoutes(t *testing.T) {
	requireBPF(t)
	vs := routerVariants(t)
	a := startAgent(t, "")
	for _, v := range vs {
		for _, rc := range routerCases {
			for _, underMux := range []bool{false, true} {
				// e.g. routers-old-go119-stripped/gin
				name, args, notFound := filepath.Base(v.exe)+"/"+rc.router, []string{"-router", rc.router}, "/nope/{id}"
				if underMux {
					if v.name != "go126-plain" {
						continue
					}
					name, args, notFound = name+"/servemux", append(args, "-servemux"), "/"
				}
				t.Run(name, func(t *testing.T) { routerRoutes(t, a, v, rc, args, notFound, false) })
			}
		}
	}
}

// TestRouterRoutesHTTP2 drives the same mix over HTTP/2 (TLS, net/http's
// HTTP/2 server): the route is read on the stream's handler goroutine as
// on a connection's.
func TestRouterRoutesHTTP2(t *testing.T) {
	requireBPF(t)
	var v variant
	for _, rv := range routerVariants(t) {
		if rv.name == "go126-plain" {
			v = rv
		}
	}
	if v.exe == "" {
		t.Fatal("no go126-plain build of the routers target")
	}
	a := startAgent(t, "")
	for _, rc := range routerCases {
		t.Run(rc.router, func(t *testing.T) {
			routerRoutes(t, a, v, rc, []string{"-router", rc.router, "-tls"}, "/nope/{id}", true)
		})
	}
}

// routerRoutes drives the mix through one router and checks the counts;
// notFound is the route of a request no route matched; h2 drives it over
// HTTPS and HTTP/2.
func routerRoutes(t *testing.T, a *agentProc, v variant, rc routerCase, args []string, notFound string, h2 bool) {
	tp := startTarget(t, v.exe, uniqueService("rt-"+rc.router, v), args...)
	do := func(path string) (int, error) {
		status, _, err := tp.do("GET", path)
		return status, err
	}
	if h2 {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			Proxy: nil, ForceAttemptHTTP2: true,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the target's throwaway certificate
		}}
		defer c.CloseIdleConnections()
		do = func(path string) (int, error) {
			resp, err := c.Get("https://" + tp.addr + path)
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			if resp.ProtoMajor != 2 {
				return 0, fmt.Errorf("served over %s, want HTTP/2", resp.Proto)
			}
			return resp.StatusCode, nil
		}
	}
	st := a.waitTargeted(t, tp.pid, 10*time.Second)
	checkRouterProbed(t, st, rc.probed)
	mix := []struct {
		path   string
		n      int
		status int
	}{
		{"/users/42", 3, 200},
		{"/users/alice", 2, 200}, // not folded from the path: the route says {id}
		{"/api/items/abc", 2, 200},
		{"/files/a/b.txt", 2, 200},
		{"/nope/12345", 3, 404}, // matches no route
	}
	sent := 0
	for _, m := range mix {
		for i := 0; i < m.n; i++ {
			status, err := do(m.path)
			if err != nil {
				t.Fatalf("GET %s: %v (target stderr: %s)", m.path, err, tp.stderr.String())
			}
			if status != m.status {
				t.Fatalf("GET %s: status %d, want %d", m.path, status, m.status)
			}
			sent++
		}
	}
	want := map[httpKey]uint64{
		{"GET", "200", "/users/{id}", ""}:       5,
		{"GET", "200", "/api/items/{item}", ""}: 2,
		{"GET", "200", rc.files, ""}:            2,
		{"GET", "404", notFound, ""}:            3,
	}
	got := waitTotal(t, a, tp.service, uint64(sent), 15*time.Second)
	for k, n := range want {
		if got[k].count != n {
			t.Errorf("%v: count %d, want %d", k, got[k].count, n)
		}
	}
	for k, se := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %v count=%d", k, se.count)
		}
	}
	if h2 {
		for k, se := range got {
			if se.labels["url_scheme"] != "https" || se.labels["network_protocol_version"] != "2" {
				t.Errorf("%v: url_scheme %q network_protocol_version %q, want https and 2", k, se.labels["url_scheme"], se.labels["network_protocol_version"])
			}
		}
	}
	if t.Failed() {
		t.Logf("series of %s:\n%s", tp.service, dump(got))
	}
}

// checkRouterProbed checks that the http_server family placed the router's
// probe (at its CALL site) and left nothing of it out.
func checkRouterProbed(t *testing.T, st targetStatus, fn string) {
	t.Helper()
	for _, p := range st.Probes {
		if p.Family != "http_server" {
			continue
		}
		if p.Error != "" {
			t.Fatalf("http_server not attached: %s", p.Error)
		}
		for _, l := range p.Left {
			if strings.HasPrefix(l, fn) {
				t.Fatalf("router probe left out: %s", l)
			}
		}
		for _, s := range p.Sites {
			if strings.HasPrefix(s, fn) {
				return
			}
		}
		t.Fatalf("no site in %s among %v", fn, p.Sites)
	}
	t.Fatalf("no http_server family in %+v", st.Probes)
}

// TestRouterLeftOut runs a stripped gorilla/mux v1.6.2 service, whose
// Route has no layout the agent can prove: the router's probe is left out
// and /targets says why, and its requests are still counted exactly, with
// today's route from their path.
func TestRouterLeftOut(t *testing.T) {
	requireBPF(t)
	vs, skipped, err := buildMatrix(env.ctx, []matrixBuild{{"oldmux", "stripped", 26}})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Skipf("no build: %v", skipped)
	}
	v := vs[0]
	a := startAgent(t, "")
	tp := startTarget(t, v.exe, uniqueService("rt-oldmux", v))
	why := checkRouterLeftOut(t, a, tp, "github.com/gorilla/mux.(*Router).ServeHTTP", "gorilla/mux routes not read", "routeConf")
	t.Logf("left out: %s", why)
	for i := 0; i < 4; i++ {
		if status, _, err := tp.do("GET", "/users/alice"); err != nil || status != 200 {
			t.Fatalf("GET /users/alice: %d %v", status, err)
		}
	}
	for i := 0; i < 2; i++ {
		if status, _, err := tp.do("GET", "/nope/12345"); err != nil || status != 404 {
			t.Fatalf("GET /nope/12345: %d %v", status, err)
		}
	}
	got := waitTotal(t, a, tp.service, 6, 15*time.Second)
	want := map[httpKey]uint64{
		{"GET", "200", "/users/alice", ""}: 4,
		{"GET", "404", "/nope/{id}", ""}:   2,
	}
	for k, n := range want {
		if got[k].count != n {
			t.Errorf("%v: count %d, want %d", k, got[k].count, n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("series:\n%s", dump(got))
	}
}

// checkRouterLeftOut waits until the agent instruments tp and checks that
// the router probe in fn is not placed and that /targets says why, in
// words containing every one of reason; it returns the reason.
func checkRouterLeftOut(t *testing.T, a *agentProc, tp *targetProc, fn string, reason ...string) string {
	t.Helper()
	st := a.waitTargeted(t, tp.pid, 10*time.Second)
	var why string
	for _, p := range st.Probes {
		if p.Family != "http_server" {
			continue
		}
		if p.Error != "" {
			t.Fatalf("http_server not attached: %s", p.Error)
		}
		for _, s := range p.Sites {
			if strings.HasPrefix(s, fn) {
				t.Errorf("router probe placed at %s, want it left out", s)
			}
		}
		for _, l := range p.Left {
			if strings.HasPrefix(l, fn) {
				why = l
			}
		}
	}
	for _, r := range reason {
		if !strings.Contains(why, r) {
			t.Errorf("/targets left_out for %s = %q, want the reason its routes are not read (%q)", fn, why, r)
		}
	}
	return why
}

// The routersalt target: chi v1.5 (import path github.com/go-chi/chi),
// echo v5, and echo v4.9 in one program, on Go 1.26 (plain, stripped) and
// 1.27 (stripped).
var altRouterCases = []routerCase{
	{"chi1", "github.com/go-chi/chi.(*Mux).ServeHTTP", "/files/*"},
	{"echo5", "github.com/labstack/echo/v5.(*Echo).serveHTTP.deferwrap1", "/files/*"},
}

// TestRouterMajorVersions counts the same mix through chi v1.5 and echo
// v5 exactly per route template, and checks that echo v4.9's routes are
// refused with the reason on /targets (its router reports the request's
// path as the route of a request that matched none) while its requests
// are still counted exactly, with today's routes from their paths.
func TestRouterMajorVersions(t *testing.T) {
	requireBPF(t)
	vs, skipped, err := buildMatrix(env.ctx, []matrixBuild{{"routersalt", "plain", 26}, {"routersalt", "stripped", 26}, {"routersalt", "stripped", 27}})
	if err != nil {
		t.Fatal(err)
	}
	requireMatrix(t, skipped)
	a := startAgent(t, "")
	for _, v := range vs {
		for _, rc := range altRouterCases {
			t.Run(v.name+"/"+rc.router, func(t *testing.T) {
				routerRoutes(t, a, v, rc, []string{"-router", rc.router}, "/nope/{id}", false)
			})
		}
		t.Run(v.name+"/echo4.9", func(t *testing.T) {
			tp := startTarget(t, v.exe, uniqueService("rt-echo4old", v), "-router", "echo4")
			why := checkRouterLeftOut(t, a, tp, "github.com/labstack/echo/v4.(*Echo).ServeHTTP",
				"echo routes not read", "github.com/labstack/echo/v4 v4.9.1", "before v4.10.2")
			t.Logf("left out: %s", why)
			mix := []struct {
				path   string
				n      int
				status int
			}{{"/users/42", 3, 200}, {"/users/alice", 2, 200}, {"/nope/12345", 3, 404}}
			for _, m := range mix {
				for i := 0; i < m.n; i++ {
					if status, _, err := tp.do("GET", m.path); err != nil || status != m.status {
						t.Fatalf("GET %s: %d %v, want %d", m.path, status, err, m.status)
					}
				}
			}
			got := waitTotal(t, a, tp.service, 8, 15*time.Second)
			want := map[httpKey]uint64{
				{"GET", "200", "/users/{id}", ""}:  3,
				{"GET", "200", "/users/alice", ""}: 2,
				{"GET", "404", "/nope/{id}", ""}:   3,
			}
			for k, n := range want {
				if got[k].count != n {
					t.Errorf("%v: count %d, want %d", k, got[k].count, n)
				}
			}
			if len(got) != len(want) {
				t.Errorf("series:\n%s", dump(got))
			}
		})
	}
}

// TestRouterTwoReleases runs a program that links chi v5 and chi v1.5,
// whose Contexts hold RoutePatterns at different offsets while the
// family's BPF program has one offset per router kind: chi v5's routes are
// read, chi v1's probe is left out with the reason on /targets, and its
// requests are still counted exactly, with today's routes from their
// paths.
func TestRouterTwoReleases(t *testing.T) {
	requireBPF(t)
	vs, skipped, err := buildMatrix(env.ctx, []matrixBuild{{"chiboth", "stripped", 26}})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Skipf("no build: %v", skipped)
	}
	v := vs[0]
	a := startAgent(t, "")
	const chi1, chi5 = "github.com/go-chi/chi.(*Mux).ServeHTTP", "github.com/go-chi/chi/v5.(*Mux).ServeHTTP"
	for _, router := range []string{"chi5", "chi1"} {
		t.Run(router, func(t *testing.T) {
			tp := startTarget(t, v.exe, uniqueService("rt-chiboth-"+router, v), "-router", router)
			checkRouterProbed(t, a.waitTargeted(t, tp.pid, 10*time.Second), chi5)
			why := checkRouterLeftOut(t, a, tp, chi1, "chi v1 routes not read", "elsewhere than those of the other chi release")
			t.Logf("left out: %s", why)
			for _, p := range []string{"/users/42", "/users/42", "/users/alice", "/nope/12345"} {
				if _, _, err := tp.do("GET", p); err != nil {
					t.Fatalf("GET %s: %v", p, err)
				}
			}
			want := map[httpKey]uint64{
				{"GET", "200", "/users/{id}", ""}: 3,
				{"GET", "404", "/nope/{id}", ""}:  1,
			}
			if router == "chi1" { // routes from the paths
				want = map[httpKey]uint64{
					{"GET", "200", "/users/{id}", ""}:  2,
					{"GET", "200", "/users/alice", ""}: 1,
					{"GET", "404", "/nope/{id}", ""}:   1,
				}
			}
			got := waitTotal(t, a, tp.service, 4, 15*time.Second)
			for k, n := range want {
				if got[k].count != n {
					t.Errorf("%v: count %d, want %d", k, got[k].count, n)
				}
			}
			if len(got) != len(want) {
				t.Errorf("series:\n%s", dump(got))
			}
		})
	}
}
