// Order fulfilment times out under load: twenty orders a second arrive
// (each client gives up after 3s), every one holding a PostgreSQL connection
// for 100ms. With -fault, after the warm-up, the pool is cut to one
// connection: requests queue for it, GET /orders/{id} slows to seconds and
// times out, and goroutines pile up.
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"log"
	"net/http"
	"time"

	_ "github.com/lib/pq"

	"scenarios/scenario"
)

func main() {
	dsn := flag.String("dsn", "", "PostgreSQL DSN")
	scenario.Parse()
	db, err := sql.Open("postgres", *dsn)
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(10)
	scenario.WhenFaulty(func() { db.SetMaxOpenConns(1) })
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		if _, err := db.ExecContext(r.Context(), "SELECT pg_sleep(0.1)"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "order %s fulfilled\n", r.PathValue("id"))
	})
	addr := scenario.Serve("127.0.0.1:0", mux)
	c := &http.Client{Timeout: 3 * time.Second}
	n := 0
	scenario.Loop(1, 50*time.Millisecond, func(int) {
		n++
		go scenario.Get(c, fmt.Sprintf("http://%s/orders/%d", addr, 1000+n%100))
	})
}
