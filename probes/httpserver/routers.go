package httpserver

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/symbols"
)

// Routers: a request routed by gin, chi, echo or gorilla/mux gets the route
// template the developer registered as its http_route, read from the
// router's own state on the request's goroutine before the request ends
// (bpf/http_server.c, record_route). The probe sits on a CALL the router
// makes once per request, an instruction the kernel emulates. Where the
// router's fields cannot be proven in a binary, or the call is not where
// it is expected, the router's probe is left out (and /targets says why):
// its requests keep the route net/http's own state gives.

// Values of enum http_router of bpf/http_server.c (compared with it by
// TestConstantsMatchC).
const (
	httpRouterGin  = 1
	httpRouterChi  = 2
	httpRouterEcho = 3
	httpRouterMux  = 4
)

// httpRouter is one router whose matched route the family reads.
type httpRouter struct {
	name   string
	kind   uint8
	syntax aggregator.RouteSyntax
	probe  probes.Probe
	// offsets proves and sets the offsets its BPF program reads.
	offsets func(b *symbols.Binary, o *bpfHttpServerOffsets) error
	// check, when set, refuses a release of the router whose state after
	// matching does not hold the route the BPF program reads.
	check func(b *symbols.Binary) error
}

var httpRouters = []httpRouter{
	{
		name: "gin", kind: httpRouterGin, syntax: aggregator.ColonSyntax,
		// engine.pool.Put(c) after handleHTTPRequest: c.fullPath is the
		// matched route's, "" when none matched.
		probe: probes.Probe{Function: "github.com/gin-gonic/gin.(*Engine).ServeHTTP", Call: "sync.(*Pool).Put", Program: "uprobe_http_route_gin", Optional: true},
		offsets: func(b *symbols.Binary, o *bpfHttpServerOffsets) error {
			f, _, err := b.StructFields("github.com/gin-gonic/gin.Context", "fullPath")
			o.GinFullPath = f["fullPath"]
			return err
		},
	},
	{
		name: "chi", kind: httpRouterChi, syntax: aggregator.ChiSyntax,
		// mx.pool.Put(rctx) after the handler: rctx.RoutePatterns holds
		// the pattern of every router the request passed through.
		probe: probes.Probe{Function: "github.com/go-chi/chi/v5.(*Mux).ServeHTTP", Call: "sync.(*Pool).Put", Program: "uprobe_http_route_chi", Optional: true},
		offsets: func(b *symbols.Binary, o *bpfHttpServerOffsets) error {
			f, _, err := b.StructFields("github.com/go-chi/chi/v5.Context", "RoutePatterns")
			o.ChiPatterns = f["RoutePatterns"]
			return err
		},
	},
	{
		name: "chi v1", kind: httpRouterChi, syntax: aggregator.ChiSyntax,
		// chi v1.5 and v4 under the import path without /v5: the same
		// Mux.ServeHTTP and Context as v5's.
		probe: probes.Probe{Function: "github.com/go-chi/chi.(*Mux).ServeHTTP", Call: "sync.(*Pool).Put", Program: "uprobe_http_route_chi", Optional: true},
		offsets: func(b *symbols.Binary, o *bpfHttpServerOffsets) error {
			f, _, err := b.StructFields("github.com/go-chi/chi.Context", "RoutePatterns")
			o.ChiPatterns = f["RoutePatterns"]
			return err
		},
	},
	{
		name: "echo", kind: httpRouterEcho, syntax: aggregator.ColonSyntax,
		// e.pool.Put(c) after the handler and the error handler: c.path
		// is the matched route's, "" when none matched.
		probe: probes.Probe{Function: "github.com/labstack/echo/v4.(*Echo).ServeHTTP", Call: "sync.(*Pool).Put", Program: "uprobe_http_route_echo", Optional: true},
		offsets: func(b *symbols.Binary, o *bpfHttpServerOffsets) error {
			f, _, err := b.StructFields("github.com/labstack/echo/v4.context", "path")
			o.EchoPath = f["path"]
			return err
		},
		check: echoV4Release,
	},
	{
		name: "echo v5", kind: httpRouterEcho, syntax: aggregator.ColonSyntax,
		// serveHTTP defers contextPool.Put(c): the deferred call runs in
		// its wrapper after the handler and the error handler, on a panic
		// too. c.path is the matched route's, "" when none matched.
		probe: probes.Probe{Function: "github.com/labstack/echo/v5.(*Echo).serveHTTP.deferwrap1", Call: "sync.(*Pool).Put", Program: "uprobe_http_route_echo", Optional: true},
		offsets: func(b *symbols.Binary, o *bpfHttpServerOffsets) error {
			f, _, err := b.StructFields("github.com/labstack/echo/v5.Context", "path")
			o.EchoPath = f["path"]
			return err
		},
	},
	{
		name: "gorilla/mux", kind: httpRouterMux, syntax: aggregator.BraceSyntax,
		// requestWithRoute(req, match.Route), called only when a route
		// matched: the route's path template, as its reverse template
		// and variables (muxRoute).
		probe: probes.Probe{Function: "github.com/gorilla/mux.(*Router).ServeHTTP", Call: "github.com/gorilla/mux.requestWithRoute", Program: "uprobe_http_route_mux", Optional: true},
		offsets: func(b *symbols.Binary, o *bpfHttpServerOffsets) error {
			// Route embeds routeConf (v1.7 and later), which holds the
			// route's regexp group; its path matcher has the template.
			r, _, err := b.StructFields("github.com/gorilla/mux.Route", "routeConf")
			if err != nil {
				return err
			}
			c, _, err := b.StructFields("github.com/gorilla/mux.routeConf", "regexp")
			if err != nil {
				return err
			}
			g, _, err := b.StructFields("github.com/gorilla/mux.routeRegexpGroup", "path")
			if err != nil {
				return err
			}
			// The reverse template ("/users/%s") and the variables'
			// names (string and []string since v1.0): the template
			// itself holds the variables' regexps, often too long to
			// read whole.
			t, _, err := b.StructFields("github.com/gorilla/mux.routeRegexp", "reverse", "varsN")
			if err != nil {
				return err
			}
			o.MuxPath, o.MuxReverse, o.MuxVars = r["routeConf"]+c["regexp"]+g["path"], t["reverse"], t["varsN"]
			return nil
		},
	},
}

