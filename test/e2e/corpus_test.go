package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The corpus: third-party Go HTTP servers as Debian ships them (stripped,
// cgo, linked by the system linker, -trimpath; Go 1.19 in bookworm, 1.22-1.24
// in trixie, 1.24-1.27 in sid), unpacked by test/toolchains/fetch.sh deb and
// run on loopback. blindspot must count every request per method and status
// exactly as the client saw it, and report their runtime plausibly.
// docs/corpus.md lists the programs and the results.

// corpusRequest is one request of a program's fixed list.
type corpusRequest struct {
	method, path string
	body         string            // sent when not empty
	header       map[string]string // extra request headers
}

// corpusProgram is one Debian-built program of the corpus.
type corpusProgram struct {
	suite, pkg string
	exe        string   // the executable, relative to the unpacked package
	libs       []string // "suite/pkg" whose usr/lib/x86_64-linux-gnu the program needs
	// args writes whatever configuration the program needs into dir and
	// returns its command line to serve on addr (127.0.0.1:port) only.
	args  func(dir, addr string) []string
	ready string // a path that answers 2xx once the program serves
	// requests are sent in order, twice over; together they reach 2xx and
	// 4xx responses, and 3xx and 5xx where the program has them.
	requests []corpusRequest
	classes  string // the status classes requests must reach, e.g. "2345"
	// selfMetrics is the path of the program's own client_golang metrics
	// (go_goroutines, go_gc_duration_seconds), "" if it has none.
	selfMetrics string
	// webConfig: the program takes the Prometheus exporter-toolkit's
	// --web.config.file, so it can serve TLS, and HTTP/2 with it.
	webConfig bool
	// h2: serve over TLS and send every request over HTTP/2 (net/http's
	// own HTTP/2 server).
	h2 bool
	// privateTrust runs the program in a mount namespace of its own whose
	// system trust store directories are empty tmpfs: a program that may
	// install a CA root (caddy's PKI) cannot touch the host's.
	privateTrust bool
}

func (p corpusProgram) name() string {
	if p.h2 {
		return p.suite + "/" + p.pkg + "+h2"
	}
	return p.suite + "/" + p.pkg
}

func corpusGet(path string) corpusRequest  { return corpusRequest{method: "GET", path: path} }
func corpusHead(path string) corpusRequest { return corpusRequest{method: "HEAD", path: path} }

// corpusProgramsByPkg are the programs, by package; corpusPrograms pairs
// each with the suites it is tested from.
var corpusProgramsByPkg = map[string]corpusProgram{
	"prometheus": {
		exe: "usr/bin/prometheus",
		args: func(dir, addr string) []string {
			writeFile(dir, "prometheus.yml", "global:\n  scrape_interval: 1h\n")
			return []string{"--config.file=" + filepath.Join(dir, "prometheus.yml"),
				"--storage.tsdb.path=" + filepath.Join(dir, "data"), "--web.listen-address=" + addr}
		},
		ready: "/-/ready",
		requests: []corpusRequest{
			corpusGet("/-/ready"), corpusGet("/-/healthy"), corpusGet("/"), corpusGet("/graph"), corpusGet("/api/v1/query"),
			corpusGet("/api/v1/query?query=up"), corpusGet("/api/v1/query?query=up("), corpusGet("/api/v1/status/buildinfo"),
			corpusGet("/api/v1/labels"), corpusGet("/nope"), corpusGet("/api/v1/admin/tsdb/snapshot"),
			{method: "POST", path: "/api/v1/admin/tsdb/snapshot"}, {method: "POST", path: "/-/reload"},
			{method: "POST", path: "/api/v1/query", body: "query=1", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}},
			{method: "PUT", path: "/api/v1/query"}, corpusHead("/-/ready"), {method: "DELETE", path: "/api/v1/series"},
		},
		classes:     "2345",
		selfMetrics: "/metrics",
		webConfig:   true,
	},
	"caddy": {
		exe: "usr/bin/caddy",
		args: func(dir, addr string) []string {
			writeFile(dir, "Caddyfile", fmt.Sprintf(`{
	admin off
	auto_https off
}
http://%s {
	bind 127.0.0.1
	@post method POST
	respond @post "created" 201
	respond /ok "ok" 200
	redir /old /ok 301
	respond /teapot 418
	respond /boom 500
	respond "not here" 404
}
`, addr))
			return []string{"run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile"}
		},
		ready: "/ok",
		requests: []corpusRequest{
			corpusGet("/ok"), corpusHead("/ok"), corpusGet("/old"), corpusHead("/old"), corpusGet("/teapot"), corpusHead("/teapot"),
			corpusGet("/boom"), corpusHead("/boom"), corpusGet("/nope"), corpusHead("/nope"), {method: "POST", path: "/ok", body: "x"},
		},
		classes: "2345",
	},
	"webhook": {
		exe: "usr/bin/webhook",
		args: func(dir, addr string) []string {
			writeFile(dir, "hooks.json", `[
  {"id": "ok", "execute-command": "/bin/true", "response-message": "done"},
  {"id": "guarded", "execute-command": "/bin/true", "trigger-rule-mismatch-http-response-code": 403,
   "trigger-rule": {"match": {"type": "value", "value": "s3cret", "parameter": {"source": "header", "name": "X-Token"}}}},
  {"id": "fail", "execute-command": "/bin/false", "include-command-output-in-response": true, "include-command-output-in-response-on-error": true},
  {"id": "getonly", "execute-command": "/bin/true", "http-methods": ["GET"]}
]
`)
			host, port, _ := net.SplitHostPort(addr)
			return []string{"-hooks", filepath.Join(dir, "hooks.json"), "-ip", host, "-port", port}
		},
		ready: "/",
		requests: []corpusRequest{
			corpusGet("/"), corpusGet("/hooks/ok"), corpusGet("/hooks/nope"), corpusGet("/hooks/guarded"), corpusGet("/hooks/fail"),
			corpusGet("/hooks/getonly"), corpusGet("/nope"), {method: "POST", path: "/hooks/ok"},
			{method: "POST", path: "/hooks/guarded", header: map[string]string{"X-Token": "s3cret"}},
			{method: "POST", path: "/hooks/guarded"}, {method: "POST", path: "/hooks/getonly"}, corpusHead("/hooks/ok"),
			{method: "POST", path: "/hooks/fail"},
		},
		classes: "245",
	},
	"docker-registry": {
		exe: "usr/bin/docker-registry",
		args: func(dir, addr string) []string {
			writeFile(dir, "config.yml", fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
				filepath.Join(dir, "storage"), addr))
			return []string{"serve", filepath.Join(dir, "config.yml")}
		},
		ready: "/v2/",
		requests: []corpusRequest{
			corpusGet("/"), corpusGet("/v2/"), corpusGet("/v2/_catalog"), corpusGet("/v2/x/manifests/latest"), corpusGet("/v2/x/tags/list"),
			corpusGet("/nope"), {method: "POST", path: "/v2/x/blobs/uploads/"}, corpusHead("/v2/"), corpusHead("/v2/x/manifests/latest"),
			{method: "PUT", path: "/v2/x/manifests/latest", body: "garbage", header: map[string]string{"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"}},
			{method: "DELETE", path: "/v2/x/manifests/latest"},
		},
		classes: "24",
	},
	"etcd-server": {
		exe: "usr/bin/etcd",
		args: func(dir, addr string) []string {
			peer := freeAddr()
			return []string{"--data-dir", filepath.Join(dir, "data"), "--listen-client-urls", "http://" + addr,
				"--advertise-client-urls", "http://" + addr, "--listen-peer-urls", "http://" + peer,
				"--initial-advertise-peer-urls", "http://" + peer, "--initial-cluster", "default=http://" + peer}
		},
		ready: "/health",
		requests: []corpusRequest{
			corpusGet("/health"), corpusGet("/version"), corpusGet("/nope"), corpusGet("/v2/keys/x"), corpusGet("/v3/kv/range"), corpusGet("/debug/vars"),
			{method: "POST", path: "/v3/kv/put", body: `{"key":"Zm9v","value":"YmFy"}`},
			{method: "POST", path: "/v3/kv/range", body: `{"key":"Zm9v"}`}, {method: "POST", path: "/v3/kv/range", body: "garbage"},
			corpusHead("/health"), {method: "PUT", path: "/v2/keys/x", body: "value=1"},
		},
		classes:     "24",
		selfMetrics: "/metrics",
	},
	"rclone": {
		exe: "usr/bin/rclone",
		args: func(dir, addr string) []string {
			os.MkdirAll(filepath.Join(dir, "files", "sub"), 0o755)
			writeFile(dir, "files/a.txt", "hello\n")
			return []string{"serve", "http", filepath.Join(dir, "files"), "--addr", addr, "--config", filepath.Join(dir, "rclone.conf")}
		},
		ready: "/",
		requests: []corpusRequest{
			corpusGet("/"), corpusGet("/a.txt"), corpusGet("/nope"), corpusGet("/sub/"), corpusGet("/sub"), corpusGet("/a.txt/x"),
			{method: "GET", path: "/a.txt", header: map[string]string{"Range": "bytes=2-3"}},
			{method: "GET", path: "/a.txt", header: map[string]string{"Range": "bytes=100-200"}},
			corpusHead("/a.txt"), {method: "POST", path: "/a.txt"}, {method: "DELETE", path: "/a.txt"},
		},
		classes: "24",
	},
	"hugo": {
		exe:  "usr/bin/hugo",
		libs: []string{"bookworm/libsass1"},
		args: func(dir, addr string) []string {
			writeFile(dir, "site/hugo.toml", "title = \"corpus\"\ndisableKinds = [\"taxonomy\", \"term\", \"RSS\", \"sitemap\", \"robotsTXT\"]\n")
			writeFile(dir, "site/layouts/index.html", "<html><body>{{ .Title }}</body></html>\n")
			writeFile(dir, "site/static/hello.txt", "hi\n")
			host, port, _ := net.SplitHostPort(addr)
			return []string{"server", "--source", filepath.Join(dir, "site"), "--bind", host, "--port", port,
				"--disableLiveReload", "--renderToMemory", "--watch=false", "--baseURL", "http://" + addr + "/"}
		},
		ready: "/",
		requests: []corpusRequest{
			corpusGet("/"), corpusGet("/hello.txt"), corpusGet("/nope"), corpusGet("/index.html"), corpusHead("/"), {method: "POST", path: "/"}, corpusHead("/nope"),
		},
		classes: "234",
	},
	"prometheus-pushgateway": {
		exe:   "usr/bin/prometheus-pushgateway",
		args:  func(dir, addr string) []string { return []string{"--web.listen-address=" + addr} },
		ready: "/-/ready",
		requests: []corpusRequest{
			corpusGet("/-/ready"), corpusGet("/-/healthy"), corpusGet("/"), corpusGet("/nope"), corpusGet("/api/v1/status"), corpusGet("/api/v1/metrics"),
			{method: "PUT", path: "/metrics/job/x", body: "a_metric 1\n"}, {method: "POST", path: "/metrics/job/x", body: "garbage{\n"},
			{method: "POST", path: "/metrics/job/x", body: "b_metric 2\n"}, {method: "DELETE", path: "/metrics/job/x"},
			corpusHead("/-/healthy"), corpusGet("/metrics/job/x"),
		},
		classes:     "245",
		selfMetrics: "/metrics",
		webConfig:   true,
	},
	"ntfy": {
		exe: "usr/bin/ntfy",
		args: func(dir, addr string) []string {
			writeFile(dir, "server.yml", "")
			return []string{"serve", "--config", filepath.Join(dir, "server.yml"), "--listen-http", addr, "--base-url", "http://" + addr}
		},
		ready: "/v1/health",
		requests: []corpusRequest{
			corpusGet("/"), corpusGet("/v1/health"), corpusGet("/mytopic/json?poll=1"), corpusGet("/nope/x/y"), corpusGet("/v1/nope"), corpusGet("/docs"),
			corpusGet("/app.html"), {method: "POST", path: "/mytopic", body: "hi"}, {method: "PUT", path: "/mytopic", body: "hi"},
			{method: "POST", path: "/v1/account", body: "{}"}, corpusHead("/v1/health"), {method: "DELETE", path: "/mytopic"},
			{method: "POST", path: "/mytopic", body: "hi", header: map[string]string{"X-Priority": "9"}},
		},
		classes: "234",
	},
	"aptly": {
		exe: "usr/bin/aptly",
		args: func(dir, addr string) []string {
			writeFile(dir, "aptly.conf", fmt.Sprintf(`{"rootDir": %q}`, filepath.Join(dir, "root")))
			return []string{"-config=" + filepath.Join(dir, "aptly.conf"), "api", "serve", "-listen=" + addr, "-no-lock"}
		},
		ready: "/api/version",
	},
	"prometheus-node-exporter": {
		exe: "usr/bin/prometheus-node-exporter",
		args: func(dir, addr string) []string {
			return []string{"--web.listen-address=" + addr, "--collector.disable-defaults", "--collector.loadavg", "--collector.time"}
		},
		ready: "/",
		requests: []corpusRequest{
			corpusGet("/"), corpusGet("/nope"), corpusGet("/metrics?collect[]=loadavg"), corpusGet("/metrics?collect[]=nosuch"), corpusHead("/metrics"),
			{method: "POST", path: "/metrics"},
		},
		classes:     "24",
		selfMetrics: "/metrics",
		webConfig:   true,
	},
}

