//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// agent is one running blindspot process.
type agent struct {
	proc *child
	base string // http://127.0.0.1:PORT
	log  string
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// writeAgentConfig writes a configuration that instruments only the target.
// extra is appended (the business variant's functions).
func writeAgentConfig(path, targetExe, extra string) error {
	cfg := fmt.Sprintf("include:\n  - exe: %q\ndiscovery_interval: 500ms\n", targetExe) + extra
	return os.WriteFile(path, []byte(cfg), 0o644)
}

// startAgent starts blindspot (on every CPU) and waits until it has
// attached the probes of family to pid (pid 0: until it serves /targets).
func startAgent(ctx context.Context, path, config string, pid int, family, logFile string, timeout time.Duration) (*agent, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	a := &agent{base: fmt.Sprintf("http://127.0.0.1:%d", port), log: logFile}
	cmd := exec.Command(path, "--web.listen-address", fmt.Sprintf("127.0.0.1:%d", port), "--config", config)
	cmd.Stdout, cmd.Stderr = lf, lf
	all := make([]int, runtime.NumCPU())
	for c := range all {
		all[c] = c
	}
	if a.proc, err = startPinned(cmd, all...); err != nil {
		return nil, fmt.Errorf("start blindspot: %w", err)
	}
	limit := time.After(timeout)
	for {
		if a.ready(pid, family) {
			return a, nil
		}
		select {
		case <-ctx.Done():
			a.stop()
			return nil, ctx.Err()
		case <-a.proc.done:
			a.stop()
			return nil, fmt.Errorf("blindspot exited before attaching; log: %s\n%s", logFile, tail(logFile, 20))
		case <-limit:
			a.stop()
			return nil, fmt.Errorf("blindspot did not attach to pid %d within %v; log: %s\n%s", pid, timeout, logFile, tail(logFile, 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var httpc = &http.Client{Timeout: 5 * time.Second}

// ready says whether /targets lists pid with the probes of family attached
// (pid 0: whether /targets answers).
func (a *agent) ready(pid int, family string) bool {
	resp, err := httpc.Get(a.base + "/targets")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var ts []struct {
		PID    int `json:"pid"`
		Probes []struct {
			Family string   `json:"family"`
			Sites  []string `json:"sites"`
			Error  string   `json:"error"`
		} `json:"probes"`
	}
	if json.NewDecoder(resp.Body).Decode(&ts) != nil {
		return false
	}
	if pid == 0 {
		return true // serving, nothing to wait for
	}
	for _, t := range ts {
		if t.PID != pid {
			continue
		}
		for _, p := range t.Probes {
			if p.Family == family && p.Error == "" && len(p.Sites) > 0 {
				return true
			}
			// Business functions are listed one per metric.
			if strings.HasPrefix(p.Family, family+":") && p.Error == "" {
				return true
			}
		}
	}
	return false
}

// targets returns how many programs /targets lists (-1 when it does not
// answer).
func (a *agent) targets() int {
	resp, err := httpc.Get(a.base + "/targets")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var ts []json.RawMessage
	if json.NewDecoder(resp.Body).Decode(&ts) != nil {
		return -1
	}
	return len(ts)
}

// metrics returns the total of metric (a histogram's _count) and of
// blindspot_events_total{probe=family}.
func (a *agent) metrics(metric, family string) (count, events, lost float64, err error) {
	resp, err := httpc.Get(a.base + "/metrics")
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, labels, _ := strings.Cut(name, "{")
		f := strings.Fields(line)
		v, perr := strconv.ParseFloat(f[len(f)-1], 64)
		if perr != nil {
			continue
		}
		switch {
		case name == metric:
			count += v
		case name == "blindspot_events_total" && strings.Contains(labels, `probe="`+family+`"`):
			events += v
		case name == "blindspot_events_lost_total" && strings.Contains(labels, `probe="`+family+`"`):
			lost += v
		}
	}
	return count, events, lost, sc.Err()
}

// waitCount polls /metrics until the operations counted, plus those
// counted as lost (a ring or an in-flight map full), reach want or the
// time runs out, and returns the last reading.
func (a *agent) waitCount(metric, family string, want float64, timeout time.Duration) (count, events, lost float64, err error) {
	end := time.Now().Add(timeout)
	for {
		count, events, lost, err = a.metrics(metric, family)
		if (err == nil && count+lost >= want) || time.Now().After(end) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (a *agent) pid() int { return a.proc.Pid() }

func (a *agent) stop() { a.proc.stop(5 * time.Second) }

func tail(file string, n int) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
