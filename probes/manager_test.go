package probes

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// requireBPF skips without root, except in CI where it must work.
func requireBPF(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("probe tests need root in CI")
		}
		t.Skip("probe tests need root")
	}
}

// startServer builds and starts testdata/server, returning its PID,
// executable and base URL.
func startServer(t *testing.T) (int, string, string) {
	t.Helper()
	dir := t.TempDir()
	exe := filepath.Join(dir, "server")
	build := exec.Command("go", "build", "-o", exe, ".")
	build.Dir = "testdata/server"
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