// corpusSuites lists, per suite, the packages tested from it; "+h2" tests
// the package over TLS and HTTP/2.
var corpusSuites = []struct {
	suite string
	pkgs  []string
}{
	{"bookworm", []string{"prometheus", "prometheus+h2", "caddy", "webhook", "docker-registry", "etcd-server", "rclone", "prometheus-pushgateway"}},
	{"trixie", []string{"hugo", "rclone", "prometheus", "prometheus-pushgateway", "prometheus-pushgateway+h2", "ntfy", "caddy", "docker-registry"}},
	{"sid", []string{"prometheus", "hugo", "rclone", "caddy", "prometheus-node-exporter", "prometheus-node-exporter+h2",
		"etcd-server", "webhook", "prometheus-pushgateway", "docker-registry"}},
}

// corpusExtraPackages are "suite/pkg" fetched with the corpus for tests
// beyond TestCorpus (distro_test.go, distro_routes_test.go): gRPC servers
// and their clients, programs that route with gin.
var corpusExtraPackages = []string{"bookworm/etcd-client", "trixie/etcd-server", "trixie/etcd-client", "sid/etcd-client",
	"bookworm/aptly", "trixie/aptly", "sid/aptly"}

func corpusPrograms() []corpusProgram {
	var out []corpusProgram
	for _, s := range corpusSuites {
		for _, name := range s.pkgs {
			pkg, h2 := strings.CutSuffix(name, "+h2")
			p, ok := corpusProgramsByPkg[pkg]
			if !ok || h2 && !p.webConfig {
				panic("corpus: no program " + name)
			}
			p.suite, p.pkg, p.h2 = s.suite, pkg, h2
			out = append(out, p)
		}
	}
	return out
}