// echoV4Release refuses echo v4 releases before v4.10.2: their
// (*Router).Find first sets the context's path to the request's path and
// leaves it there when no route matched, which would export the raw path
// as the route. Without module information the release is unknown.
func echoV4Release(b *symbols.Binary) error {
	const mod = "github.com/labstack/echo/v4"
	v, ok := b.Deps[mod]
	if !ok || v == "" {
		return fmt.Errorf("%s version unknown (no module information): releases before v4.10.2 report the request's path as the route of a request no route matched", mod)
	}
	if !releaseAtLeast(v, 4, 10, 2) {
		return fmt.Errorf("%s %s: releases before v4.10.2 report the request's path as the route of a request no route matched", mod, v)
	}
	return nil
}

// releaseAtLeast reports whether the module version v (vMAJOR.MINOR.PATCH,
// maybe with a pre-release or pseudo-version suffix, which comes before
// the release it names) is at least major.minor.patch.
func releaseAtLeast(v string, major, minor, patch int) bool {
	base, suffix, _ := strings.Cut(strings.TrimSuffix(v, "+incompatible"), "-")
	var got [3]int
	if n, err := fmt.Sscanf(base, "v%d.%d.%d", &got[0], &got[1], &got[2]); err != nil || n != 3 {
		return false
	}
	for i, w := range [3]int{major, minor, patch} {
		if got[i] != w {
			return got[i] > w
		}
	}
	return suffix == ""
}

// routerSyntax is the route syntax of the router an event names.
var routerSyntax = func() [8]aggregator.RouteSyntax {
	var s [8]aggregator.RouteSyntax
	for _, r := range httpRouters {
		s[r.kind] = r.syntax
	}
	return s
}()

func routerProbes() []probes.Probe {
	var ps []probes.Probe
	for _, r := range httpRouters {
		ps = append(ps, r.probe)
	}
	return ps
}

// routerOffsets sets the offsets of every router the binary links whose
// probe can be placed, and returns why each other router it links is left
// out (probed function → reason). Routers of one kind share a BPF program
// and its offsets: a second one (chi v1 beside chi v5) is placed only
// where its offsets are the same.
func routerOffsets(b *symbols.Binary, o *bpfHttpServerOffsets) map[string]string {
	left := map[string]string{}
	placed := map[uint8]bpfHttpServerOffsets{} // by kind: the offsets its routers read
	for _, r := range httpRouters {
		if _, err := b.LookupFunc(r.probe.Function); err != nil {
			continue // the program does not use this router
		}
		why := func(err error) string {
			return fmt.Sprintf("%s routes not read (http_route from the path instead): %v", r.name, err)
		}
		if r.check != nil {
			if err := r.check(b); err != nil {
				left[r.probe.Function] = why(err)
				continue
			}
		}
		var mine bpfHttpServerOffsets
		if err := r.offsets(b, &mine); err != nil {
			left[r.probe.Function] = why(err)
			continue
		}
		if _, err := probes.ProbeAddrs(b, r.probe); err != nil {
			left[r.probe.Function] = why(err)
			continue
		}
		if prev, ok := placed[r.kind]; ok && prev != mine {
			left[r.probe.Function] = why(fmt.Errorf("its fields lie elsewhere than those of the other %s release the program links, whose routes are read", routerFamilyName(r.kind)))
			continue
		}
		placed[r.kind] = mine
		r.offsets(b, o)
		o.Routers = 1
	}
	return left
}

// routerFamilyName names the routers of a kind.
func routerFamilyName(kind uint8) string {
	for _, r := range httpRouters {
		if r.kind == kind {
			return strings.Fields(r.name)[0]
		}
	}
	return "router"
}

// muxVarsMax is MUX_VARS_MAX of bpf/http_server.c: the variables of one
// gorilla/mux template read.
const muxVarsMax = 8

// muxRoute renders what the gorilla/mux program records, the path's
// reverse template and its variables' names ("/users/%s\x00id"), as the
// template in brace syntax ("/users/{id}") into buf; false when the record
// is not one: as many names as %s verbs, each a non-empty name.
func muxRoute(rec, buf []byte) ([]byte, bool) {
	// more: another name follows in rest.
	reverse, rest, more := bytes.Cut(rec, []byte{0})
	out := buf[:0]
	for {
		i := bytes.Index(reverse, []byte("%s"))
		if i < 0 {
			break
		}
		if !more {
			return nil, false // a verb without its name
		}
		var name []byte
		name, rest, more = bytes.Cut(rest, []byte{0})
		if len(name) == 0 || bytes.ContainsAny(name, "{}%") {
			return nil, false
		}
		if len(out)+i+len(name)+2 > cap(out) {
			return nil, false
		}
		out = append(out, reverse[:i]...)
		out = append(out, '{')
		out = append(out, name...)
		out = append(out, '}')
		reverse = reverse[i+2:]
	}
	if more || len(out)+len(reverse) > cap(out) {
		return nil, false // a name without its verb
	}
	return append(out, reverse...), true
}
