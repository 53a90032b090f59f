// Command clienttarget is the program the overhead benchmark's httpclient
// variant (test/bench) observes: a net/http client making keep-alive GETs
// to a local "ok" server in another process, in a closed loop of -conns
// goroutines, when and for as long as the benchmark says on stdin.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "", "URL to GET (an \"ok\" server on 127.0.0.1)")
	conns := flag.Int("conns", 4, "concurrent requests (and keep-alive connections)")
	lifetime := flag.Duration("lifetime", 15*time.Minute, "exit after this long whatever happens")
	flag.Parse()
	tr := &http.Transport{MaxIdleConnsPerHost: *conns, DisableCompression: true}
	client := &http.Client{Transport: tr}
	op := func() error {
		resp, err := client.Get(*url)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = errors.New(resp.Status)
		}
		return err
	}
	if err := op(); err != nil {
		log.Fatal(err)
	}
	serve(op, *conns, *lifetime)
}

// serve drives op under the benchmark's commands, one per line on stdin:
//
//	run MAX SECONDS   start conns workers calling op in a closed loop, at
//	                  most MAX calls in all, for at most SECONDS
//	count             print "DONE ERRORS RUNNING" (RUNNING: 1 or 0)
//	stop              end the workers, wait for them, then print as count
//
// It exits when stdin closes, and in any case after lifetime.
func serve(op func() error, conns int, lifetime time.Duration) {
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
