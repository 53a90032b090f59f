// Command clienttarget is the program the overhead benchmark's httpclient
// variant (test/bench) observes: a net/http client making keep-alive GETs
// to a local "ok" server in another process, in a closed loop of -conns
// goroutines, when and for as long as the benchmark says on stdin.
package main

import (
	"errors"
	"flag"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/blindspot-dev/blindspot/test/bench/internal/opdriver"
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
	opdriver.Serve(op, *conns, *lifetime)
}
