package discover

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root in CI")
		}
		t.Skip("needs root")
	}
}

// The exec program, run through BPF_PROG_TEST_RUN, reports the calling
// process.
func TestExecProgramReportsProcess(t *testing.T) {
	requireRoot(t)
	var objs execObjects
	if err := loadExecObjects(&objs, nil); err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	rd, err := ringbuf.NewReader(objs.Execs)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	// sched_process_exec's raw arguments: task, old pid, bprm.
	if _, err := objs.OnExec.Run(&ebpf.RunOptions{Context: make([]byte, 3*8)}); err != nil {
		t.Fatal(err)
	}
	rd.SetDeadline(time.Now().Add(2 * time.Second))
	rec, err := rd.Read()
	if err != nil {
		t.Fatal(err)
	}
	b := rec.RawSample
	pid := int(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
	if pid != os.Getpid() {
		t.Fatalf("reported pid %d, want %d", pid, os.Getpid())
	}
}

func find(evs []Event, kind EventKind, pid int) (Process, bool) {
	for _, ev := range evs {
		if ev.Kind == kind && ev.Process.PID == pid {
			return ev.Process, true
		}
	}
	return Process{}, false
}

// Scan reports starts, execs in place and exits.
func TestScanFollowsProcesses(t *testing.T) {
	w := NewScanner()
	w.Scan(nil) // everything already running
	cmd := exec.Command("/bin/sh", "-c", "read x; exec sleep 30")
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	p, ok := find(w.Scan(nil), Started, pid)
	if !ok {
		t.Fatal("new process not reported")
	}
	if p.StartTicks == 0 || p.File.Ino == 0 || !strings.HasSuffix(p.ExePath, "/exe") {
		t.Fatalf("process read incompletely: %+v", p)
	}
	if evs := w.Scan(nil); len(evs) != 0 {
		for _, ev := range evs {
			if ev.Process.PID == pid {
				t.Fatalf("unchanged process reported again: %+v", ev)
			}
		}
	}
	stdin.Write([]byte("go\n"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs := w.Scan(map[int]bool{pid: true})
		if _, ok := find(evs, Exited, pid); ok {
			np, ok := find(evs, Started, pid)
			if !ok || !strings.Contains(np.Exe, "sleep") {
				t.Fatalf("exec in place: new image not reported: %+v", evs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("exec in place not reported")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, ok := find(w.Scan(nil), Exited, pid); !ok {
		t.Fatal("exit not reported")
	}
}

func TestEnviron(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.Env = []string{"OTEL_SERVICE_NAME=checkout", "OTHER=1"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// Until its exec completes the child still shows the test's environment.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)); strings.HasSuffix(exe, "/sleep") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sleep did not exec")
		}
		time.Sleep(5 * time.Millisecond)
	}
	env := Environ(cmd.Process.Pid, "OTEL_SERVICE_NAME", "MISSING")
	if env["OTEL_SERVICE_NAME"] != "checkout" || len(env) != 1 {
		t.Fatalf("Environ = %v", env)
	}
}
