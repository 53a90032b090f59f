package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// requireTool returns the path of a binary the exporter tests need; it
// skips the test when it is missing, or fails it under CI=true.
func requireTool(t *testing.T, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if isCI() {
			t.Fatalf("CI=true but %s is missing (Debian package %s; make test-deps installs it)", path, pkg)
		}
		t.Skipf("%s missing (apt-get install %s)", path, pkg)
	}
	return path
}

// securedAgent is an agent behind TLS and basic auth.
type securedAgent struct {
	*agentProc
	client     *http.Client // trusts the agent's certificate
	user, pass string
	caFile     string
}

// tlsFiles writes a self-signed certificate for 127.0.0.1 and its key.
func tlsFiles(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "blindspot e2e"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// startAgentWith runs an agent like startAgent, with extra command-line
// arguments, reaching /healthz through client and scheme.
func startAgentWith(t *testing.T, extraYAML string, args []string, scheme string, client *http.Client, user, pass string) *agentProc {
	t.Helper()
	return startAgentCmd(t, nil, extraYAML, args, scheme, client, user, pass)
}

// startAgentCmd runs the agent under a wrapper command (e.g. setpriv and
// its arguments; none when empty) with the config of agentConfig(extraYAML)
// and extra arguments, and waits for its /healthz.
func startAgentCmd(t *testing.T, wrapper []string, extraYAML string, args []string, scheme string, client *http.Client, user, pass string) *agentProc {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "blindspot.yaml")
	if err := os.WriteFile(cfg, []byte(agentConfig(extraYAML)), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &agentProc{t: t, addr: freePort(t), stderr: &syncBuffer{}, done: make(chan struct{})}
	argv := append(append(append([]string{}, wrapper...), env.agent, "--web.listen-address", a.addr, "--config", cfg), args...)
	a.cmd = exec.Command(argv[0], argv[1:]...)
	if len(wrapper) > 0 {
		a.cmd.Dir = "/" // the test's directory may be closed to the wrapped agent
	}
	a.cmd.Stdout = a.stderr
	a.cmd.Stderr = a.stderr
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		a.err = a.cmd.Wait()
		close(a.done)
	}()
	stopAtDeadline(a.cmd.Process, a.done)
	t.Cleanup(func() {
		a.stop(syscall.SIGTERM, 10*time.Second)
		if t.Failed() {
			t.Logf("agent output:\n%s", a.stderr.String())
		}
	})
	ok := waitFor(15*time.Second, func() bool {
		select {
		case <-a.done:
			return true
		default:
		}
		req, _ := http.NewRequest("GET", scheme+"://"+a.addr+"/healthz", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200 && strings.TrimSpace(string(b)) == "ok"
	})
	select {
	case <-a.done:
		t.Fatalf("agent exited at start-up: %v\n%s", a.err, a.stderr.String())
	default:
	}
	if !ok {
		t.Fatalf("agent /healthz not ok within 15s\n%s", a.stderr.String())
	}
	return a
}

// startSecuredAgent runs an agent with a web config file asking for TLS
// (a fresh self-signed certificate) and basic auth (a bcrypt hash).
func startSecuredAgent(t *testing.T, extraYAML string) *securedAgent {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, pool := tlsFiles(t, dir)
	user, pass := "scraper", "s3cret-e2e"
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	web := filepath.Join(dir, "web.yml")
	os.WriteFile(web, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  %s: %s\n", certFile, keyFile, user, hash)), 0o644)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy: nil, DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
	a := startAgentWith(t, extraYAML, []string{"--web.config.file", web}, "https", client, user, pass)
	return &securedAgent{agentProc: a, client: client, user: user, pass: pass, caFile: certFile}
}

// get fetches path over TLS with basic auth and the given Accept header.
func (s *securedAgent) get(t *testing.T, path, accept string) ([]byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://"+s.addr+path, nil)
	req.SetBasicAuth(s.user, s.pass)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	return b, resp.Header
}

// waitTargeted waits until the secured agent's /targets lists pid.
func (s *securedAgent) waitTargeted(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	if !waitFor(timeout, func() bool {
		b, _ := s.get(t, "/targets", "")
		var ts []targetStatus
		json.Unmarshal(b, &ts)
		for _, x := range ts {
			if x.PID == pid {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("pid %d not in /targets within %v", pid, timeout)
	}
}

// otlpReceiver is a minimal OTLP metrics receiver built from the official
// protobuf definitions: a gRPC MetricsService and an HTTP /v1/metrics
// handler, both keeping every request.
type otlpReceiver struct {
	colmetrics.UnimplementedMetricsServiceServer
	mu       sync.Mutex
	requests []*colmetrics.ExportMetricsServiceRequest
	via      map[string]int // requests per transport
}

func newOTLPReceiver() *otlpReceiver { return &otlpReceiver{via: map[string]int{}} }

func (r *otlpReceiver) Export(_ context.Context, req *colmetrics.ExportMetricsServiceRequest) (*colmetrics.ExportMetricsServiceResponse, error) {
	r.add("grpc", req)
	return &colmetrics.ExportMetricsServiceResponse{}, nil
}

func (r *otlpReceiver) add(via string, req *colmetrics.ExportMetricsServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, req)
	r.via[via]++
}

// serveGRPC serves the gRPC MetricsService on loopback and returns its URL.
func (r *otlpReceiver) serveGRPC(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	colmetrics.RegisterMetricsServiceServer(s, r)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return "http://" + l.Addr().String()
}

// serveHTTP serves POST /v1/metrics (application/x-protobuf) on loopback
// and returns its base URL.
func (r *otlpReceiver) serveHTTP(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/metrics", func(w http.ResponseWriter, hr *http.Request) {
		if ct := hr.Header.Get("Content-Type"); ct != "application/x-protobuf" {
			http.Error(w, "unsupported content type "+ct, http.StatusUnsupportedMediaType)
			return
		}
		b, err := io.ReadAll(hr.Body)
		req := &colmetrics.ExportMetricsServiceRequest{}
		if err == nil {
			err = proto.Unmarshal(b, req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.add("http", req)
		out, _ := proto.Marshal(&colmetrics.ExportMetricsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	})
	s := &http.Server{Handler: mux}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return "http://" + l.Addr().String()
}

// otlpPoint is one data point as received, with its resource.
type otlpPoint struct {
	resource map[string]string
	metric   *metricspb.Metric
	attrs    map[string]string
	count    uint64 // histogram count or sum value
	start    uint64
	time     uint64
	hist     *metricspb.HistogramDataPoint
	exp      *metricspb.ExponentialHistogramDataPoint
}

func kvMap(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch v.Value.(type) {
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = strconv.FormatInt(v.GetIntValue(), 10)
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = strconv.FormatBool(v.GetBoolValue())
		default:
			m[kv.GetKey()] = v.GetStringValue()
		}
	}
	return m
}

// points returns every data point received of the named metric, in order.
func (r *otlpReceiver) points(name string) []otlpPoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []otlpPoint
	for _, req := range r.requests {
		for _, rm := range req.GetResourceMetrics() {
			res := kvMap(rm.GetResource().GetAttributes())
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					if m.GetName() != name {
						continue
					}
					for _, dp := range m.GetHistogram().GetDataPoints() {
						out = append(out, otlpPoint{res, m, kvMap(dp.GetAttributes()), dp.GetCount(), dp.GetStartTimeUnixNano(), dp.GetTimeUnixNano(), dp, nil})
					}
					for _, dp := range m.GetExponentialHistogram().GetDataPoints() {
						out = append(out, otlpPoint{res, m, kvMap(dp.GetAttributes()), dp.GetCount(), dp.GetStartTimeUnixNano(), dp.GetTimeUnixNano(), nil, dp})
					}
					for _, dp := range m.GetSum().GetDataPoints() {
						out = append(out, otlpPoint{res, m, kvMap(dp.GetAttributes()), uint64(dp.GetAsInt()), dp.GetStartTimeUnixNano(), dp.GetTimeUnixNano(), nil, nil})
					}
				}
			}
		}
	}
	return out
}

// latestCount is the cumulative count of metric name for the process pid,
// from the last export that carried it (summed over its series).
func (r *otlpReceiver) latestCount(name string, pid int) (uint64, []otlpPoint) {
	var last uint64
	var n uint64
	var pts []otlpPoint
	for _, p := range r.points(name) {
		if p.resource["process.pid"] != strconv.Itoa(pid) {
			continue
		}
		if p.time != last {
			last, n, pts = p.time, 0, nil
		}
		n += p.count
		pts = append(pts, p)
	}
	return n, pts
}

// prometheusServer is a real Prometheus scraping the agent.
type prometheusServer struct {
	addr string
	cmd  *exec.Cmd
	out  *syncBuffer
}

// startPrometheus runs Debian's prometheus on loopback with a 1s scrape
// interval of the given scrape config (YAML, one job).
func startPrometheus(t *testing.T, bin, job string, flags ...string) *prometheusServer {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"+job), 0o644)
	p := &prometheusServer{addr: freePort(t), out: &syncBuffer{}}
	args := append([]string{"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + p.addr, "--log.level=warn"}, flags...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	stopAtDeadline(p.cmd.Process, done)
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("prometheus %v output:\n%s", flags, p.out.String())
		}
	})
	if !waitFor(20*time.Second, func() bool {
		resp, err := agentClient.Get("http://" + p.addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}) {
		t.Fatalf("prometheus not ready: %s", p.out.String())
	}
	return p
}

// query runs an instant PromQL query and returns the single value, if any.
func (p *prometheusServer) query(q string) (float64, bool, error) {
	resp, err := agentClient.Get("http://" + p.addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, false, err
	}
	if r.Status != "success" {
		return 0, false, fmt.Errorf("%s: %s", q, r.Error)
	}
	if len(r.Data.Result) != 1 {
		return 0, false, nil
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil, err
}

// waitQuery polls q until cond holds for its value (at most timeout) and
// returns the last value.
func (p *prometheusServer) waitQuery(t *testing.T, q string, timeout time.Duration, cond func(float64) bool) float64 {
	t.Helper()
	var v float64
	var ok bool
	var err error
	waitFor(timeout, func() bool {
		v, ok, err = p.query(q)
		return err == nil && ok && cond(v)
	})
	if err != nil || !ok || !cond(v) {
		t.Fatalf("PromQL %s = %v (present %v, err %v)", q, v, ok, err)
	}
	return v
}

// chromiumArgs are the flags every headless run gets.
func chromiumArgs(profile string) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile}
}

