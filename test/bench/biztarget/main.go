// Command biztarget is the program the overhead benchmark's business
// variant (test/bench) observes: a business function, main.Checkout,
// called in a closed loop of -conns goroutines when and for as long as the
// benchmark says on stdin. The agent measures it as a duration metric with
// a label and an outcome (entry + every RET).
package main

import (
	"errors"
	"flag"
	"log"
	"sync/atomic"
	"time"

	"github.com/blindspot-dev/blindspot/test/bench/internal/opdriver"
)

var errRejected = errors.New("rejected")

// Checkout is the business function: a little arithmetic, an error for
// a negative quantity.
//
//go:noinline
func Checkout(orderType string, qty int) error {
	if qty < 0 {
		return errRejected
	}
	sum := 0
	for i := 0; i < len(orderType); i++ {
		sum += int(orderType[i]) * qty
	}
	if sum == -1 {
		return errRejected
	}
	return nil
}

func main() {
	conns := flag.Int("conns", 1, "concurrent callers")
	lifetime := flag.Duration("lifetime", 15*time.Minute, "exit after this long whatever happens")
	flag.Parse()
	var n atomic.Int64
	op := func() error { return Checkout("retail", int(n.Add(1)&0xff)) }
	if err := op(); err != nil {
		log.Fatal(err)
	}
	opdriver.Serve(op, *conns, *lifetime)
}
