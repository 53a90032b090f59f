// Command shop is a small example service with the business functions of
// the article blindspot grew from: order processing, payment retries, risk
// rules, inventory sync and an API aggregating upstream calls. None of it
// knows about metrics; deploy/business-example.yaml measures it.
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
	"time"
)

// Gateway is a payment gateway client.
type Gateway struct{ name string }

// retry makes one payment attempt; the example gateway succeeds on the
// second.
//
//go:noinline
func (g *Gateway) retry(gateway string, attempt int) bool {
	time.Sleep(200 * time.Microsecond)
	return attempt >= 2
}

//go:noinline
func (g *Gateway) charge(ctx context.Context, amount int) error {
	for attempt := 1; attempt <= 3; attempt++ {
		if g.retry(g.name, attempt) {
			return nil
		}
	}
	return errors.New("payment failed")
}

// evalRiskRule reports whether an order passes one rule.
//
//go:noinline
func evalRiskRule(rule string, amount int) bool {
	time.Sleep(100 * time.Microsecond)
	if rule == "amount_limit" {
		return amount > 0 && amount < 10000
	}
	return true
}

// syncInventory pushes stock levels to a warehouse.
//
//go:noinline
func syncInventory(ctx context.Context, warehouse string, qty int) error {
	time.Sleep(300 * time.Microsecond)
	return nil
}

// callUpstream calls one downstream service of the aggregating API.
//
//go:noinline
func callUpstream(ctx context.Context, downstream string) error {
	time.Sleep(500 * time.Microsecond)
	return nil
}

var stripe = &Gateway{name: "stripe"}

// processOrder runs an order through risk, payment, inventory and the
// aggregated upstream calls.
//
//go:noinline
func processOrder(ctx context.Context, orderType string, qty int) error {
	amount := qty * 100
	if !evalRiskRule("velocity", amount) {
		return errors.New("velocity")
	}
	if !evalRiskRule("amount_limit", amount) {
		return errors.New("amount limit")
	}
	if err := stripe.charge(ctx, amount); err != nil {
		return err
	}
	if err := syncInventory(ctx, "eu-west", qty); err != nil {
		return err
	}
	for _, d := range []string{"pricing", "loyalty"} {
		if err := callUpstream(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	flag.Parse()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	http.HandleFunc("/orders", func(w http.ResponseWriter, r *http.Request) {
		qty, _ := strconv.Atoi(r.URL.Query().Get("qty"))
		if err := processOrder(r.Context(), r.URL.Query().Get("type"), qty); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	fmt.Printf("listening on %s\n", l.Addr())
	http.Serve(l, nil)
}
