// Inventory sync is slow, and the upstream is to blame: each sync fetches
// stock from a warehouse API (two warehouses, on 127.0.0.2 and 127.0.0.3)
// then applies it locally (10ms). With -fault, after the warm-up, the
// warehouse on 127.0.0.3 answers in 300ms instead of 20ms; the local step
// stays as fast as before.
package main

import (
	"fmt"
	"net/http"

	"scenarios/scenario"
)

// applyStock is the local step of a sync; blindspot times it per warehouse.
//
//go:noinline
func applyStock(warehouse string, qty int) error {
	scenario.Sleep(10)
	return nil
}

func warehouse(slowWhenFaulty bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slowWhenFaulty && scenario.Faulty() {
			scenario.Sleep(300)
		} else {
			scenario.Sleep(20)
		}
		fmt.Fprintln(w, "42")
	})
}

func main() {
	scenario.Parse()
	names := []string{"east", "west"}
	addrs := []string{
		scenario.Serve("127.0.0.2:0", warehouse(false)),
		scenario.Serve("127.0.0.3:0", warehouse(true)),
	}
	c := &http.Client{}
	scenario.Loop(4, 50*1e6, func(w int) {
		i := w % 2
		scenario.Get(c, "http://"+addrs[i]+"/stock")
		applyStock(names[i], 42)
	})
}
