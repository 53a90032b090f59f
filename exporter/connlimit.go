package exporter

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// Connection limits of the HTTP endpoint. Idle keep-alive connections are
// closed after idleTimeout; at most maxConns connections are open at once,
// and when a new one arrives at the limit the one idle longest is closed
// to make room (a client whose idle connection is closed simply opens
// another), so that thousands of idle connections can neither exhaust the
// agent's descriptors nor keep /healthz and /metrics from answering.
const (
	defaultMaxConns   = 256
	idleTimeout       = 30 * time.Second
	readHeaderTimeout = 10 * time.Second
)

// connLimiter wraps the listeners of an http.Server and follows its
// connections through ConnState.
type connLimiter struct {
	max int

	mu    sync.Mutex
	conns map[net.Conn]*connInfo // by the accepted connection
	// evicted counts connections closed to make room, refused those
	// closed on accept because none was idle.
	evicted, refused uint64
}

type connInfo struct {
	idle  bool      // new (no request read yet) or idle between requests
	since time.Time // when it became idle
}

func newConnLimiter(max int) *connLimiter {
	if max <= 0 {
		max = defaultMaxConns
	}
	return &connLimiter{max: max, conns: map[net.Conn]*connInfo{}}
}

// listener wraps l: every accepted connection is counted, and makes room
// for itself at the limit.
func (c *connLimiter) listener(l net.Listener) net.Listener {
	return &limitedListener{Listener: l, lim: c}
}

type limitedListener struct {
	net.Listener
	lim *connLimiter
}

func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.lim.admit(conn) {
			return conn, nil
		}
		conn.Close()
	}
}

// admit registers a new connection, closing the longest idle one when the
// limit is reached. It reports false when every connection is busy.
func (c *connLimiter) admit(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.conns) >= c.max {
		var oldest net.Conn
		var since time.Time
		for k, info := range c.conns {
			if info.idle && (oldest == nil || info.since.Before(since)) {
				oldest, since = k, info.since
			}
		}
		if oldest == nil {
			c.refused++
			return false
		}
		// Closing it makes the server report StateClosed, which finds
		// it gone from the map.
		delete(c.conns, oldest)
		oldest.Close()
		c.evicted++
	}
	c.conns[conn] = &connInfo{idle: true, since: time.Now()}
	return true
}

// connState is the http.Server's ConnState hook.
func (c *connLimiter) connState(conn net.Conn, st http.ConnState) {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	info, ok := c.conns[conn]
	if !ok {
		return
	}
	switch st {
	case http.StateActive:
		info.idle = false
	case http.StateIdle:
		info.idle, info.since = true, time.Now()
	case http.StateClosed, http.StateHijacked:
		delete(c.conns, conn)
	}
}

// open returns how many connections are open.
func (c *connLimiter) open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.conns)
}
