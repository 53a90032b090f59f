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
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// runAgentOnce runs the agent binary bin with args to completion (10s at
// most) and returns its exit code, stdout and stderr.
func runAgentOnce(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(env.ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %v still running after 10s", bin, args)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// fetchFamilies GETs url and parses the text exposition.
func fetchFamilies(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := agentClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return fams
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// TestAgentHelpAndBadFlags runs the built agent with --help and with bad
// flags.
func TestAgentHelpAndBadFlags(t *testing.T) {
	code, out, errOut := runAgentOnce(t, env.agent, "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d\n%s", code, errOut)
	}
	for _, f := range []string{"web.listen-address", "web.config.file", "web.systemd-socket", "web.telemetry-path",
		"web.disable-exporter-metrics", "log.level", "log.format", "config", "demo", "version"} {
		if !strings.Contains(out, "--"+f+"=") && !strings.Contains(out, "--[no-]"+f+" ") {
			t.Errorf("--help does not list %s:\n%s", f, out)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--log.format=xml"}, "xml"},
		{[]string{"--log.level=chatty"}, "chatty"},
		{[]string{"--web.telemetry-path=/healthz"}, "--web.telemetry-path"},
		{[]string{"--web.telemetry-path=metrics"}, "--web.telemetry-path"},
		{[]string{"--no-such-flag"}, "--no-such-flag"},
	} {
		code, out, errOut := runAgentOnce(t, env.agent, tc.args...)
		lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
		if code == 0 || out != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "blindspot: ") || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want a non-zero exit and one line \"blindspot: ...\" naming %q", tc.args, code, out, errOut, tc.want)
		}
	}
}

// TestAgentVersionFromMakefile builds the agent the way `make build` (and
// so `make image`) does and checks that --version and blindspot_build_info
// carry the version, revision, branch, build user and date, Go version and
// platform given at link time.
func TestAgentVersionFromMakefile(t *testing.T) {
	requireBPF(t)
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", env.repoRoot}, args...)...).Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	rev, branch := git("rev-parse", "HEAD"), git("rev-parse", "--abbrev-ref", "HEAD")
	bin := filepath.Join(t.TempDir(), "blindspot")
	ctx, cancel := context.WithTimeout(env.ctx, 5*time.Minute)
	defer cancel()
	mk := exec.CommandContext(ctx, "make", "-C", env.repoRoot, "build", "BIN="+bin, "VERSION=9.8.7-e2e", "GO="+goCommand())
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	goVersion, err := exec.Command(goCommand(), "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runAgentOnce(t, bin, "--version")
	if code != 0 || errOut != "" {
		t.Fatalf("--version: exit %d, stderr %q", code, errOut)
	}
	t.Logf("--version:\n%s", out)
	want := []string{
		fmt.Sprintf("blindspot, version 9.8.7-e2e (branch: %s, revision: %s)", branch, rev),
		"build user:       ",
		"go version:       " + strings.TrimSpace(string(goVersion)),
		"platform:         " + runtime.GOOS + "/" + runtime.GOARCH,
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("--version lacks %q", w)
		}
	}
	if strings.Contains(out, "build user:       \n") {
		t.Errorf("--version has no build user")
	}
	// make's date (UTC, promu's layout): today's, or yesterday's when the
	// build straddled midnight.
	now := time.Now().UTC()
	if !strings.Contains(out, "build date:       "+now.Format("20060102")+"-") && !strings.Contains(out, "build date:       "+now.AddDate(0, 0, -1).Format("20060102")+"-") {
		t.Errorf("--version has no build date of today (UTC, YYYYMMDD-hh:mm:ss)")
	}

	// The same binary as an agent: blindspot_build_info on a scrape.
	// sh runs bin with the agent's arguments ($0 is env.agent, unused).
	a := startAgentCmd(t, []string{"sh", "-c", `exec "` + bin + `" "$@"`}, "", nil, "http", agentClient, "", "")
	fams := fetchFamilies(t, "http://"+a.addr+"/metrics")
	bi := fams["blindspot_build_info"]
	if bi == nil || len(bi.Metric) != 1 || bi.Metric[0].GetGauge().GetValue() != 1 {
		t.Fatalf("blindspot_build_info = %v", bi)
	}
	got := labelsOf(bi.Metric[0])
	for k, v := range map[string]string{"version": "9.8.7-e2e", "revision": rev, "branch": branch,
		"goversion": strings.TrimSpace(string(goVersion)), "goos": runtime.GOOS, "goarch": runtime.GOARCH} {
		if got[k] != v {
			t.Errorf("blindspot_build_info %s=%q, want %q (labels %v)", k, got[k], v, got)
		}
	}
}

