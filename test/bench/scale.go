//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The agent's memory and attach latency as the programs it observes grow:
// one agent instruments n processes of the "ok" server, then one process
// of each of n copies of it (each a distinct executable at its own path,
// read anew), started one after the other.

// scaleResult is what the scale measurement found.
type scaleResult struct {
	// Programs are the processes observed at once, Executables the
	// distinct executables they run in the last measure.
	Programs    int `json:"programs"`
	Executables int `json:"executables"`
	// RSS of the agent in MB, settled (settleWait after the last program
	// started): observing nothing, one program, Programs processes of one
	// executable, and one process of each of Executables; and the last
	// two 1 s after the last program started, while the agent still
	// holds what attaching touched.
	RSSIdle          float64 `json:"agent_rss_mb_idle"`
	RSS1             float64 `json:"agent_rss_mb_1"`
	RSSOneExe        float64 `json:"agent_rss_mb_one_executable"`
	RSSOneExeSettled float64 `json:"agent_rss_mb_one_executable_settled"`
	RSSAll           float64 `json:"agent_rss_mb_all_executables"`
	// Attach latencies in ms, from the exec of a program to /targets
	// listing it with its HTTP server probes placed: a new executable
	// (parsed for the first time), and a second process of one already
	// parsed.
	AttachNew    []float64 `json:"attach_new_executable_ms"`
	AttachSecond []float64 `json:"attach_second_process_ms"`
	// RSSAllSettled is RSSAll once settled, and SplitOneExe and Split
	// where the pages of the two settled measures are.
	RSSAllSettled float64  `json:"agent_rss_mb_all_executables_settled"`
	SplitOneExe   rssSplit `json:"agent_rss_split_mb_one_executable_settled"`
	Split         rssSplit `json:"agent_rss_split_mb_settled"`
}

// settleWait is how long the agent is left alone before a settled
// measure: its 10 s tick gives freed heap back, and 5 s after a burst of
// attaches it hands back the executable pages the burst touched
// (internal/selfmem).
const settleWait = 12 * time.Second

// rssSplit is where an agent's resident pages are, in MB (from
// /proc/PID/smaps).
type rssSplit struct {
	// Anon is anonymous memory: the Go heap, stacks, runtime metadata.
	Anon float64 `json:"anon"`
	// Exe is the agent's own executable (its code and read-only tables,
	// file-backed and shared with the page cache).
	Exe float64 `json:"executable"`
	// BPF is BPF maps mapped into the agent: the ring buffers.
	BPF float64 `json:"bpf_maps"`
	// Other is other files: the C library, the loader.
	Other float64 `json:"other_files"`
}

func (sp rssSplit) String() string {
	return fmt.Sprintf("%.1f anonymous, %.1f its executable, %.1f BPF maps, %.1f other files", sp.Anon, sp.Exe, sp.BPF, sp.Other)
}

// readRSSSplit reads where pid's resident pages are; exe is its
// executable's path.
func readRSSSplit(pid int, exe string) (rssSplit, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return rssSplit{}, err
	}
	defer f.Close()
	var sp rssSplit
	var bucket *float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") { // a mapping's first line
			name := ""
			if len(fields) >= 6 {
				name = strings.Join(fields[5:], " ")
			}
			switch {
			case name == exe:
				bucket = &sp.Exe
			case strings.HasPrefix(name, "anon_inode:bpf"):
				bucket = &sp.BPF
			case strings.HasPrefix(name, "/"):
				bucket = &sp.Other
			default: // anonymous, [heap], [stack], [vdso]
				bucket = &sp.Anon
			}
			continue
		}
		if fields[0] == "Rss:" && len(fields) >= 2 && bucket != nil {
			kb, _ := strconv.ParseFloat(fields[1], 64)
			*bucket += kb * 1024 / 1e6
		}
	}
	return sp, sc.Err()
}

