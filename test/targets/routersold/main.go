// Command routersold is an end-to-end target of blindspot: one HTTP service
// routed by a third-party router, chosen by -router (gin, chi, echo or
// mux for gorilla/mux), whose route templates the agent must report as
// http_route.
//
// Usage: routers -router NAME [-servemux] [-tls] [-listen 127.0.0.1:PORT]
//
// Every router serves the same routes, each written in its own syntax:
//
//	GET /users/{id}              user
//	GET /api/items/{item}        a route of a sub-router mounted at /api
//	GET /files/{path...}         a catch-all
//
// Anything else matches no route and is answered 404. With -servemux the
// router is served through a net/http ServeMux's pattern "/"; with -tls,
// over HTTPS (HTTP/2 and HTTP/1.1). Once it
// listens, it prints "listening on ADDR" on stdout.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"
	"github.com/gorilla/mux"
	"github.com/labstack/echo/v4"
)

func main() {
	router := flag.String("router", "gin", "gin, chi, echo or mux")
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	underMux := flag.Bool("servemux", false, "serve the router through a net/http ServeMux pattern \"/\"")
	useTLS := flag.Bool("tls", false, "serve HTTPS with a fresh self-signed certificate (HTTP/2 and HTTP/1.1)")
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatalf("bad listen address %q: %v", *listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("listen address %q is not a loopback address", *listen)
	}
	var h http.Handler
	switch *router {
	case "gin":
		h = ginRouter()
	case "chi":
		h = chiRouter()
	case "echo":
		h = echoRouter()
	case "mux":
		h = muxRouter()
	default:
		log.Fatalf("unknown router %q: want gin, chi, echo or mux", *router)
	}
	if *underMux {
		sm := http.NewServeMux()
		sm.Handle("/", h)
		h = sm
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", l.Addr())
	os.Stdout.Sync()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if *useTLS {
		cert, err := selfSigned()
		if err != nil {
			log.Fatal(err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		log.Fatal(srv.ServeTLS(l, "", ""))
	}
	log.Fatal(srv.Serve(l))
}

// selfSigned makes a throwaway certificate for 127.0.0.1.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func ginRouter() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	r.GET("/users/:id", func(c *gin.Context) { c.String(http.StatusOK, "user %s", c.Param("id")) })
	api := r.Group("/api")
	api.GET("/items/:item", func(c *gin.Context) { c.String(http.StatusOK, "item %s", c.Param("item")) })
	r.GET("/files/*path", func(c *gin.Context) { c.String(http.StatusOK, "file %s", c.Param("path")) })
	return r
}

func chiRouter() http.Handler {
	r := chi.NewRouter()
	r.Get("/users/{id}", func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintf(w, "user %s", chi.URLParam(req, "id"))
	})
	r.Route("/api", func(r chi.Router) {
		r.Get("/items/{item}", func(w http.ResponseWriter, req *http.Request) {
			fmt.Fprintf(w, "item %s", chi.URLParam(req, "item"))
		})
	})
	r.Get("/files/*", func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintf(w, "file %s", chi.URLParam(req, "*"))
	})
	return r
}

func echoRouter() http.Handler {
	e := echo.New()
	e.HideBanner = true
	e.GET("/users/:id", func(c echo.Context) error { return c.String(http.StatusOK, "user "+c.Param("id")) })
	api := e.Group("/api")
	api.GET("/items/:item", func(c echo.Context) error { return c.String(http.StatusOK, "item "+c.Param("item")) })
	e.GET("/files/*", func(c echo.Context) error { return c.String(http.StatusOK, "file "+c.Param("*")) })
	return e
}

func muxRouter() http.Handler {
	r := mux.NewRouter()
	r.HandleFunc("/users/{id:[a-z0-9]+}", func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintf(w, "user %s", mux.Vars(req)["id"])
	}).Methods(http.MethodGet)
	api := r.PathPrefix("/api").Subrouter()
	api.HandleFunc("/items/{item}", func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintf(w, "item %s", mux.Vars(req)["item"])
	}).Methods(http.MethodGet)
	r.PathPrefix("/files/").HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintf(w, "file %s", req.URL.Path)
	})
	return r
}
