// Command oldmux is an end-to-end target of blindspot: a service routed by
// gorilla/mux v1.6.2, whose Route predates the layout the agent reads
// (no routeConf): the agent must leave its route probe out, say why on
// /targets, and give its requests the route from their path.
//
// Usage: oldmux [-listen 127.0.0.1:PORT]
//
// Once it listens, it prints "listening on ADDR" on stdout.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/gorilla/mux"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatalf("bad listen address %q: %v", *listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("listen address %q is not a loopback address", *listen)
	}
	r := mux.NewRouter()
	r.HandleFunc("/users/{id}", func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintf(w, "user %s", mux.Vars(req)["id"])
	}).Methods(http.MethodGet)
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", l.Addr())
	os.Stdout.Sync()
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(l))
}
