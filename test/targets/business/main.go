// Command business is the end-to-end target of blindspot's business
// metrics: functions called a known number of times with known arguments
// when /run is requested. Every measured function is //go:noinline so that
// it exists (and is called) as itself in every build.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
)

// Shop has a method with a pointer receiver.
type Shop struct{ name string }

// ProcessOrder: receiver, an interface and a string before the labels.
//
//go:noinline
func (s *Shop) ProcessOrder(ctx context.Context, orderType string, qty int) error {
	if qty < 0 {
		return errors.New("bad quantity")
	}
	sink += len(orderType) + qty
	return nil
}

// Gateway retries payments.
type Gateway struct{ calls int }

// Retry reports whether the payment went through.
//
//go:noinline
func (g *Gateway) Retry(gateway string, attempt int) bool {
	g.calls++
	return attempt >= 3
}

// Mixed takes a string, a slice and an interface (7 words) before its
// labels: region fills the last two integer registers, priority and vip
// spill to the stack.
//
//go:noinline
func Mixed(note string, items []string, meta any, region string, priority int, vip bool) error {
	sink += len(note) + len(items) + len(region) + priority
	if meta == nil || !vip {
		return nil
	}
	return nil
}

// Spill has more than nine integer words: j, k and code are on the stack.
//
//go:noinline
func Spill(a, b, c, d, e, f, g, h, i, j int, k string, code int8) int {
	return a + b + c + d + e + f + g + h + i + j + len(k) + int(code)
}

// Customer and Order are reached through pointers.
type Customer struct {
	Name string
	Tier int
}

type Order struct {
	ID       int64
	Type     string
	Qty      int32
	Customer *Customer
}

// Charge labels come from fields behind pointers.
//
//go:noinline
func Charge(o *Order) error {
	if o.Qty == 0 {
		return errors.New("empty order")
	}
	sink += int(o.Qty)
	return nil
}

// Ship has an unsigned and a bool label.
//
//go:noinline
func Ship(w uint16, fast bool) {
	if fast {
		sink += int(w)
	}
}

// Explode panics for odd n; its caller recovers.
//
//go:noinline
func Explode(n int) error {
	if n%2 == 1 {
		panic(fmt.Sprintf("boom %d", n))
	}
	if n == 4 {
		return errors.New("four")
	}
	return nil
}

// Walk is recursive: only the outermost call is measured.
//
//go:noinline
func Walk(depth int) int {
	if depth <= 0 {
		return 0
	}
	return 1 + Walk(depth-1)
}

// Tag feeds a metric with a small series limit.
//
//go:noinline
func Tag(id int) { sink += id }

// BenchDur, BenchCount and BenchNone are called in tight loops to measure
// the cost of a probed call.
//
//go:noinline
func BenchDur(orderType string, qty int) error {
	touch(len(orderType) + qty)
	return nil
}

//go:noinline
func BenchCount(orderType string, qty int) error {
	touch(len(orderType) + qty)
	return nil
}

//go:noinline
func BenchNone(orderType string, qty int) error {
	touch(len(orderType) + qty)
	return nil
}

var sink int

// touch makes the bench functions non-leaf, with a frame and a PUSHQ BP
// like most real business functions.
//
//go:noinline
func touch(n int) { sink += n }

func safeExplode(n int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("recovered: %v", r)
		}
	}()
	return Explode(n)
}

// run calls every function a known number of times (see business_test.go).
func run() {
	ctx := context.Background()
	shop := &Shop{name: "main"}
	for i := 0; i < 5; i++ {
		shop.ProcessOrder(ctx, "retail", 2)
	}
	for i := 0; i < 3; i++ {
		shop.ProcessOrder(ctx, "wholesale", 10)
	}
	for i := 0; i < 2; i++ {
		shop.ProcessOrder(ctx, "retail", -1)
	}
	g := &Gateway{}
	for attempt := 1; attempt <= 4; attempt++ {
		g.Retry("stripe", attempt)
	}
	g.Retry("paypal", 1)
	for i := 0; i < 3; i++ {
		Mixed("note", []string{"a", "b"}, 42, "eu", 7, true)
	}
	Mixed("n", nil, nil, "us", -2, false)
	for i := 0; i < 2; i++ {
		Spill(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, "kilo", -3)
	}
	Spill(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, "x", 5)
	gold := &Customer{Name: "ann", Tier: 3}
	basic := &Customer{Name: "bob", Tier: 1}
	for i := 0; i < 2; i++ {
		Charge(&Order{ID: int64(i), Type: "express", Qty: 1, Customer: gold})
	}
	Charge(&Order{ID: 9, Type: "standard", Qty: 0, Customer: basic})
	Ship(65535, true)
	Ship(7, false)
	Ship(7, false)
	for n := 0; n < 6; n++ {
		safeExplode(n)
	}
	Walk(3)
	Walk(5)
	for id := 0; id < 8; id++ {
		Tag(id)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	http.HandleFunc("/run", func(w http.ResponseWriter, r *http.Request) {
		run()
		fmt.Fprintln(w, "ok")
	})
	// /loop?fn=dur|count|none&n=N calls a bench function N times.
	http.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		f := BenchNone
		switch r.URL.Query().Get("fn") {
		case "dur":
			f = BenchDur
		case "count":
			f = BenchCount
		}
		for i := 0; i < n; i++ {
			f("retail", i&7)
		}
		fmt.Fprintln(w, "ok")
	})
	fmt.Printf("listening on %s\n", l.Addr())
	http.Serve(l, nil)
}
