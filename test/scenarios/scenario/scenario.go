// Package scenario is what every incident program shares: the -fault,
// -fault-after and -duration flags, bounded load loops and loopback servers.
// The programs carry no instrumentation: blindspot is all that observes them.
package scenario

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

var (
	fault      = flag.Bool("fault", false, "run the incident (default: healthy)")
	faultAfter = flag.Duration("fault-after", 0, "healthy warm-up before the incident starts")
	duration   = flag.Duration("duration", 3*time.Minute, "exit after this long")
	start      time.Time
)

// Parse parses the flags and ends the process after -duration.
func Parse() {
	flag.Parse()
	start = time.Now()
	time.AfterFunc(*duration, func() { os.Exit(0) })
}

// Faulty says whether the incident is on now.
func Faulty() bool { return *fault && time.Since(start) >= *faultAfter }

// WhenFaulty runs f once when the incident starts (never when healthy).
func WhenFaulty(f func()) {
	if *fault {
		time.AfterFunc(*faultAfter-time.Since(start), f)
	}
}

// Loop runs f in n workers, each at most once per every, until -duration
// ends the process.
func Loop(n int, every time.Duration, f func(worker int)) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for {
				next := time.Now().Add(every)
				f(i)
				time.Sleep(time.Until(next))
			}
		}(i)
	}
	wg.Wait()
}

// Serve serves h on addr (host:0 for a free port) and returns the address
// it listens on.
func Serve(addr string, h http.Handler) string {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("listen %s: %v", addr, err)
	}
	go http.Serve(l, h)
	return l.Addr().String()
}

// Get fetches url and drains the answer; errors are logged, not fatal: a
// failing call is part of some incidents.
func Get(c *http.Client, url string) {
	resp, err := c.Get(url)
	if err != nil {
		log.Print(err)
		return
	}
	defer resp.Body.Close()
	var b [512]byte
	for {
		if _, err := resp.Body.Read(b[:]); err != nil {
			break
		}
	}
}

// Sleep sleeps ms milliseconds.
func Sleep(ms int) { time.Sleep(time.Duration(ms) * time.Millisecond) }

// Logf prints a line prefixed with the time since start.
func Logf(format string, args ...any) {
	fmt.Printf("%6.1fs %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}