// cdpPage loads url in a real headless Chromium through the DevTools
// protocol and returns the page's text and every console error, uncaught
// exception and error log entry (failed loads, CSP violations) it saw.
func cdpPage(t *testing.T, bin, pageURL string) (text string, problems []string) {
	t.Helper()
	profile := t.TempDir()
	ctx, cancel := context.WithTimeout(env.ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(chromiumArgs(profile), "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", "--remote-allow-origins=*", "about:blank")...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // chromium's helpers too
		cmd.Wait()
	}()
	var port string
	if !waitFor(30*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort"))
		if err != nil {
			return false
		}
		port, _, _ = strings.Cut(string(b), "\n")
		return port != ""
	}) {
		t.Fatalf("chromium did not open its DevTools port: %s", out.String())
	}
	var pages []struct {
		Type  string `json:"type"`
		WSURL string `json:"webSocketDebuggerUrl"`
	}
	waitFor(10*time.Second, func() bool {
		resp, err := agentClient.Get("http://127.0.0.1:" + port + "/json/list")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		pages = nil
		json.NewDecoder(resp.Body).Decode(&pages)
		for _, p := range pages {
			if p.Type == "page" {
				return true
			}
		}
		return false
	})
	var ws string
	for _, p := range pages {
		if p.Type == "page" {
			ws = p.WSURL
		}
	}
	if ws == "" {
		t.Fatalf("no page target: %s", out.String())
	}
	conn, err := websocket.Dial(ws, "", "http://127.0.0.1/")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type message struct {
		ID     int             `json:"id,omitempty"`
		Method string          `json:"method,omitempty"`
		Params json.RawMessage `json:"params,omitempty"`
		Result json.RawMessage `json:"result,omitempty"`
		Error  json.RawMessage `json:"error,omitempty"`
	}
	msgs := make(chan message, 256)
	go func() {
		for {
			var m message
			if err := websocket.JSON.Receive(conn, &m); err != nil {
				close(msgs)
				return
			}
			msgs <- m
		}
	}()
	id := 0
	var events []message
	call := func(method string, params any) json.RawMessage {
		id++
		if err := websocket.JSON.Send(conn, map[string]any{"id": id, "method": method, "params": params}); err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("devtools connection closed during %s", method)
				}
				if m.ID == id {
					if len(m.Error) > 0 {
						t.Fatalf("%s: %s", method, m.Error)
					}
					return m.Result
				}
				events = append(events, m)
			case <-ctx.Done():
				t.Fatalf("%s: timed out", method)
			}
		}
	}
	call("Runtime.enable", map[string]any{})
	call("Log.enable", map[string]any{})
	call("Page.enable", map[string]any{})
	call("Page.navigate", map[string]any{"url": pageURL})
	loaded := false
	for _, e := range events {
		loaded = loaded || e.Method == "Page.loadEventFired"
	}
	for !loaded {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatal("devtools connection closed before load")
			}
			events = append(events, m)
			loaded = m.Method == "Page.loadEventFired"
		case <-ctx.Done():
			t.Fatal("page did not load")
		}
	}
	// Let late errors arrive (a failed subresource, a CSP report).
	deadline := time.After(time.Second)
wait:
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				break wait
			}
			events = append(events, m)
		case <-deadline:
			break wait
		}
	}
	res := call("Runtime.evaluate", map[string]any{"expression": "document.body.innerText", "returnByValue": true})
	var ev struct {
		Result struct {
			Value string `json:"value"`
		} `json:"result"`
	}
	json.Unmarshal(res, &ev)
	for _, e := range events {
		switch e.Method {
		case "Runtime.exceptionThrown":
			problems = append(problems, "exception: "+string(e.Params))
		case "Runtime.consoleAPICalled":
			if bytes.Contains(e.Params, []byte(`"type":"error"`)) || bytes.Contains(e.Params, []byte(`"type":"assert"`)) {
				problems = append(problems, "console: "+string(e.Params))
			}
		case "Log.entryAdded":
			if bytes.Contains(e.Params, []byte(`"level":"error"`)) {
				problems = append(problems, "log: "+string(e.Params))
			}
		}
	}
	return ev.Result.Value, problems
}
