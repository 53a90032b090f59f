package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/blindspot-dev/blindspot/probes/discover"
)

// demoWorkloadArg runs the built-in demo service instead of the agent: the
// agent starts itself again with it, as a separate Go program to observe.
const demoWorkloadArg = "demo-workload"

func startDemo(ctx context.Context, log *slog.Logger) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start demo: %w", err)
	}
	cmd := exec.CommandContext(ctx, self, demoWorkloadArg, "--listen", "127.0.0.1:8080")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = append(os.Environ(), "OTEL_SERVICE_NAME=demo-shop")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start demo: %w", err)
	}
	go cmd.Wait()
	log.Info("demo service started", "pid", cmd.Process.Pid, "url", "http://127.0.0.1:8080/", "service", "demo-shop")
	return nil
}

// countGoPrograms counts the Go programs running now, other than this one.
func countGoPrograms() int {
	bins := discover.NewBinaries(nil)
	n := 0
	for _, ev := range discover.NewScanner().Scan(nil) {
		if _, err := bins.Acquire(ev.Process); err == nil {
			n++
			bins.Release(ev.Process.File)
		}
	}
	return n
}

// runDemoWorkload serves a small shop API on loopback and sends it a steady
// mix of requests until it is told to stop.
func runDemoWorkload(args []string) int {
	fs := flag.NewFlagSet(demoWorkloadArg, flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "loopback address to serve on")
	rate := fs.Int("rate", 20, "requests per second the load generator sends")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if host, _, err := net.SplitHostPort(*listen); err != nil || !net.ParseIP(host).IsLoopback() {
		fmt.Fprintln(os.Stderr, "demo-workload: --listen must be a loopback address")
		return 2
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		fmt.Fprintf(w, `{"id":%q,"status":"shipped"}`, r.PathValue("id"))
	})
	mux.HandleFunc("POST /api/orders", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(time.Duration(20+rand.IntN(60)) * time.Millisecond)
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("GET /api/payments/{id}", func(w http.ResponseWriter, r *http.Request) {
		if rand.IntN(10) == 0 {
			http.Error(w, "gateway timeout", http.StatusBadGateway)
			return
		}
		time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
		w.Write([]byte("paid"))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo-workload:", err)
		return 1
	}
	go http.Serve(l, mux)
	base := "http://" + l.Addr().String()
	ctx, stop := signalContext()
	defer stop()
	tick := time.NewTicker(time.Second / time.Duration(max(*rate, 1)))
	defer tick.Stop()
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return 0
		case <-tick.C:
		}
		var req *http.Request
		switch i % 10 {
		case 0, 1, 2, 3, 4:
			req, _ = http.NewRequest("GET", fmt.Sprintf("%s/api/orders/%d", base, rand.IntN(10000)), nil)
		case 5, 6:
			req, _ = http.NewRequest("POST", base+"/api/orders", strings.NewReader(`{"sku":"A1","qty":2}`))
		case 7, 8:
			req, _ = http.NewRequest("GET", fmt.Sprintf("%s/api/payments/%d", base, rand.IntN(10000)), nil)
		default:
			req, _ = http.NewRequest("GET", base+"/healthz", nil)
		}
		go func() {
			if resp, err := client.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
}
