// Command httpserver is the program the blindspot end-to-end tests observe:
// a standard-library-only HTTP server with one handler per behaviour the
// agent must measure (status codes, panics, deep stacks, slow handlers).
// It builds with every Go release blindspot supports (go.mod says 1.19).
//
// Usage: httpserver [-listen 127.0.0.1:PORT] [127.0.0.1:PORT]
//
// The address must be on the loopback interface. Once it listens, it prints
// "listening on ADDR" on stdout.
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
	"strconv"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	useTLS := flag.Bool("tls", false, "serve HTTPS with a fresh self-signed certificate (HTTP/2 and HTTP/1.1)")
	flag.Parse()
	addr := *listen
	if flag.NArg() > 0 {
		addr = flag.Arg(0)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		log.Fatalf("bad listen address %q: %v", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		log.Fatalf("listen address %q is not a loopback address", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	register(mux) // routes.go (Go 1.22+) or routes_old.go
	fmt.Printf("listening on %s\n", l.Addr())
	os.Stdout.Sync()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if *useTLS {
		cert, err := selfSigned()
		if err != nil {
			log.Fatal(err)
		}
		// ServeTLS sets up net/http's bundled HTTP/2 server.
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

// getItem writes a body and no status: net/http sends 200.
func getItem(w http.ResponseWriter, id string) {
	fmt.Fprintf(w, "item %s\n", id)
}

// postItem answers 201 Created.
func postItem(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintln(w, "created")
}

// teapot answers 418.
func teapot(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusTeapot)
	fmt.Fprintln(w, "I'm a teapot")
}

// nothing writes nothing at all: net/http sends an empty 200.
func nothing(w http.ResponseWriter, r *http.Request) {}

// fail answers 503 with http.Error.
func fail(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "unavailable", http.StatusServiceUnavailable)
}

// panicky panics; net/http recovers it, logs it and drops the connection.
func panicky(w http.ResponseWriter, r *http.Request) {
	panic("e2e test panic")
}

// recurse uses a large frame per level, so that deep recursion grows the
// goroutine stack (copying it several times) to many megabytes.
//
//go:noinline
func recurse(n int) int {
	var buf [256]byte
	buf[n%len(buf)] = byte(n)
	if n == 0 {
		return int(buf[0])
	}
	return recurse(n-1) + int(buf[n%len(buf)]&1)
}

// deep recurses ?depth=N levels (default 50000), then answers 200 with the
// result.
func deep(w http.ResponseWriter, r *http.Request) {
	depth := 50000
	if s := r.URL.Query().Get("depth"); s != "" {
		d, err := strconv.Atoi(s)
		if err != nil || d < 0 || d > 1000000 {
			http.Error(w, "bad depth", http.StatusBadRequest)
			return
		}
		depth = d
	}
	fmt.Fprintf(w, "deep %d %d\n", depth, recurse(depth))
}

// slow sleeps ?ms=N milliseconds (default 100), then answers 200.
func slow(w http.ResponseWriter, r *http.Request) {
	ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
	if err != nil {
		ms = 100
	}
	time.Sleep(time.Duration(ms) * time.Millisecond)
	fmt.Fprintf(w, "slept %dms\n", ms)
}

// userOrder echoes the user and order ids.
func userOrder(w http.ResponseWriter, id, oid string) {
	fmt.Fprintf(w, "user %s order %s\n", id, oid)
}
