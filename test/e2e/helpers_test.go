package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// syncBuffer is a bytes.Buffer safe for a writing process and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond every 20ms until it returns true or timeout passes;
// it reports whether cond came true.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback address nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// agentClient talks to the agent without keeping connections open, so that
// the agent's file descriptor count does not depend on our scrapes.
var agentClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// agentProc is a running blindspot agent.
type agentProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string // host:port of its web endpoint
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // its exit status, valid after done
}

// agentConfig is the YAML every test agent gets: only the test's own
// executables (directly in env.dir) are instrumented, and /proc is
// rescanned every 500ms. extra is appended verbatim.
func agentConfig(extra string) string {
	return fmt.Sprintf("include:\n  - exe: %q\ndiscovery_interval: 500ms\n%s", filepath.Join(env.dir, "*"), extra)
}

// startAgent runs an agent with agentConfig(extra) on a free loopback port,
// waits for /healthz and stops it (SIGTERM) when the test ends.
func startAgent(t *testing.T, extra string) *agentProc {
	t.Helper()
	var args []string
	if lvl := os.Getenv("E2E_AGENT_LOG_LEVEL"); lvl != "" {
		args = append(args, "--log.level", lvl) // e.g. debug, to diagnose failures
	}
	return startAgentWith(t, extra, args, "http", agentClient, "", "")
}

// stopAtDeadline kills p when the package budget runs out before done.
func stopAtDeadline(p *os.Process, done <-chan struct{}) {
	go func() {
		select {
		case <-env.ctx.Done():
			p.Kill()
		case <-done:
		}
	}()
}

// stop signals the agent and waits up to timeout for it to exit (killing it
// after that); it returns the exit error and whether it exited in time.
func (a *agentProc) stop(sig syscall.Signal, timeout time.Duration) (error, bool) {
	select {
	case <-a.done:
		return a.err, true
	default:
	}
	a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
		return a.err, true
	case <-time.After(timeout):
		a.cmd.Process.Kill()
		<-a.done
		return a.err, false
	}
}

