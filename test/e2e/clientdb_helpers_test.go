package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// clientVariant is one build of a client target (httpclient or dbclient).
type clientVariant struct {
	name string // e.g. "go126-stripped"
	exe  string
}

var clientBuilds struct {
	once     sync.Once
	err      error
	http, db []clientVariant
	skipped  []string
}

// buildClientTargets builds test/targets/httpclient and dbclient on every
// release (cached): httpclient stripped and cgo-linked externally, dbclient
// stripped; on Go 1.26 and 1.19 also plain (both) and PIE (httpclient).
func buildClientTargets(t *testing.T) ([]clientVariant, []clientVariant) {
	t.Helper()
	clientBuilds.once.Do(func() {
		var want []matrixBuild
		for _, m := range releases {
			fl := []string{"stripped", "extlink"}
			if m == 19 || m == 26 {
				fl = append(fl, "plain", "pie")
			}
			for _, f := range fl {
				want = append(want, matrixBuild{"httpclient", f, m})
			}
			want = append(want, matrixBuild{"dbclient", "stripped", m})
			if m == 19 || m == 26 {
				want = append(want, matrixBuild{"dbclient", "plain", m})
			}
		}
		vs, skipped, err := buildMatrix(env.ctx, want)
		if err != nil {
			clientBuilds.err = err
			return
		}
		clientBuilds.skipped = skipped
		for _, v := range vs {
			cv := clientVariant{name: v.name, exe: v.exe}
			if strings.Contains(filepath.Base(v.exe), "httpclient-") {
				clientBuilds.http = append(clientBuilds.http, cv)
			} else {
				clientBuilds.db = append(clientBuilds.db, cv)
			}
		}
	})
	if clientBuilds.err != nil {
		t.Fatal(clientBuilds.err)
	}
	requireMatrix(t, clientBuilds.skipped)
	return clientBuilds.http, clientBuilds.db
}

// lineProc is a target program driven through stdin whose stdout lines
// are collected.
type lineProc struct {
	cmd     *exec.Cmd
	pid     int
	service string
	stdin   io.WriteCloser
	stderr  *syncBuffer
	mu      sync.Mutex
	lines   []string
	done    chan struct{}
}

// startLineProc runs exe with args and OTEL_SERVICE_NAME=service and kills
// it when the test ends.
func startLineProc(t *testing.T, exe, service string, args ...string) *lineProc {
	t.Helper()
	p := &lineProc{service: service, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(exe, args...)
	p.cmd.Env = append(filteredEnv("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"), "OTEL_SERVICE_NAME="+service)
	p.cmd.Stderr = p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.pid = p.cmd.Process.Pid
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		p.cmd.Wait()
		close(p.done)
	}()
	stopAtDeadline(p.cmd.Process, p.done)
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	})
	return p
}

// send writes one command line.
func (p *lineProc) send(t *testing.T, cmd string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		t.Fatalf("%s: %v", p.service, err)
	}
}

// waitLine waits for an output line starting with prefix and returns it.
func (p *lineProc) waitLine(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	var got string
	ok := waitFor(timeout, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, l := range p.lines {
			if strings.HasPrefix(l, prefix) {
				got = l
				return true
			}
		}
		select {
		case <-p.done:
			return true
		default:
		}
		return false
	})
	if !ok || got == "" {
		t.Fatalf("%s: no line %q within %v; stderr:\n%s", p.service, prefix, timeout, p.stderr.String())
	}
	return got
}

// histCounts returns the counts of histogram name for service, keyed by the
// given labels' values joined with "|".
func (s *scrape) histCounts(name, service string, labels ...string) map[string]uint64 {
	out := map[string]uint64{}
	for _, se := range s.histograms[name] {
		if se.labels["service_name"] != service {
			continue
		}
		var vals []string
		for _, l := range labels {
			vals = append(vals, se.labels[l])
		}
		out[strings.Join(vals, "|")] += se.count
	}
	return out
}

func diffCounts(got, want map[string]uint64) string {
	var lines []string
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	for k := range keys {
		if got[k] != want[k] {
			lines = append(lines, fmt.Sprintf("  %s: got %d, want %d", k, got[k], want[k]))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// postgres is a PostgreSQL server of the test's own, on loopback.
type postgres struct {
	bin  string
	dir  string
	port string
}

// startPostgres initialises and starts a PostgreSQL server in a temporary
// directory as the postgres user, and stops it when the test ends. Missing
// binaries skip the test, or fail it with CI=true.
func startPostgres(t *testing.T) *postgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		if isCI() {
			t.Fatal("CI=true but PostgreSQL is not installed (make test-deps installs Debian's postgresql)")
		}
		t.Skip("PostgreSQL not installed (/usr/lib/postgresql/*/bin)")
	}
	sort.Strings(bins)
	pg := &postgres{bin: filepath.Dir(bins[len(bins)-1])}
	dir, err := os.MkdirTemp("", "blindspot-pg-")
	if err != nil {
		t.Fatal(err)
	}
	pg.dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	if out, err := exec.Command("chown", "postgres:postgres", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	os.Chmod(dir, 0o700)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, pg.port, _ = net.SplitHostPort(l.Addr().String())
	l.Close()
	data := filepath.Join(dir, "data")
	pg.run(t, "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
	pg.run(t, "pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-w", "-t", "30",
		"-o", fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %s -k %s -c fsync=off -c max_connections=100", pg.port, dir), "start")
	t.Cleanup(func() {
		cmd := pg.cmd("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
		cmd.Run()
	})
	return pg
}

func (pg *postgres) cmd(tool string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(env.ctx, 60*time.Second)
	_ = cancel // released when the command ends: the context expires anyway
	cmd := exec.CommandContext(ctx, filepath.Join(pg.bin, tool), args...)
	cmd.Dir = pg.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pgCredential()}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C", "LC_ALL=C"}
	return cmd
}

func (pg *postgres) run(t *testing.T, tool string, args ...string) {
	t.Helper()
	if out, err := pg.cmd(tool, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
}

// createDB creates a database and returns its DSN.
func (pg *postgres) createDB(t *testing.T, name string) string {
	t.Helper()
	pg.run(t, "createdb", "-h", "127.0.0.1", "-p", pg.port, "-U", "postgres", name)
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%s/%s?sslmode=disable", pg.port, name)
}

// pgCredential is the postgres user's uid and gid.
func pgCredential() *syscall.Credential {
	uid, gid := uint32(0), uint32(0)
	b, _ := os.ReadFile("/etc/passwd")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 3 && f[0] == "postgres" {
			fmt.Sscanf(f[2], "%d", &uid)
			fmt.Sscanf(f[3], "%d", &gid)
		}
	}
	return &syscall.Credential{Uid: uid, Gid: gid}
}
