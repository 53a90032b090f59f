//go:build !go1.22

package main

import (
	"net/http"
	"strings"
)

// register installs the handlers as plain paths and checks methods by
// hand, as programs written before Go 1.22 do.
func register(mux *http.ServeMux) {
	mux.HandleFunc("/items/", func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/items/")
		if r.Method != http.MethodGet || id == "" || strings.Contains(id, "/") {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		getItem(w, id)
	})
	mux.HandleFunc("/items", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		postItem(w, r)
	})
	mux.HandleFunc("/teapot", teapot)
	mux.HandleFunc("/nothing", nothing)
	mux.HandleFunc("/fail", fail)
	mux.HandleFunc("/panic", panicky)
	mux.HandleFunc("/deep", deep)
	mux.HandleFunc("/slow", slow)
	mux.HandleFunc("/users/", func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/users/"), "/")
		if len(parts) != 3 || parts[0] == "" || parts[1] != "orders" || parts[2] == "" {
			http.NotFound(w, r)
			return
		}
		userOrder(w, parts[0], parts[2])
	})
}