func writeFile(dir, name, content string) {
	p := filepath.Join(dir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte(content), 0o644)
}

// freeAddr is freePort without a test.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:1"
	}
	defer l.Close()
	return l.Addr().String()
}

var corpusFetch struct {
	once sync.Once
	dirs map[string]string // "suite/pkg" → unpacked package
	errs map[string]error  // "suite/pkg" → why it could not be fetched
}

// fetchCorpus unpacks every package of the corpus (and the libraries they
// need) with test/toolchains/fetch.sh deb, one call per suite.
func fetchCorpus(t *testing.T) {
	corpusFetch.once.Do(func() {
		corpusFetch.dirs, corpusFetch.errs = map[string]string{}, map[string]error{}
		want := map[string][]string{}
		for _, key := range corpusExtraPackages {
			s, pkg, _ := strings.Cut(key, "/")
			want[s] = append(want[s], pkg)
		}
		for _, p := range corpusPrograms() {
			want[p.suite] = append(want[p.suite], p.pkg)
			for _, l := range p.libs {
				s, pkg, _ := strings.Cut(l, "/")
				want[s] = append(want[s], pkg)
			}
		}
		script := filepath.Join(env.repoRoot, "test", "toolchains", "fetch.sh")
		for suite, pkgs := range want {
			sort.Strings(pkgs)
			pkgs = compactStrings(pkgs)
			start := time.Now()
			ctx, cancel := context.WithTimeout(env.ctx, 10*time.Minute)
			cmd := exec.CommandContext(ctx, "bash", append([]string{script, "deb", suite}, pkgs...)...)
			stderr := &syncBuffer{}
			cmd.Stderr = stderr
			out, err := cmd.Output()
			cancel()
			dirs := strings.Fields(string(out))
			if err == nil && len(dirs) != len(pkgs) {
				err = fmt.Errorf("printed %d directories for %d packages", len(dirs), len(pkgs))
			}
			for i, pkg := range pkgs {
				if err != nil {
					corpusFetch.errs[suite+"/"+pkg] = fmt.Errorf("fetch.sh deb %s: %v: %s", suite, err, lastLines(stderr.String(), 5))
					continue
				}
				corpusFetch.dirs[suite+"/"+pkg] = dirs[i]
			}
			t.Logf("fetch.sh deb %s (%d packages): %v", suite, len(pkgs), time.Since(start).Round(time.Millisecond))
		}
	})
}

