// Command httpclient is blindspot's end-to-end target for outgoing HTTP
// calls. It serves two "upstreams" on two loopback ports (answering
// /status/N with status N), a slow one, and knows a closed port; on "run"
// from stdin it calls them a known number of times through http.Get,
// Client.Do and a custom RoundTripper built on an *http.Transport, prints
// "run done" and stays alive.
//
// Calls per run (method, status or error, upstream):
//
//	GET    200  A  3 (http.Get)
//	GET    404  A  2 (Client.Do)
//	POST   503  A  2 (custom Transport)
//	PURGE  200  A  1 (custom Transport: method _OTHER)
//	GET    200  B  2 (http.Get)
//	DELETE 204  B  1 (Client.Do)
//	GET    connection_refused  closed port  2
//	GET    timeout             slow         2 (client timeout 200ms, server sleeps 3s)
//	GET    context_canceled    slow         1 (context cancelled after 100ms)
//
// On "fanout N" it calls N distinct upstream hosts, 127.0.X.Y (all
// loopback) on the closed port, once each — every call is refused at once —
// and prints "fanout done": the cardinality test's 1,000 upstreams.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func serve() (string, func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/status/") {
			code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
			w.WriteHeader(code)
			return
		}
		if r.URL.Path == "/slow" {
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	return l.Addr().String(), func() { srv.Close() }
}

// wrapper is a custom RoundTripper built on an *http.Transport.
type wrapper struct{ rt *http.Transport }

func (w wrapper) RoundTrip(r *http.Request) (*http.Response, error) {
	r.Header.Set("X-Wrapped", "1")
	return w.rt.RoundTrip(r)
}

func call(c *http.Client, ctx context.Context, method, url string, wantErr bool) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		log.Fatal(err)
	}
	resp, err := c.Do(req)
	if (err != nil) != wantErr {
		log.Fatalf("%s %s: err %v, want error %v", method, url, err, wantErr)
	}
	if resp != nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func get(url string) {
	resp, err := http.Get(url)
	if err != nil {
		log.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// fanout calls n distinct loopback hosts on the port of closed.
func fanout(n string, closed string) {
	count, err := strconv.Atoi(n)
	if err != nil || count < 1 || count > 60000 {
		log.Fatalf("fanout %q: want a count from 1 to 60000", n)
	}
	_, port, _ := net.SplitHostPort(closed)
	client := &http.Client{Timeout: 2 * time.Second}
	for i := 0; i < count; i++ {
		host := fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250)
		call(client, context.Background(), "GET", "http://"+host+":"+port+"/", true)
	}
	fmt.Println("fanout done")
}

func main() {
	a, _ := serve()
	b, _ := serve()
	slow, _ := serve()
	closed := net.JoinHostPort("127.0.0.1", strconv.Itoa(refusedPort()))
	fmt.Printf("upstreams a=%s b=%s slow=%s closed=%s\n", a, b, slow, closed)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "fanout ") {
			fanout(strings.TrimPrefix(line, "fanout "), closed) // no strings.CutPrefix in Go 1.19
			continue
		}
		if strings.TrimSpace(sc.Text()) != "run" {
			continue
		}
		bg := context.Background()
		client := &http.Client{}
		custom := &http.Client{Transport: wrapper{&http.Transport{MaxIdleConnsPerHost: 2}}}
		for i := 0; i < 3; i++ {
			get("http://" + a + "/ok")
		}
		for i := 0; i < 2; i++ {
			call(client, bg, "GET", "http://"+a+"/status/404", false)
		}
		for i := 0; i < 2; i++ {
			call(custom, bg, "POST", "http://"+a+"/status/503", false)
		}
		call(custom, bg, "PURGE", "http://"+a+"/ok", false)
		for i := 0; i < 2; i++ {
			get("http://" + b + "/ok")
		}
		call(client, bg, "DELETE", "http://"+b+"/status/204", false)
		for i := 0; i < 2; i++ {
			call(client, bg, "GET", "http://"+closed+"/", true)
		}
		impatient := &http.Client{Timeout: 200 * time.Millisecond}
		for i := 0; i < 2; i++ {
			call(impatient, bg, "GET", "http://"+slow+"/slow", true)
		}
		ctx, cancel := context.WithCancel(bg)
		time.AfterFunc(100*time.Millisecond, cancel)
		call(client, ctx, "GET", "http://"+slow+"/slow", true)
		fmt.Println("run done")
	}
	select {}
}

// refusedPort returns a port that refuses connections for as long as this
// program runs: a socket bound to it on every address that never listens.
// Without SO_REUSEADDR no other socket can bind the port, as one could a
// closed listener's port (another test's program once listened on it).
func refusedPort() int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		log.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{}); err != nil {
		log.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		log.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}
