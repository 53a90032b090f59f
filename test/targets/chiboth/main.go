// Command chiboth is an end-to-end target of blindspot: a program that
// links chi twice, v1.5 (github.com/go-chi/chi) and v5, whose Contexts lay
// RoutePatterns out at different offsets, and serves with the one -router
// names (chi1 or chi5). Routes:
//
//	GET /users/{id}
//
// Anything else is answered 404. Once it listens on -listen (a loopback
// address), it prints "listening on ADDR" on stdout.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	chi1 "github.com/go-chi/chi"
	chi5 "github.com/go-chi/chi/v5"
)

func main() {
	router := flag.String("router", "chi5", "chi1 or chi5")
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatalf("bad listen address %q: %v", *listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("listen address %q is not a loopback address", *listen)
	}
	user := func(w http.ResponseWriter, req *http.Request) { fmt.Fprint(w, "user") }
	var h http.Handler
	switch *router {
	case "chi1":
		r := chi1.NewRouter()
		r.Get("/users/{id}", user)
		h = r
	case "chi5":
		r := chi5.NewRouter()
		r.Get("/users/{id}", user)
		h = r
	default:
		log.Fatalf("unknown router %q: want chi1 or chi5", *router)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", l.Addr())
	os.Stdout.Sync()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(l))
}