func compactStrings(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// corpusDir returns the unpacked package suite/pkg; a fetch failure skips
// the test, or fails it under CI=true.
func corpusDir(t *testing.T, key string) string {
	t.Helper()
	if err := corpusFetch.errs[key]; err != nil {
		if isCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return corpusFetch.dirs[key]
}

func TestCorpus(t *testing.T) {
	requireBPF(t)
	fetchCorpus(t)
	a := startAgent(t, "runtime:\n  interval: 200ms\n")
	for _, p := range corpusPrograms() {
		t.Run(p.name(), func(t *testing.T) {
			t.Parallel()
			runCorpusProgram(t, a, p)
		})
	}
}

// corpusProc is a running corpus program.
type corpusProc struct {
	cmd     *exec.Cmd
	pid     int
	addr    string
	scheme  string // http, or https for HTTP/2
	h2      bool   // every response must come over HTTP/2
	service string
	started time.Time
	out     *syncBuffer
	done    chan struct{}
	client  *http.Client
	mu      sync.Mutex
	counts  map[string]uint64 // "METHOD|status" as the client saw them
	classes map[byte]bool     // status classes seen ('2', '4', ...)
	protos  map[string]int    // responses per protocol (HTTP/1.1, HTTP/2.0)
}

// startCorpusProgram starts p on a free loopback port, as service
// cp.service, and waits until the agent instruments it.
func startCorpusProgram(t *testing.T, a *agentProc, p corpusProgram) (*corpusProc, *buildinfo.BuildInfo) {
	pkgDir := corpusDir(t, p.suite+"/"+p.pkg)
	src := filepath.Join(pkgDir, p.exe)
	var libPath []string
	for _, l := range p.libs {
		libPath = append(libPath, filepath.Join(corpusDir(t, l), "usr/lib/x86_64-linux-gnu"))
	}
	bi, err := buildinfo.ReadFile(src)
	if err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	ver, _ := os.ReadFile(filepath.Join(pkgDir, ".done"))
	t.Logf("%s (%s), built by %s", strings.TrimSpace(string(ver)), p.exe, bi.GoVersion)

	// The agent instruments executables directly in env.dir only.
	exe := filepath.Join(env.dir, "corpus-"+strings.ReplaceAll(p.name(), "/", "-"))
	if err := linkOrCopy(src, exe); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := freePort(t)
	args := p.args(dir, addr)
	transport := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2}
	scheme := "http"
	if p.h2 {
		certFile, keyFile, pool := tlsFiles(t, dir)
		writeFile(dir, "web.yml", fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\n", certFile, keyFile))
		args = append(args, "--web.config.file="+filepath.Join(dir, "web.yml"))
		transport.TLSClientConfig = &tls.Config{RootCAs: pool}
		transport.ForceAttemptHTTP2 = true
		scheme = "https"
	}
	cp := &corpusProc{
		addr:    addr,
		scheme:  scheme,
		h2:      p.h2,
		service: fmt.Sprintf("e2e-corpus-%s-%d", strings.NewReplacer("/", "-", "+", "-").Replace(p.name()), serviceSeq.Add(1)),
		out:     &syncBuffer{},
		done:    make(chan struct{}),
		counts:  map[string]uint64{},
		classes: map[byte]bool{},
		protos:  map[string]int{},
		client: &http.Client{
			Timeout:       10 * time.Second,
			Transport:     transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	cp.cmd = exec.Command(exe, args...)
	if p.privateTrust {
		// unshare and sh exec in place: the pid is the program's.
		cp.cmd = exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--", "sh", "-c",
			`for d in /usr/local/share/ca-certificates /etc/ssl/certs; do mount -t tmpfs -o size=1m none "$d" || exit 1; done; exec "$0" "$@"`,
			exe}, args...)...)
	}
	cp.cmd.Dir = dir
	cp.cmd.Env = append(filteredEnv("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "GOMAXPROCS", "GOGC", "GODEBUG", "HOME", "LD_LIBRARY_PATH"),
		"OTEL_SERVICE_NAME="+cp.service, "GOMAXPROCS=3", "GOGC=150", "HOME="+dir,
		"XDG_DATA_HOME="+filepath.Join(dir, "xdg-data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "xdg-config"),
		"XDG_CACHE_HOME="+filepath.Join(dir, "xdg-cache"), "LD_LIBRARY_PATH="+strings.Join(libPath, ":"))
	cp.cmd.Stdout, cp.cmd.Stderr = cp.out, cp.out
	cp.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cp.started = time.Now()
	if err := cp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cp.pid = cp.cmd.Process.Pid
	go func() { cp.cmd.Wait(); close(cp.done) }()
	stopAtDeadline(cp.cmd.Process, cp.done)
	t.Cleanup(func() {
		syscall.Kill(-cp.pid, syscall.SIGKILL) // the program and anything it started
		select {
		case <-cp.done:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			t.Logf("%s output (last lines):\n%s", p.name(), lastLines(cp.out.String(), 15))
		}
	})
	_, port, _ := net.SplitHostPort(addr)
	if !waitFor(30*time.Second, func() bool { return !cp.exited() && listening(port) }) {
		t.Fatalf("%s does not listen on %s (exited: %v): %s", p.name(), addr, cp.exited(), lastLines(cp.out.String(), 15))
	}
	ts := a.waitTargeted(t, cp.pid, 30*time.Second)
	if ts.GoVersion != bi.GoVersion {
		t.Errorf("/targets go_version %q, the binary's build info says %q", ts.GoVersion, bi.GoVersion)
	}

	return cp, bi
}

func runCorpusProgram(t *testing.T, a *agentProc, p corpusProgram) {
	cp, bi := startCorpusProgram(t, a, p)

	// Every response from here on is counted by the client.
	if !waitFor(30*time.Second, func() bool {
		code, err := cp.do(corpusRequest{method: "GET", path: p.ready})
		return err == nil && code/100 == 2
	}) {
		t.Fatalf("%s: GET %s not 2xx within 30s: %s", p.name(), p.ready, lastLines(cp.out.String(), 15))
	}
	for round := 0; round < 2; round++ {
		for _, r := range p.requests {
			code, _, err := cp.doBody(r)
			switch {
			case code == 0 && err != nil:
				t.Fatalf("%s %s: %v", r.method, r.path, err)
			case err != nil:
				// Counted: the handler answered (rclone 1.60 declares a
				// body on 416 and sends none).
				t.Logf("%s %s: %d, then reading the body: %v", r.method, r.path, code, err)
			}
		}
	}
	for _, c := range p.classes {
		if !cp.classes[byte(c)] {
			t.Errorf("no %cxx response among the requests: %v", c, cp.counts)
		}
	}
	if p.selfMetrics != "" {
		checkAgainstSelfMetrics(t, a, cp, p.selfMetrics)
	}
	cp.mu.Lock()
	if p.h2 && (len(cp.protos) != 1 || cp.protos["HTTP/2.0"] == 0) {
		t.Errorf("not every response came over HTTP/2: %v", cp.protos)
	}
	cp.mu.Unlock()

	// The agent's counts per method and status equal the client's.
	want := cp.snapshot()
	var got map[string]uint64
	ok := waitFor(10*time.Second, func() bool {
		s, err := a.scrape()
		if err != nil {
			return false
		}
		got = s.histCounts("http_server_request_duration_seconds", cp.service, "http_request_method", "http_response_status_code")
		return diffCounts(got, want) == ""
	})
	if ok {
		t.Logf("%d requests, counted exactly: %s", corpusTotal(want), formatCounts(want))
	} else {
		t.Errorf("%s (%s): http_server_request_duration_seconds counts differ from the client's (%d requests):\n%s\n%s",
			p.name(), bi.GoVersion, corpusTotal(want), diffCounts(got, want), corpusReport(a, cp))
	}
	// ...and per url_scheme and network_protocol_version, as the client
	// saw the responses.
	versions := map[string]string{"HTTP/1.0": "1.0", "HTTP/1.1": "1.1", "HTTP/2.0": "2"}
	wantProto := map[string]uint64{}
	cp.mu.Lock()
	for proto, n := range cp.protos {
		wantProto[cp.scheme+"|"+versions[proto]] += uint64(n)
	}
	cp.mu.Unlock()
	var gotProto map[string]uint64
	waitFor(5*time.Second, func() bool {
		s, err := a.scrape()
		if err != nil {
			return false
		}
		gotProto = s.histCounts("http_server_request_duration_seconds", cp.service, "url_scheme", "network_protocol_version")
		return diffCounts(gotProto, wantProto) == ""
	})
	if d := diffCounts(gotProto, wantProto); d != "" {
		t.Errorf("%s (%s): counts by url_scheme|network_protocol_version differ from the client's:\n%s", p.name(), bi.GoVersion, d)
	}
	checkCorpusRuntime(t, a, cp)
}

// linkOrCopy makes dst the same executable as src.
func linkOrCopy(src, dst string) error {
	os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// listening reports whether a TCP socket listens on port (any address),
// without connecting to it.
func listening(port string) bool {
	n, err := strconv.Atoi(port)
	if err != nil {
		return false
	}
	hexPort := fmt.Sprintf(":%04X", n)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) > 3 && strings.HasSuffix(fs[1], hexPort) && fs[3] == "0A" {
				return true
			}
		}
	}
	return false
}

func (cp *corpusProc) exited() bool {
	select {
	case <-cp.done:
		return true
	default:
		return false
	}
}

// do sends one request and counts its status; a request without a
// response is an error (the server's side of it is unknown).
func (cp *corpusProc) do(r corpusRequest) (int, error) {
	code, _, err := cp.doBody(r)
	return code, err
}

func (cp *corpusProc) doBody(r corpusRequest) (int, string, error) {
	ctx, cancel := context.WithTimeout(env.ctx, 10*time.Second)
	defer cancel()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, cp.scheme+"://"+cp.addr+r.path, body)
	if err != nil {
		return 0, "", err
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := cp.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	cp.mu.Lock()
	cp.counts[r.method+"|"+strconv.Itoa(resp.StatusCode)]++
	cp.classes[strconv.Itoa(resp.StatusCode)[0]] = true
	cp.protos[resp.Proto]++
	cp.mu.Unlock()
	return resp.StatusCode, string(b), err
}

func (cp *corpusProc) snapshot() map[string]uint64 {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	out := map[string]uint64{}
	for k, v := range cp.counts {
		out[k] = v
	}
	return out
}

// formatCounts renders "METHOD|status" counts sorted, e.g. "GET 200×4 GET 404×2".
func formatCounts(m map[string]uint64) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", strings.Replace(k, "|", " ", 1), m[k]))
	}
	return strings.Join(parts, ", ")
}

