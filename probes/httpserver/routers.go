package httpserver

import (
	"fmt"

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
		name: "echo", kind: httpRouterEcho, syntax: aggregator.ColonSyntax,
		// e.pool.Put(c) after the handler and the error handler: c.path
		// is the matched route's, "" when none matched.
		probe: probes.Probe{Function: "github.com/labstack/echo/v4.(*Echo).ServeHTTP", Call: "sync.(*Pool).Put", Program: "uprobe_http_route_echo", Optional: true},
		offsets: func(b *symbols.Binary, o *bpfHttpServerOffsets) error {
			f, _, err := b.StructFields("github.com/labstack/echo/v4.context", "path")
			o.EchoPath = f["path"]
			return err
		},
	},
	{
		name: "gorilla/mux", kind: httpRouterMux, syntax: aggregator.BraceSyntax,
		// requestWithRoute(req, match.Route), called only when a route
		// matched: the route's path template.
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
			t, _, err := b.StructFields("github.com/gorilla/mux.routeRegexp", "template")
			if err != nil {
				return err
			}
			o.MuxPath, o.MuxTemplate = r["routeConf"]+c["regexp"]+g["path"], t["template"]
			return nil
		},
	},
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
// out (probed function → reason).
func routerOffsets(b *symbols.Binary, o *bpfHttpServerOffsets) map[string]string {
	left := map[string]string{}
	for _, r := range httpRouters {
		if _, err := b.LookupFunc(r.probe.Function); err != nil {
			continue // the program does not use this router
		}
		if err := r.offsets(b, o); err != nil {
			left[r.probe.Function] = fmt.Sprintf("%s routes not read (http_route from the path instead): %v", r.name, err)
			continue
		}
		if _, err := probes.ProbeAddrs(b, r.probe); err != nil {
			left[r.probe.Function] = fmt.Sprintf("%s routes not read (http_route from the path instead): %v", r.name, err)
			continue
		}
		o.Routers = 1
	}
	return left
}
