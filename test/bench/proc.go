//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuTime returns the user+system CPU time a process has used so far, all
// of its threads included.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. Field 3 (state) is then index 0, utime (14) index 11
	// and stime (15) index 12.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// statusField returns a field of /proc/PID/status ("VmRSS", "Cpus_allowed_list").
func statusField(pid int, name string) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == name {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("/proc/%d/status: no %s", pid, name)
}

// rssBytes returns a process's resident set (VmRSS).
func rssBytes(pid int) (uint64, error) {
	v, err := statusField(pid, "VmRSS")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(v, " kB"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("VmRSS %q: %w", v, err)
	}
	return n << 10, nil
}

func cpuSet(cpus ...int) *unix.CPUSet {
	var s unix.CPUSet
	for _, c := range cpus {
		s.Set(c)
	}
	return &s
}

// pinSelf moves every thread of this process to cpu (unless cpu < 0) and
// gives it the nice value nice. Threads the runtime starts later, and the
// processes they start, inherit both from the thread that creates them.
func pinSelf(cpu, nice int) error {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cpu >= 0 {
			if err := unix.SchedSetaffinity(tid, cpuSet(cpu)); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, err)
			}
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("set nice %d on thread %d: %w", nice, tid, err)
		}
	}
	if cpu >= 0 {
		runtime.GOMAXPROCS(1)
	}
	return nil
}

// child is a process the benchmark started.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited and been reaped
}

func (c *child) Pid() int { return c.cmd.Process.Pid }

// Exited says whether the process has ended.
func (c *child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// children are the processes still running; killAll ends them whatever
// happens.
var children struct {
	sync.Mutex
	m map[*child]bool
}

// startPinned starts cmd restricted to cpus: the child inherits the CPU
// affinity of the thread that forks it, so the forking thread is pinned
// for the duration of Start. The child is also killed if the benchmark
// dies.
func startPinned(cmd *exec.Cmd, cpus ...int) (*child, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, err
	}
	if err := unix.SchedSetaffinity(0, cpuSet(cpus...)); err != nil {
		return nil, fmt.Errorf("set affinity %v: %w", cpus, err)
	}
	err := cmd.Start()
	if rerr := unix.SchedSetaffinity(0, &old); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(c.done) }()
	children.Lock()
	if children.m == nil {
		children.m = map[*child]bool{}
	}
	children.m[c] = true
	children.Unlock()
	return c, nil
}

// stop asks the child to end with SIGTERM, waits up to grace, then kills
// it.
func (c *child) stop(grace time.Duration) {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.cmd.Process.Kill()
		<-c.done
	}
	children.Lock()
	delete(children.m, c)
	children.Unlock()
}

// killAll kills every child still running, each by its own pid.
func killAll() {
	children.Lock()
	defer children.Unlock()
	for c := range children.m {
		c.cmd.Process.Kill()
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
		}
		delete(children.m, c)
	}
}

// startTarget starts the HTTP server pinned to cpu and returns its address.
func startTarget(ctx context.Context, path string, cpu int, logFile string, args ...string) (*child, string, error) {
	cmd := exec.Command(path, append([]string{"-listen", "127.0.0.1:0"}, args...)...)
	stderr, err := os.Create(logFile)
	if err != nil {
		return nil, "", err
	}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	c, err := startPinned(cmd, cpu)
	if err != nil {
		return nil, "", fmt.Errorf("start target: %w", err)
	}
	type res struct {
		line string
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		ch <- res{line, err}
		io.Copy(io.Discard, out)
	}()
	select {
	case r := <-ch:
		addr, ok := strings.CutPrefix(strings.TrimSpace(r.line), "listening ")
		if !ok {
			return c, "", fmt.Errorf("target did not start (%v, %q); see %s", r.err, r.line, logFile)
		}
		return c, addr, nil
	case <-time.After(10 * time.Second):
		return c, "", errors.New("target did not print its address within 10s")
	case <-ctx.Done():
		return c, "", ctx.Err()
	}
}

// otherAgents lists other running blindspot agents: one started without an
// include list would instrument the target too and spoil the baseline.
func otherAgents() []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(filepath.Base(exe), "blindspot") || strings.HasSuffix(exe, "/agent") ||
			(bytes.Contains(cmdline, []byte("--web.listen-address")) && !bytes.HasPrefix(cmdline, []byte("strace"))) {
			out = append(out, fmt.Sprintf("%d %s", pid, exe))
		}
	}
	return out
}

// cpuStat is one CPU's line of /proc/stat, in ticks.
type cpuStat struct {
	busy, idle, steal, softirq uint64
}

// readCPUStat returns the counters of the given CPU from /proc/stat.
func readCPUStat(cpu int) (cpuStat, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuStat{}, err
	}
	prefix := fmt.Sprintf("cpu%d ", cpu)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)[1:]
		var v [10]uint64
		for i := 0; i < len(f) && i < len(v); i++ {
			v[i], _ = strconv.ParseUint(f[i], 10, 64)
		}
		// user nice system idle iowait irq softirq steal guest guest_nice
		return cpuStat{busy: v[0] + v[1] + v[2] + v[5] + v[6], idle: v[3] + v[4], steal: v[7], softirq: v[6]}, nil
	}
	return cpuStat{}, fmt.Errorf("/proc/stat: no cpu%d", cpu)
}

// forks returns how many processes the host has created since boot.
func forks() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "processes "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("/proc/stat: no processes line")
}