func corpusTotal(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// corpusReport is what the agent says about one program: its /targets
// entry, its HTTP series and the agent's own counters.
func corpusReport(a *agentProc, cp *corpusProc) string {
	var b strings.Builder
	if ts := a.findTarget(cp.pid); ts != nil {
		j, _ := json.Marshal(ts)
		fmt.Fprintf(&b, "/targets: %s\n", j)
	} else {
		sk, _ := a.get("/targets?state=skipped")
		fmt.Fprintf(&b, "not in /targets; skipped: %s\n", sk)
	}
	s, err := a.scrape()
	if err != nil {
		fmt.Fprintf(&b, "scrape: %v\n", err)
		return b.String()
	}
	var lines []string
	for _, se := range s.histograms["http_server_request_duration_seconds"] {
		if se.labels["service_name"] == cp.service {
			lines = append(lines, fmt.Sprintf("  http_server_request_duration_seconds{method=%q status=%q route=%q error_type=%q} count=%d",
				se.labels["http_request_method"], se.labels["http_response_status_code"], se.labels["http_route"], se.labels["error_type"], se.count))
		}
	}
	for _, name := range []string{"blindspot_events_total", "blindspot_events_invalid_total", "blindspot_probe_errors_total", "blindspot_events_unattributed_total"} {
		for _, se := range s.gauges[name] {
			if se.sum != 0 {
				lines = append(lines, fmt.Sprintf("  %s%v %v", name, se.labels, se.sum))
			}
		}
	}
	sort.Strings(lines)
	b.WriteString("scrape (this program's HTTP series; agent counters, all programs):\n")
	b.WriteString(strings.Join(lines, "\n"))
	return b.String()
}

// selfMetric reads one sample of the program's own Prometheus metrics
// (counted like every other request).
func (cp *corpusProc) selfMetric(t *testing.T, path, name string) float64 {
	t.Helper()
	code, body, err := cp.doBody(corpusRequest{method: "GET", path: path})
	if err != nil || code != 200 {
		t.Fatalf("GET %s: %d %v", path, code, err)
	}
	for _, line := range strings.Split(body, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				return v
			}
		}
	}
	t.Fatalf("no %s in the program's %s", name, path)
	return 0
}