// clientGolangOwn are series of client_golang's Go and process collectors:
// on the agent's scrape they can only be the agent's own.
var clientGolangOwn = []string{"go_goroutines", "go_gc_duration_seconds", "go_memstats_alloc_bytes", "go_threads",
	"process_cpu_seconds_total", "process_open_fds", "process_resident_memory_bytes"}

// TestAgentTelemetryFlags runs the built agent with --web.telemetry-path,
// --web.disable-exporter-metrics and --log.format=json, and without them.
func TestAgentTelemetryFlags(t *testing.T) {
	requireBPF(t)
	t.Run("defaults", func(t *testing.T) {
		a := startAgent(t, "")
		fams := fetchFamilies(t, "http://"+a.addr+"/metrics")
		for _, n := range append(clientGolangOwn, "blindspot_build_info") {
			if fams[n] == nil {
				t.Errorf("/metrics lacks %s", n)
			}
		}
		// logfmt by default.
		if !strings.Contains(a.stderr.String(), `msg="blindspot started"`) {
			t.Errorf("no logfmt start-up line:\n%s", a.stderr.String())
		}
	})
	t.Run("path_disable_json", func(t *testing.T) {
		a := startAgentWith(t, "", []string{"--web.telemetry-path=/agent/metrics", "--web.disable-exporter-metrics", "--log.format=json"}, "http", agentClient, "", "")
		fams := fetchFamilies(t, "http://"+a.addr+"/agent/metrics")
		for _, n := range clientGolangOwn {
			if fams[n] != nil {
				t.Errorf("--web.disable-exporter-metrics: the agent's own %s is still scraped", n)
			}
		}
		for _, n := range []string{"blindspot_build_info", "blindspot_targets", "blindspot_events_total"} {
			if fams[n] == nil {
				t.Errorf("/agent/metrics lacks %s", n)
			}
		}
		resp, err := agentClient.Get("http://" + a.addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /metrics with --web.telemetry-path=/agent/metrics: %s, want 404", resp.Status)
		}
		// Every log line is a JSON object with a level and a message.
		a.stop(syscall.SIGTERM, 10*time.Second)
		sc := bufio.NewScanner(strings.NewReader(a.stderr.String()))
		n := 0
		for sc.Scan() {
			var line map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line["level"] == nil || line["msg"] == nil {
				t.Errorf("--log.format=json: log line %q is not a JSON record (%v)", sc.Text(), err)
			}
			n++
		}
		if n < 2 || !strings.Contains(a.stderr.String(), `"msg":"blindspot started"`) {
			t.Errorf("--log.format=json: %d lines, want the start-up line among them:\n%s", n, a.stderr.String())
		}
	})
}

// TestAgentSystemdSocket runs the agent under systemd-socket-activate, as a
// blindspot.socket unit would: it serves on the socket it is passed.
func TestAgentSystemdSocket(t *testing.T) {
	requireBPF(t)
	activate := requireTool(t, "/usr/bin/systemd-socket-activate", "systemd")
	cfg := filepath.Join(t.TempDir(), "blindspot.yaml")
	if err := os.WriteFile(cfg, []byte(agentConfig("")), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	cmd := exec.Command(activate, "-l", addr, env.agent, "--web.systemd-socket", "--config", cfg)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stopAtDeadline(cmd.Process, done)
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM) // systemd-socket-activate execs the agent: same pid
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("agent did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("output:\n%s", out.String())
		}
	}()
	// The socket is systemd-socket-activate's; the agent starts on the
	// first connection and must answer it.
	if !waitFor(5*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("nothing listens on %s", addr)
	}
	var fams map[string]*dto.MetricFamily
	if !waitFor(20*time.Second, func() bool {
		resp, err := agentClient.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}) {
		t.Fatalf("no /healthz through the passed socket")
	}
	fams = fetchFamilies(t, "http://"+addr+"/metrics")
	if fams["blindspot_build_info"] == nil {
		t.Errorf("/metrics through the passed socket lacks blindspot_build_info")
	}
	if !strings.Contains(out.String(), "blindspot started") || !strings.Contains(out.String(), addr) {
		t.Errorf("the start-up log does not name the passed socket %s:\n%s", addr, out.String())
	}
}
