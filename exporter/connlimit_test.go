package exporter

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// Many idle connections — some that never sent a request, some kept alive
// after one — hold at most the limit of the server's descriptors, and
// /healthz and /metrics keep answering new clients.
func TestIdleConnectionsBounded(t *testing.T) {
	h, _ := testMetrics()
	agg := aggregator.New([]*aggregator.Metric{h}, aggregator.Options{})
	const limit = 16
	s, err := New(agg, fixedState{}, Options{ListenAddresses: []string{"127.0.0.1:0"}, MaxConnections: limit, Logger: newDiscardLogger(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	if s.srv.IdleTimeout <= 0 || s.srv.ReadHeaderTimeout <= 0 {
		t.Errorf("IdleTimeout %v, ReadHeaderTimeout %v: idle connections are never closed", s.srv.IdleTimeout, s.srv.ReadHeaderTimeout)
	}
	addr := s.listeners[0].Addr().String()
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-served
	}()

	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := 0; i < 10*limit; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		idle = append(idle, c)
		if i%2 == 0 {
			// A keep-alive request, then silence.
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			buf := make([]byte, 512)
			if n, err := c.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "200 OK") {
				// An earlier idle one may have been closed to make room
				// for this one: only a new client's request must work.
				t.Logf("keep-alive request %d: %q %v", i, buf[:n], err)
			}
		}
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, path := range []string{"/healthz", "/metrics", "/healthz"} {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s with %d idle connections open: %v", path, len(idle), err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
	}
	if n := s.conns.open(); n > limit {
		t.Errorf("%d connections open, limit %d", n, limit)
	}
	// The oldest idle connections were closed by the server.
	closed := 0
	for _, c := range idle[:limit] {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF || err != nil && !isTimeout(err) {
			closed++
		}
	}
	if closed == 0 {
		t.Errorf("none of the %d oldest idle connections was closed", limit)
	}
	t.Logf("%d idle connections dialled, %d open at the server, %d evicted, %d refused", len(idle), s.conns.open(), s.conns.evicted, s.conns.refused)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