// checkAgainstSelfMetrics compares the agent's runtime metrics with what
// the program's own client_golang collectors say: the GC cycle count lies
// between two readings of the program's, and the goroutine counts are
// close (both move with our connections).
func checkAgainstSelfMetrics(t *testing.T, a *agentProc, cp *corpusProc, path string) {
	t.Helper()
	if !waitFor(10*time.Second, func() bool {
		_, ok1 := a.gauge(t, "go_goroutine_count", cp.service, nil)
		_, ok2 := a.gauge(t, "go_memory_gc_cycles_total", cp.service, nil)
		return ok1 && ok2
	}) {
		t.Errorf("no go_goroutine_count or go_memory_gc_cycles_total within 10s")
		return
	}
	p1 := cp.selfMetric(t, path, "go_gc_duration_seconds_count")
	var got float64
	waitFor(5*time.Second, func() bool {
		got, _ = a.gauge(t, "go_memory_gc_cycles_total", cp.service, nil)
		return got >= p1
	})
	p2 := cp.selfMetric(t, path, "go_gc_duration_seconds_count")
	if got < p1 || got > p2 {
		t.Errorf("go_memory_gc_cycles_total %v, the program's own go_gc_duration_seconds_count went %v → %v", got, p1, p2)
	}
	g := cp.selfMetric(t, path, "go_goroutines")
	ag, ok := a.gauge(t, "go_goroutine_count", cp.service, nil)
	if !ok || math.Abs(ag-g) > 10+g/4 {
		t.Errorf("go_goroutine_count %v (present %v), the program's own go_goroutines %v", ag, ok, g)
	}
}

