// Package opdriver is the command loop the benchmark's target programs
// share: the benchmark starts, counts and stops a closed loop of calls to
// the operation the target measures (a business function, an HTTP client
// call, a gRPC call) through the target's stdin. (sqltarget, a module of
// its own for its database driver, keeps its own copy.)
package opdriver

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Serve drives op under the benchmark's commands, one per line on stdin:
//
//	run MAX SECONDS   start conns workers calling op in a closed loop, at
//	                  most MAX calls in all, for at most SECONDS
//	count             print "DONE ERRORS RUNNING" (RUNNING: 1 or 0)
//	stop              end the workers, wait for them, then print as count
//
// It exits when stdin closes, and in any case after lifetime.
func Serve(op func() error, conns int, lifetime time.Duration) {
	time.AfterFunc(lifetime, func() {
		fmt.Fprintf(os.Stderr, "lifetime of %v over\n", lifetime)
		os.Exit(2)
	})
	var (
		done, errs, issued atomic.Int64
		running            atomic.Int32
		stop               atomic.Bool
		wg                 sync.WaitGroup
		firstErr           sync.Once
	)
	status := func() {
		fmt.Printf("%d %d %d\n", done.Load(), errs.Load(), running.Load())
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "run":
			stop.Store(true)
			wg.Wait()
			max, _ := strconv.ParseInt(f[1], 10, 64)
			secs, _ := strconv.ParseFloat(f[2], 64)
			deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
			done.Store(0)
			errs.Store(0)
			issued.Store(0)
			stop.Store(false)
			for i := 0; i < conns; i++ {
				wg.Add(1)
				running.Add(1)
				go func() {
					defer wg.Done()
					defer running.Add(-1)
					for !stop.Load() && time.Now().Before(deadline) && issued.Add(1) <= max {
						if err := op(); err != nil {
							errs.Add(1)
							firstErr.Do(func() { fmt.Fprintf(os.Stderr, "first error: %v\n", err) })
							time.Sleep(10 * time.Millisecond)
							continue
						}
						done.Add(1)
					}
				}()
			}
			fmt.Println("started")
		case "count":
			status()
		case "stop":
			stop.Store(true)
			wg.Wait()
			status()
		}
	}
	stop.Store(true)
	wg.Wait()
}
