// Order fulfilment times out under load: every request holds a PostgreSQL
// connection for 100ms; with -fault, after the warm-up, the pool is cut to one connection, so
// requests queue for it and GET /orders/{id} takes close to a second.
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"log"
	"net/http"

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
	c := &http.Client{}
	scenario.Loop(8, 0, func(w int) {
		scenario.Get(c, fmt.Sprintf("http://%s/orders/%d", addr, 1000+w))
	})
}