// get fetches path from the agent.
func (a *agentProc) get(path string) ([]byte, error) {
	resp, err := agentClient.Get("http://" + a.addr + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, err
}

// targetStatus is one object of /targets.
type targetStatus struct {
	PID         int               `json:"pid"`
	ServiceName string            `json:"service_name"`
	Exe         string            `json:"exe"`
	GoVersion   string            `json:"go_version"`
	AttachedAt  time.Time         `json:"attached_at"`
	Kubernetes  map[string]string `json:"kubernetes"`
	Probes      []struct {
		Family string   `json:"family"`
		Sites  []string `json:"sites"`
		Error  string   `json:"error"`
		Left   []string `json:"left_out"`
	} `json:"probes"`
}

// targets returns /targets (state is "" or "skipped").
func (a *agentProc) targets(state string) ([]targetStatus, error) {
	path := "/targets"
	if state != "" {
		path += "?state=" + state
	}
	b, err := a.get(path)
	if err != nil {
		return nil, err
	}
	var ts []targetStatus
	if err := json.Unmarshal(b, &ts); err != nil {
		return nil, fmt.Errorf("/targets: %v: %s", err, b)
	}
	return ts, nil
}

// findTarget returns pid's entry in /targets, or nil.
func (a *agentProc) findTarget(pid int) *targetStatus {
	ts, err := a.targets("")
	if err != nil {
		a.t.Logf("%v", err)
		return nil
	}
	for i := range ts {
		if ts[i].PID == pid {
			return &ts[i]
		}
	}
	return nil
}

// waitTargeted waits until /targets lists pid and returns its entry.
func (a *agentProc) waitTargeted(t *testing.T, pid int, timeout time.Duration) targetStatus {
	t.Helper()
	var got *targetStatus
	if !waitFor(timeout, func() bool { got = a.findTarget(pid); return got != nil }) {
		skipped, _ := a.get("/targets?state=skipped")
		t.Fatalf("pid %d not in /targets within %v; skipped: %s", pid, timeout, skipped)
	}
	return *got
}

// series is one histogram series of a scrape.
type series struct {
	labels map[string]string
	count  uint64
	sum    float64
}

// scrape is a parsed /metrics.
type scrape struct {
	gauges     map[string][]series // gauges and counters: value in sum
	histograms map[string][]series
}

// scrape fetches and parses /metrics in the Prometheus text format.
func (a *agentProc) scrape() (*scrape, error) {
	req, _ := http.NewRequest("GET", "http://"+a.addr+"/metrics", nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := agentClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %v", err)
	}
	s := &scrape{gauges: map[string][]series{}, histograms: map[string][]series{}}
	for name, mf := range fams {
		for _, m := range mf.GetMetric() {
			se := series{labels: map[string]string{}}
			for _, lp := range m.GetLabel() {
				se.labels[lp.GetName()] = lp.GetValue()
			}
			switch {
			case m.Histogram != nil:
				se.count = m.GetHistogram().GetSampleCount()
				se.sum = m.GetHistogram().GetSampleSum()
				s.histograms[name] = append(s.histograms[name], se)
			case m.Gauge != nil:
				se.sum = m.GetGauge().GetValue()
				s.gauges[name] = append(s.gauges[name], se)
			case m.Counter != nil:
				se.sum = m.GetCounter().GetValue()
				s.gauges[name] = append(s.gauges[name], se)
			case m.Untyped != nil:
				se.sum = m.GetUntyped().GetValue()
				s.gauges[name] = append(s.gauges[name], se)
			}
		}
	}
	return s, nil
}

// mustScrape is scrape that fails the test on error.
func (a *agentProc) mustScrape(t *testing.T) *scrape {
	t.Helper()
	s, err := a.scrape()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// value returns the value of the gauge or counter name whose labels include
// match, and whether there is one.
func (s *scrape) value(name string, match map[string]string) (float64, bool) {
	for _, se := range s.gauges[name] {
		if hasLabels(se.labels, match) {
			return se.sum, true
		}
	}
	return 0, false
}

func hasLabels(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// httpKey identifies an http_server_request_duration_seconds series within
// one service.
type httpKey struct {
	Method, Status, Route, ErrorType string
}

func (k httpKey) String() string {
	return fmt.Sprintf("{method=%q status=%q route=%q error_type=%q}", k.Method, k.Status, k.Route, k.ErrorType)
}

// httpSeries returns the request duration series of service, by key; it
// fails on series with unexpected label names or overflow.
func (s *scrape) httpSeries(t *testing.T, service string) map[httpKey]series {
	t.Helper()
	out := map[httpKey]series{}
	for _, se := range s.histograms["http_server_request_duration_seconds"] {
		if se.labels["service_name"] != service {
			continue
		}
		k := httpKey{se.labels["http_request_method"], se.labels["http_response_status_code"], se.labels["http_route"], se.labels["error_type"]}
		if _, dup := out[k]; dup {
			t.Errorf("duplicate series %v for %s", k, service)
		}
		out[k] = se
	}
	return out
}

// total is the sum of the counts of ss.
func total(ss map[httpKey]series) uint64 {
	var n uint64
	for _, se := range ss {
		n += se.count
	}
	return n
}

// dump formats ss for failure messages, sorted.
func dump(ss map[httpKey]series) string {
	var lines []string
	for k, se := range ss {
		lines = append(lines, fmt.Sprintf("  %v count=%d sum=%.4f labels=%v", k, se.count, se.sum, se.labels))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// targetProc is a running instance of the target program.
type targetProc struct {
	cmd     *exec.Cmd
	pid     int
	addr    string // host:port it serves on
	service string // its OTEL_SERVICE_NAME
	exe     string
	stderr  *syncBuffer
	done    chan struct{} // closed when it has exited (and been reaped)
	err     error
	client  *http.Client // keep-alive client for its traffic
	started time.Time    // just before exec
}

var serviceSeq atomic.Int64

// uniqueService returns a service name no other target of this run uses.
func uniqueService(prefix string, v variant) string {
	return fmt.Sprintf("e2e-%s-%s-%d", prefix, v.name, serviceSeq.Add(1))
}

// startTarget runs exe with OTEL_SERVICE_NAME=service on a free loopback
// port (with extra arguments, if any), waits until it listens and kills it
// when the test ends.
func startTarget(t *testing.T, exe, service string, args ...string) *targetProc {
	t.Helper()
	return startTargetEnv(t, exe, service, nil, args...)
}

// startTargetEnv is startTarget with extra environment variables
// ("NAME=value") for the program.
func startTargetEnv(t *testing.T, exe, service string, extraEnv []string, args ...string) *targetProc {
	t.Helper()
	return startTargetWrapped(t, nil, exe, service, extraEnv, args...)
}

// startTargetWrapped is startTargetEnv with the program run by a wrapper
// command that ends by exec'ing it (its PID stays the target's).
func startTargetWrapped(t *testing.T, wrapper []string, exe, service string, extraEnv []string, args ...string) *targetProc {
	t.Helper()
	tp := &targetProc{exe: exe, service: service, stderr: &syncBuffer{}, done: make(chan struct{})}
	argv := append(append(append([]string{}, wrapper...), exe, "-listen", "127.0.0.1:0"), args...)
	tp.cmd = exec.Command(argv[0], argv[1:]...)
	tp.cmd.Env = append(append(filteredEnv("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"), "OTEL_SERVICE_NAME="+service), extraEnv...)
	tp.cmd.Stderr = tp.stderr
	tp.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Our own pipe, not StdoutPipe: Wait must not close it under the reader.
	stdout, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	tp.cmd.Stdout = w
	tp.started = time.Now()
	err = tp.cmd.Start()
	w.Close()
	if err != nil {
		stdout.Close()
		t.Fatal(err)
	}
	tp.pid = tp.cmd.Process.Pid
	go func() {
		tp.err = tp.cmd.Wait()
		close(tp.done)
	}()
	stopAtDeadline(tp.cmd.Process, tp.done)
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening on "); ok && !sent {
				addrCh <- a
				sent = true
			}
		}
		if !sent {
			close(addrCh) // exited before listening
		}
		stdout.Close()
	}()
	t.Cleanup(func() { tp.kill() })
	select {
	case a, ok := <-addrCh:
		if !ok {
			<-tp.done
			t.Fatalf("%s exited before listening: %s", exe, tp.stderr.String())
		}
		tp.addr = a
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not listen within 10s: %s", exe, tp.stderr.String())
	}
	tp.client = &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4},
	}
	return tp
}

