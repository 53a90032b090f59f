// A minimal net/http server for the probes package's tests: it prints its
// address and serves until killed.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	http.HandleFunc("/ok/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	http.HandleFunc("/created", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) })
	fmt.Println(l.Addr())
	http.Serve(l, nil)
}
