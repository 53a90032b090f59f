// Command goroutines is the end-to-end target of the runtime metrics: a
// program whose goroutines and GC cycles the test controls over HTTP on
// loopback.
//
//	GET /count            runtime.NumGoroutine()
//	GET /spawn?n=K        start K goroutines in main.parked (they block)
//	GET /release?n=K      end K of them
//	GET /spawnargs?n=K    start K goroutines with go argWorker(i) (Go 1.21+:
//	                      a gowrap wrapper whose callee is main.argWorker)
//	GET /leaked           how many main.leakyWorker goroutines exist
//	GET /gc?n=N           runtime.GC() N times; prints NumGC after
//	GET /leakstart?ms=D   from now on, start one main.leakyWorker (which
//	                      never ends) every D ms, from main.leakLoop
//
// -leak-every D does what /leakstart does from start-up.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
)

var (
	release = make(chan struct{})
	never   = make(chan struct{})
	leaked  atomic.Int64
)

func parked() { <-release }

func argWorker(i int) {
	<-release
	_ = i
}

func leakyWorker() {
	leaked.Add(1)
	<-never
}

var leakEvery time.Duration

func leakLoop() {
	every := leakEvery
	t := time.NewTicker(every)
	for range t.C {
		go leakyWorker()
	}
}

func n(r *http.Request) int {
	v, _ := strconv.Atoi(r.URL.Query().Get("n"))
	return v
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address")
	flag.DurationVar(&leakEvery, "leak-every", 0, "start a leaking goroutine this often")
	flag.Parse()
	if leakEvery > 0 {
		go leakLoop()
	}
	http.HandleFunc("/leakstart", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		if ms > 0 && leakEvery == 0 {
			leakEvery = time.Duration(ms) * time.Millisecond
			go leakLoop()
		}
		fmt.Fprintln(w, leaked.Load())
	})
	http.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, runtime.NumGoroutine())
	})
	http.HandleFunc("/spawn", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < n(r); i++ {
			go parked()
		}
		fmt.Fprintln(w, runtime.NumGoroutine())
	})
	http.HandleFunc("/spawnargs", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < n(r); i++ {
			go argWorker(i)
		}
		fmt.Fprintln(w, runtime.NumGoroutine())
	})
	http.HandleFunc("/release", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < n(r); i++ {
			release <- struct{}{}
		}
		fmt.Fprintln(w, runtime.NumGoroutine())
	})
	http.HandleFunc("/leaked", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, leaked.Load())
	})
	http.HandleFunc("/gc", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < n(r); i++ {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintln(w, ms.NumGC)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening on", ln.Addr())
	srv := &http.Server{}
	fmt.Fprintln(os.Stderr, srv.Serve(ln))
}