// kill SIGKILLs the target and waits until it is reaped.
func (tp *targetProc) kill() {
	tp.cmd.Process.Kill()
	select {
	case <-tp.done:
	case <-time.After(10 * time.Second):
	}
}

// alive reports whether the target has not exited.
func (tp *targetProc) alive() bool {
	select {
	case <-tp.done:
		return false
	default:
		return true
	}
}

// do sends one request over the keep-alive client and returns the status
// and body.
func (tp *targetProc) do(method, path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(env.ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+tp.addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	return doWith(tp.client, req)
}

// doFresh sends one request over a new connection that is closed after it,
// so that a dropped connection is never retried by the client.
func (tp *targetProc) doFresh(method, path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(env.ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+tp.addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	return doWith(c, req)
}

func doWith(c *http.Client, req *http.Request) (int, string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// fdCount returns the number of open file descriptors of pid and what they
// point at.
func fdCount(pid int) (int, map[string]string) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1, nil
	}
	links := map[string]string{}
	for _, e := range ents {
		l, _ := os.Readlink(filepath.Join(dir, e.Name()))
		links[e.Name()] = l
	}
	return len(ents), links
}

// stableFDCount waits until pid's fd count reads the same 5 times in a row
// (100ms apart, at most 5s) and returns it.
func stableFDCount(pid int) (int, map[string]string) {
	n, links := fdCount(pid)
	same := 0
	deadline := time.Now().Add(5 * time.Second)
	for same < 5 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		m, l := fdCount(pid)
		if m == n {
			same++
		} else {
			n, links, same = m, l, 0
		}
	}
	return n, links
}

// fdDiff lists the fds in now that are not in before.
func fdDiff(before, now map[string]string) []string {
	var out []string
	for fd, l := range now {
		if before[fd] != l {
			out = append(out, fd+" -> "+l)
		}
	}
	sort.Strings(out)
	return out
}
