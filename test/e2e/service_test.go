package e2e

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestService checks deploy/blindspot.service: systemd-analyze verify
// accepts it, it grants exactly the capabilities cmd/agent/checks.go
// declares and locks the rest down, and its command line starts an agent
// that runs with only those capabilities.
func TestService(t *testing.T) {
	analyze := requireTool(t, "/usr/bin/systemd-analyze", "systemd")
	unitPath := filepath.Join(env.repoRoot, "deploy/blindspot.service")
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	keys := unitKeys(t, string(unit))
	caps := declaredCaps(t)
	want := slices.Clone(caps)
	slices.Sort(want)
	for _, k := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		got := strings.Fields(keys[k])
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s=%s, want the capabilities of cmd/agent/checks.go: %s", k, keys[k], strings.Join(caps, " "))
		}
	}
	for k, v := range map[string]string{
		"NoNewPrivileges":       "yes",
		"ProtectSystem":         "strict",
		"ProtectHome":           "read-only",
		"PrivateTmp":            "yes",
		"PrivateDevices":        "yes",
		"ProtectKernelTunables": "yes",
		"ProtectKernelModules":  "yes",
		"ProtectControlGroups":  "yes",
		"ProtectProc":           "default", // programs of every user must stay visible
		"RestrictSUIDSGID":      "yes",
	} {
		if keys[k] != v {
			t.Errorf("%s=%q, want %q", k, keys[k], v)
		}
	}
	for _, k := range []string{"User", "DynamicUser", "ReadWritePaths", "ProcSubset"} {
		if v, ok := keys[k]; ok {
			t.Errorf("%s=%s set: the tested set-up is root's user id with only the declared capabilities, writing nothing", k, v)
		}
	}
	const bin = "/usr/local/bin/blindspot"
	if !strings.HasPrefix(keys["ExecStart"], bin+" ") {
		t.Fatalf("ExecStart=%s, want %s ...", keys["ExecStart"], bin)
	}

	// systemd-analyze verify wants the binary to exist: verify a copy of
	// the unit pointing at the agent the tests built.
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "blindspot.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(unit), bin, env.agent)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(env.ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, "verify", copyPath).CombinedOutput()
	if err != nil || strings.Contains(string(out), "blindspot.service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// ExecStart's flags start the agent with only the unit's capabilities
	// (on a free port, with an empty configuration).
	requireBPF(t)
	setpriv := requireTool(t, "/usr/bin/setpriv", "util-linux")
	cfg := filepath.Join(dir, "blindspot.yaml")
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	args := strings.Fields(keys["ExecStart"])
	for i, a := range args {
		switch {
		case a == bin:
			args[i] = env.agent
		case a == "/etc/blindspot/blindspot.yaml":
			args[i] = cfg
		case a == ":9464":
			args[i] = addr
		}
	}
	if !slices.Contains(args, cfg) || !slices.Contains(args, addr) {
		t.Fatalf("ExecStart=%s: want --config /etc/blindspot/blindspot.yaml and --web.listen-address :9464", keys["ExecStart"])
	}
	cmd := exec.Command(setpriv, append(setprivArgs(setpriv, strings.Fields(keys["CapabilityBoundingSet"]))[1:], args...)...)
	cmd.Dir = "/"
	stderr := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stopAtDeadline(cmd.Process, done)
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("agent did not stop within 10s of SIGTERM")
		}
	}()
	if !waitFor(15*time.Second, func() bool {
		select {
		case <-done:
			return true
		default:
		}
		resp, err := agentClient.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200 && strings.TrimSpace(string(b)) == "ok"
	}) {
		t.Fatalf("agent from ExecStart not healthy within 15s:\n%s", stderr.String())
	}
	select {
	case <-done:
		t.Fatalf("agent from ExecStart exited:\n%s", stderr.String())
	default:
	}
	if got, want := capEff(t, cmd.Process.Pid), capMask(t, caps); got != want {
		t.Errorf("agent's effective capabilities %#x, want %#x", got, want)
	}
}

// unitKeys returns the Key=value lines of a systemd unit (the last of a
// repeated key), without comments or section headers.
func unitKeys(t *testing.T, unit string) map[string]string {
	t.Helper()
	keys := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(unit))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";") || strings.HasPrefix(l, "[") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("unit line %q is not Key=value", l)
		}
		keys[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return keys
}
