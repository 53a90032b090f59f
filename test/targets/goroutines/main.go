// Command goroutines is the end-to-end target of the runtime metrics: a
// program whose goroutines and GC cycles the test controls over HTTP on
// loopback.
//
//	GET /count            runtime.NumGoroutine()
//	GET /spawn?n=K        start K goroutines in main.parked (they block)
//	GET /release?n=K      end K of them
//	GET /spawnargs?n=K    start K goroutines with go argWorker(i) (they block
//	                      like main.parked)
//	GET /leaked           how many main.leakyWorker goroutines exist
//	GET /leakargs?n=K     start K goroutines with go argLeaker(i, name),
//	                      which never end; prints how many exist
//	GET /leakargsbig?n=K  the same with go argLeakerBig(i, name), too large
//	                      to be inlined
//	GET /leakclosure?n=K  start K real closures, go func() { ... }(), which
//	                      never end; prints the closure's name as the
//	                      runtime has it (e.g. main.main.func9.1)
//	GET /gc?n=N           runtime.GC() N times; prints NumGC after
//	GET /leakstart?ms=D   from now on, start one main.leakyWorker (which
//	                      never ends) every D ms, from main.leakLoop
//
// -leak-every D does what /leakstart does from start-up.
//
// A go statement with arguments starts its goroutine in a wrapper the
// compiler generates (Go 1.19–1.21 "main.main.func5.1", 1.22+
// "main.main.func6.gowrap1"; the callee is often inlined into it): the
// agent must name those goroutines main.argLeaker and main.argLeakerBig,
// and the closures by their own name.
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

	argLeaked     atomic.Int64
	argBigLeaked  atomic.Int64
	closureLeaked atomic.Int64
	started       = make(chan struct{}, 1024)
)

// argLeaker is small: Go 1.22 and later inline it into the wrapper.
func argLeaker(i int, name string) {
	argLeaked.Add(1)
	started <- struct{}{}
	<-never
	_, _ = i, name
}

// argLeakerBig is called by the wrapper on every release.
//
//go:noinline
func argLeakerBig(i int, name string) {
	sum := 0
	for j := 0; j < i%7; j++ {
		sum += len(name) * j
	}
	argBigLeaked.Add(1)
	started <- struct{}{}
	<-never
	_ = sum
}

// awaitStarted waits until k goroutines have reported being started.
func awaitStarted(k int) {
	for i := 0; i < k; i++ {
		<-started
	}
}

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
	http.HandleFunc("/leakargs", func(w http.ResponseWriter, r *http.Request) {
		k := n(r)
		for i := 0; i < k; i++ {
			go argLeaker(i, r.URL.Path)
		}
		awaitStarted(k)
		fmt.Fprintln(w, argLeaked.Load())
	})
	http.HandleFunc("/leakargsbig", func(w http.ResponseWriter, r *http.Request) {
		k := n(r)
		for i := 0; i < k; i++ {
			go argLeakerBig(i, r.URL.Path)
		}
		awaitStarted(k)
		fmt.Fprintln(w, argBigLeaked.Load())
	})
	http.HandleFunc("/leakclosure", func(w http.ResponseWriter, r *http.Request) {
		k := n(r)
		names := make(chan string, k)
		for i := 0; i < k; i++ {
			go func() {
				closureLeaked.Add(1)
				pc, _, _, _ := runtime.Caller(0)
				names <- runtime.FuncForPC(pc).Name()
				<-never
			}()
		}
		name := ""
		for i := 0; i < k; i++ {
			name = <-names
		}
		fmt.Fprintln(w, name)
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
