// Command target is the program the overhead benchmark (test/bench)
// observes: a net/http server whose only handler answers "ok". It listens
// on the address given by -listen (port 0 picks a free port) and prints the
// address it got on its first line of output.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	body := []byte("ok")
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Write(body)
	})
	fmt.Fprintf(os.Stdout, "listening %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}
