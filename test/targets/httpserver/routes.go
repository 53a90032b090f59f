//go:build go1.22

// go.mod says go 1.19, which would turn ServeMux patterns off: turn them on.
//go:debug httpmuxgo121=0

package main

import "net/http"

// register installs the handlers as Go 1.22 ServeMux patterns.
func register(mux *http.ServeMux) {
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		getItem(w, r.PathValue("id"))
	})
	mux.HandleFunc("POST /items", postItem)
	mux.HandleFunc("/teapot", teapot)
	mux.HandleFunc("/nothing", nothing)
	mux.HandleFunc("/fail", fail)
	mux.HandleFunc("/panic", panicky)
	mux.HandleFunc("/deep", deep)
	mux.HandleFunc("/slow", slow)
	mux.HandleFunc("/users/{id}/orders/{oid}", func(w http.ResponseWriter, r *http.Request) {
		userOrder(w, r.PathValue("id"), r.PathValue("oid"))
	})
}
