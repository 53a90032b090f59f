// Command target is the program the overhead benchmark (test/bench)
// observes: a net/http server whose only handler answers "ok". It listens
// on the address given by -listen (port 0 picks a free port) and prints the
// address it got on its first line of output. With -promhttp the handler
// is wrapped in client_golang's promhttp.InstrumentHandlerDuration: the
// in-process instrumentation blindspot is compared with.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	instrument := flag.Bool("promhttp", false, "measure requests with promhttp.InstrumentHandlerDuration")
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
	var h http.Handler = mux
	if *instrument {
		d := prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_server_request_duration_seconds",
			Help:    "Duration of HTTP server requests.",
			Buckets: prometheus.DefBuckets,
		}, []string{"code", "method"})
		prometheus.MustRegister(d)
		h = promhttp.InstrumentHandlerDuration(d, mux)
	}
	log.Fatal(http.Serve(ln, h))
}