// copyFile copies the executable src to dst.
func copyFile(src, dst string) error {
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

// measureScale runs one agent over n programs; rounds bounds the attach
// samples of each kind.
func (e *benchEnv) measureScale(ctx context.Context, n, rounds int) (*scaleResult, error) {
	dir := filepath.Join(e.dir, "scale")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	exes := make([]string, n)
	for i := range exes {
		exes[i] = filepath.Join(dir, fmt.Sprintf("server-%02d", i))
		if err := copyFile(e.targetPath, exes[i]); err != nil {
			return nil, err
		}
	}
	cfg := filepath.Join(dir, "blindspot.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("include:\n  - exe: %q\ndiscovery_interval: 500ms\n", filepath.Join(dir, "server-*"))), 0o644); err != nil {
		return nil, err
	}
	ag, err := startAgent(ctx, e.agentPath, cfg, 0, "", filepath.Join(e.dir, "blindspot-scale.log"), 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer ag.stop()
	res := &scaleResult{Programs: n}
	settle := func(wait time.Duration) (float64, error) {
		if !sleepCtx(ctx, wait, nil) {
			return 0, ctx.Err()
		}
		b, err := rssBytes(ag.pid())
		return float64(b) / 1e6, err
	}
	if res.RSSIdle, err = settle(settleWait); err != nil {
		return nil, err
	}
	var procs []*child
	defer func() {
		for _, p := range procs {
			p.stop(2 * time.Second)
		}
	}()
	// start runs exe on the server's CPU and returns the ms until the
	// agent lists it with its probes placed.
	start := func(exe string) (float64, error) {
		t0 := time.Now()
		c, _, err := startTarget(ctx, exe, e.o.serverCPU, filepath.Join(dir, filepath.Base(exe)+".log"))
		if c != nil {
			procs = append(procs, c)
		}
		if err != nil {
			return 0, err
		}
		limit := time.Now().Add(20 * time.Second)
		for !ag.ready(c.Pid(), "http_server") {
			if time.Now().After(limit) {
				return 0, fmt.Errorf("blindspot did not attach to %s within 20s; log: %s", exe, ag.log)
			}
			time.Sleep(2 * time.Millisecond)
		}
		return float64(time.Since(t0).Microseconds()) / 1000, nil
	}
	stopAll := func() {
		for _, p := range procs {
			p.stop(2 * time.Second)
		}
		procs = nil
	}
	// One executable: its first process, then n-1 more of it.
	ms, err := start(exes[0])
	if err != nil {
		return nil, err
	}
	res.AttachNew = append(res.AttachNew, ms)
	if res.RSS1, err = settle(settleWait); err != nil {
		return nil, err
	}
	for i := 1; i < n; i++ {
		ms, err := start(exes[0])
		if err != nil {
			return nil, err
		}
		if i <= rounds {
			res.AttachSecond = append(res.AttachSecond, ms)
		}
	}
	if res.RSSOneExe, err = settle(time.Second); err != nil {
		return nil, err
	}
	if res.RSSOneExeSettled, err = settle(settleWait - time.Second); err != nil {
		return nil, err
	}
	if res.SplitOneExe, err = readRSSSplit(ag.pid(), e.agentPath); err != nil {
		return nil, err
	}
	// n executables, one process each, once the agent has let the
	// processes of the first go (their detach is not what is measured).
	stopAll()
	for limit := time.Now().Add(30 * time.Second); ag.targets() > 0; {
		if time.Now().After(limit) {
			return nil, fmt.Errorf("blindspot still lists stopped programs after 30s; log: %s", ag.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err = settle(time.Second); err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		ms, err := start(exes[i])
		if err != nil {
			return nil, err
		}
		if i > 0 && i <= rounds-1 {
			res.AttachNew = append(res.AttachNew, ms)
		}
	}
	if res.RSSAll, err = settle(time.Second); err != nil {
		return nil, err
	}
	if res.RSSAllSettled, err = settle(settleWait - time.Second); err != nil {
		return nil, err
	}
	if res.Split, err = readRSSSplit(ag.pid(), e.agentPath); err != nil {
		return nil, err
	}
	res.Programs, res.Executables = len(procs), n
	logf("scale: agent RSS settled %.1f MB observing nothing, %.1f MB with 1 program, %.1f MB with %d processes of it (%.1f MB 1 s after the last started; settled: %s), %.1f MB with %d executables (%.1f MB 1 s after; settled: %s); attach: new executable %.0f ms, second process %.0f ms (medians)",
		res.RSSIdle, res.RSS1, res.RSSOneExeSettled, res.Programs, res.RSSOneExe, res.SplitOneExe, res.RSSAllSettled, res.Executables, res.RSSAll, res.Split, median(res.AttachNew), median(res.AttachSecond))
	return res, nil
}
