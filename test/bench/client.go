//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// driver is the work of one round: the load generator for the server
// variants, or a client target's own loop for the client variants.
type driver interface {
	Done() int64
	Errs() int64
	Err() error
	Finished() <-chan struct{}
	Stop()
}

func (l *load) Done() int64               { return l.done.Load() }
func (l *load) Errs() int64               { return l.errs.Load() }
func (l *load) Finished() <-chan struct{} { return l.finished }

// clientTarget is a target that makes the calls itself (test/bench/
// clienttarget, test/bench/sqltarget), commanded through its stdin.
type clientTarget struct {
	*child
	mu  sync.Mutex
	in  io.WriteCloser
	out *bufio.Reader
	log string
}

// startClientTarget starts a client target pinned to cpu and waits until
// it is ready (it has made one call, before any probe is attached).
func startClientTarget(ctx context.Context, path string, args []string, cpu int, logFile string) (*clientTarget, error) {
	cmd := exec.Command(path, args...)
	stderr, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c, err := startPinned(cmd, cpu)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	t := &clientTarget{child: c, in: in, out: bufio.NewReader(out), log: logFile}
	line, err := t.readLine(ctx, 30*time.Second)
	if err != nil || line != "ready" {
		t.stop(2 * time.Second)
		return nil, fmt.Errorf("client target not ready (%q, %v): %s", line, err, tail(logFile, 10))
	}
	return t, nil
}

func (t *clientTarget) readLine(ctx context.Context, timeout time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := t.out.ReadString('\n')
		ch <- res{strings.TrimSpace(s), err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-time.After(timeout):
		// The reader goroutine is left blocked: the caller stops the target.
		return "", fmt.Errorf("no answer from the client target within %v", timeout)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// command sends one command and returns its one-line answer.
func (t *clientTarget) command(cmd string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := io.WriteString(t.in, cmd+"\n"); err != nil {
		return "", err
	}
	return t.readLine(context.Background(), 15*time.Second)
}

func (t *clientTarget) status(cmd string) (done, errs int64, running bool, err error) {
	line, err := t.command(cmd)
	if err != nil {
		return 0, 0, false, err
	}
	f := strings.Fields(line)
	if len(f) != 3 {
		return 0, 0, false, fmt.Errorf("client target answered %q", line)
	}
	done, err1 := strconv.ParseInt(f[0], 10, 64)
	errs, err2 := strconv.ParseInt(f[1], 10, 64)
	return done, errs, f[2] != "0", errors.Join(err1, err2)
}

// clientRun is one round of a client target's loop.
type clientRun struct {
	t        *clientTarget
	mu       sync.Mutex
	done     int64
	errs     int64
	err      error
	finished chan struct{}
	quit     chan struct{}
	once     sync.Once
}

// run starts the target's loop (at most max calls, for at most bound) and
// follows its progress every 100 ms.
func (t *clientTarget) run(max int64, bound time.Duration) (*clientRun, error) {
	line, err := t.command(fmt.Sprintf("run %d %.3f", max, bound.Seconds()))
	if err != nil {
		return nil, err
	}
	if line != "started" {
		return nil, fmt.Errorf("client target answered %q to run", line)
	}
	r := &clientRun{t: t, finished: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.quit:
				return
			case <-tick.C:
			}
			d, e, running, err := t.status("count")
			r.mu.Lock()
			r.done, r.errs = d, e
			if err != nil && r.err == nil {
				r.err = err
			}
			r.mu.Unlock()
			if err != nil || !running {
				r.once.Do(func() { close(r.finished) })
				return
			}
		}
	}()
	return r, nil
}

// Done returns the calls completed, asking the target now.
func (r *clientRun) Done() int64 {
	d, e, _, err := r.t.status("count")
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if r.err == nil {
			r.err = err
		}
		return r.done
	}
	r.done, r.errs = d, e
	return d
}

func (r *clientRun) Errs() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs
}

func (r *clientRun) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil && r.errs > 0 {
		return fmt.Errorf("client target: %d errors; see %s", r.errs, r.t.log)
	}
	return r.err
}

func (r *clientRun) Finished() <-chan struct{} { return r.finished }

// Stop ends the loop and waits for the calls in flight.
func (r *clientRun) Stop() {
	select {
	case <-r.quit:
		return
	default:
	}
	close(r.quit)
	d, e, _, err := r.t.status("stop")
	r.mu.Lock()
	if err == nil {
		r.done, r.errs = d, e
	} else if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	r.once.Do(func() { close(r.finished) })
}