// checkCorpusRuntime checks that the runtime and process metrics of the
// program are present and plausible: GOMAXPROCS and GOGC as we set them,
// CPU time between two readings of /proc, counts within sane bounds.
func checkCorpusRuntime(t *testing.T, a *agentProc, cp *corpusProc) {
	t.Helper()
	required := []string{"go_goroutine_count", "go_memory_gc_cycles_total", "go_processor_limit", "go_config_gogc_percent",
		"process_memory_usage_bytes", "process_memory_virtual_bytes", "process_thread_count",
		"process_unix_file_descriptor_count", "process_uptime_seconds"}
	var s *scrape
	var missing []string
	waitFor(10*time.Second, func() bool {
		var err error
		if s, err = a.scrape(); err != nil {
			return false
		}
		missing = nil
		for _, m := range required {
			if _, ok := s.value(m, map[string]string{"service_name": cp.service}); !ok {
				missing = append(missing, m)
			}
		}
		for _, mode := range []string{"user", "system"} {
			if _, ok := s.value("process_cpu_time_seconds_total", map[string]string{"service_name": cp.service, "cpu_mode": mode}); !ok {
				missing = append(missing, "process_cpu_time_seconds_total{cpu_mode="+mode+"}")
			}
		}
		return len(missing) == 0
	})
	if s == nil {
		t.Fatal("no scrape")
	}
	if len(missing) > 0 {
		t.Errorf("runtime metrics missing: %v", missing)
	}
	v := func(name string) (float64, bool) {
		return s.value(name, map[string]string{"service_name": cp.service})
	}
	within := func(name string, lo, hi float64) {
		if x, ok := v(name); ok && (x < lo || x > hi || math.IsNaN(x)) {
			t.Errorf("%s = %v, want within [%v, %v]", name, x, lo, hi)
		}
	}
	within("go_goroutine_count", 2, 100000)
	within("go_memory_gc_cycles_total", 0, 1e6)
	within("go_processor_limit", 3, 3)
	within("go_config_gogc_percent", 150, 150)
	within("process_memory_usage_bytes", 1<<20, 16<<30)
	within("process_thread_count", 1, 10000)
	within("process_uptime_seconds", 0, time.Since(cp.started).Seconds()+2)
	within("go_memory_gc_goal_bytes", 4<<20, 64<<30) // optional metrics: checked where present
	if vm, ok := v("process_memory_virtual_bytes"); ok {
		if rss, _ := v("process_memory_usage_bytes"); vm < rss {
			t.Errorf("process_memory_virtual_bytes %v < process_memory_usage_bytes %v", vm, rss)
		}
		within("go_memory_used_bytes", 1, vm)
	}
	if fds, ok := v("process_unix_file_descriptor_count"); ok {
		n, _ := fdCount(cp.pid)
		if fds < 3 || math.Abs(fds-float64(n)) > 20 {
			t.Errorf("process_unix_file_descriptor_count %v, /proc/%d/fd has %d", fds, cp.pid, n)
		}
	}
	if cycles, ok := v("go_memory_gc_cycles_total"); ok && cycles > 0 {
		var pauses uint64
		found := false
		for _, se := range s.histograms["blindspot_go_gc_pause_duration_seconds"] {
			if se.labels["service_name"] == cp.service {
				pauses, found = se.count, true
			}
		}
		if !found || float64(pauses) > cycles {
			t.Errorf("blindspot_go_gc_pause_duration_seconds count %d (present %v) with %v GC cycles", pauses, found, cycles)
		}
	}

	// CPU time: between two readings of /proc/PID/stat (10 ms ticks).
	cpu := func() (float64, bool) {
		s, err := a.scrape()
		if err != nil {
			return 0, false
		}
		u, ok1 := s.value("process_cpu_time_seconds_total", map[string]string{"service_name": cp.service, "cpu_mode": "user"})
		sy, ok2 := s.value("process_cpu_time_seconds_total", map[string]string{"service_name": cp.service, "cpu_mode": "system"})
		return u + sy, ok1 && ok2
	}
	c1 := procCPU(t, cp.pid).Seconds()
	var got float64
	waitFor(5*time.Second, func() bool {
		var ok bool
		got, ok = cpu()
		return ok && got >= c1-0.011
	})
	c2 := procCPU(t, cp.pid).Seconds()
	if got < c1-0.011 || got > c2+0.011 {
		t.Errorf("process_cpu_time_seconds_total (user+system) %v, /proc/%d/stat said %v then %v", got, cp.pid, c1, c2)
	}
}
