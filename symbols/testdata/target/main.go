// Command target is a small Go program the symbols tests read.
package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"example.com/target/decoy"
)

type order struct {
	ID     int
	Item   string
	Amount int64
	paid   bool
}

type store struct {
	orders map[int]*order
	next   int
}

// processOrder has several returns.
//
//go:noinline
func processOrder(s *store, item string, amount int64) (*order, error) {
	if item == "" {
		return nil, errors.New("empty item")
	}
	if amount <= 0 {
		return nil, fmt.Errorf("bad amount %d", amount)
	}
	if strings.HasPrefix(item, "free") {
		return &order{Item: item}, nil
	}
	s.next++
	o := &order{ID: s.next, Item: item, Amount: amount}
	s.orders[o.ID] = o
	return o, nil
}

// handle is a method with a pointer receiver.
//
//go:noinline
func (s *store) handle(w http.ResponseWriter, r *http.Request) {
	o, err := processOrder(s, r.URL.Query().Get("item"), int64(len(r.URL.Path)))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "order %d\n", o.ID)
}

func main() {
	s := &store{orders: map[int]*order{}}
	counter := 0
	inc := func(w http.ResponseWriter, r *http.Request) {
		counter++
		fmt.Fprintln(w, counter)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/order", s.handle)
	mux.HandleFunc("/inc", inc)
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		_ = http.ListenAndServe("127.0.0.1:0", mux)
	}
	fmt.Println("target", len(os.Args))
	if len(os.Args) > 2 {
		fmt.Println(decoy.Values()...)
	}
}
