//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// load is a closed-loop HTTP/1.1 load generator: conns connections, each
// with one request in flight. With newConn every request opens its own
// connection (Connection: close); otherwise connections are kept alive.
// It stops at max requests, at the deadline, or when stopped.
type load struct {
	addr     string
	newConn  bool
	max      int64
	deadline time.Time

	issued atomic.Int64 // requests begun (bounded by max)
	done   atomic.Int64 // responses received in full
	errs   atomic.Int64
	dials  atomic.Int64
	stop   atomic.Bool

	wg       sync.WaitGroup
	finished chan struct{}
	firstErr atomic.Pointer[error]
}

var (
	reqKeepAlive = []byte("GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: blindspot-bench\r\n\r\n")
	reqClose     = []byte("GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: blindspot-bench\r\nConnection: close\r\n\r\n")
)

func startLoad(addr string, conns int, newConn bool, max int64, bound time.Duration) *load {
	l := &load{addr: addr, newConn: newConn, max: max, deadline: time.Now().Add(bound), finished: make(chan struct{})}
	for i := 0; i < conns; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if newConn {
				l.runNewConn()
			} else {
				l.runKeepAlive()
			}
		}()
	}
	go func() { l.wg.Wait(); close(l.finished) }()
	return l
}

// Stop ends the load and waits for the requests in flight.
func (l *load) Stop() {
	l.stop.Store(true)
	<-l.finished
}

func (l *load) fail(err error) {
	l.errs.Add(1)
	l.firstErr.CompareAndSwap(nil, &err)
}

// Err returns the first error seen, if any.
func (l *load) Err() error {
	if p := l.firstErr.Load(); p != nil {
		return *p
	}
	return nil
}

// next reserves one request, or says the load is over.
func (l *load) next() bool {
	if l.stop.Load() || time.Now().After(l.deadline) {
		return false
	}
	if l.issued.Add(1) > l.max {
		l.stop.Store(true)
		return false
	}
	return true
}

func (l *load) dial() (*net.TCPConn, error) {
	c, err := net.DialTimeout("tcp", l.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	l.dials.Add(1)
	tc := c.(*net.TCPConn)
	tc.SetDeadline(l.deadline.Add(5 * time.Second))
	return tc, nil
}

func (l *load) runKeepAlive() {
	for !l.stop.Load() && time.Now().Before(l.deadline) {
		c, err := l.dial()
		if err != nil {
			l.fail(err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		br := bufio.NewReaderSize(c, 4096)
		for l.next() {
			if _, err = c.Write(reqKeepAlive); err == nil {
				err = readResponse(br)
			}
			if err != nil {
				l.fail(err)
				break
			}
			l.done.Add(1)
		}
		c.Close()
	}
}

func (l *load) runNewConn() {
	for l.next() {
		c, err := l.dial()
		if err != nil {
			l.fail(err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		br := bufio.NewReaderSize(c, 4096)
		if _, err = c.Write(reqClose); err == nil {
			err = readResponse(br)
		}
		if err == nil {
			// The server closes first; wait for its FIN, then reset so that
			// neither side keeps the connection in TIME_WAIT.
			var n int
			n, err = br.Read(make([]byte, 1))
			if err == io.EOF && n == 0 {
				err = nil
			} else if err == nil {
				err = errors.New("data after response")
			}
		}
		c.SetLinger(0)
		c.Close()
		if err != nil {
			l.fail(err)
			continue
		}
		l.done.Add(1)
	}
}

// readResponse reads one response with a Content-Length body.
func readResponse(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("unexpected status line %q", line)
	}
	n := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			n, err = strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return fmt.Errorf("content-length %q", v)
			}
		}
	}
	if n < 0 {
		return errors.New("response without Content-Length")
	}
	_, err = br.Discard(n)
	return err
}
