// Package testserver runs, for the probes' tests, the small net/http
// server in probes/testdata/server as a real process to attach to.
package testserver

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// RequireBPF skips a test without root, except in CI where it must run.
func RequireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("probe tests need root in CI")
		}
		t.Skip("probe tests need root")
	}
}

// Start builds and starts the server, killed when the test ends, and
// returns its PID, executable and base URL.
func Start(t testing.TB) (pid int, exe, url string) {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no source path for the test server")
	}
	exe = filepath.Join(t.TempDir(), "server")
	build := exec.Command("go", "build", "-o", exe, ".")
	build.Dir = filepath.Join(filepath.Dir(self), "..", "..", "testdata", "server")
	build.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build server: %v\n%s", err, out)
	}
	cmd := exec.Command(exe)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("read server address: %v", err)
	}
	return cmd.Process.Pid, exe, "http://" + strings.TrimSpace(line)
}
