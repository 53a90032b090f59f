package e2e

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// The soak tests (soak_test.go) run short in `make test` and long in
// `make soak`, which sets BLINDSPOT_SOAK=1: same assertions, more programs,
// more requests, longer load.
func soakLong() bool { return os.Getenv("BLINDSPOT_SOAK") == "1" }

// sized returns short in CI and long under `make soak`.
func sized[T any](short, long T) T {
	if soakLong() {
		return long
	}
	return short
}

// agentUsage is what the agent holds at one moment.
type agentUsage struct {
	FDs, Links, PerfEvents, Threads, Goroutines int
	RSSKiB                                      int
	// HeapInuseKiB is the agent's go_memstats_heap_inuse_bytes: what of
	// its RSS the Go heap holds in use.
	HeapInuseKiB int
	// MapEntries counts the entries of the agent's hash maps (calls in
	// flight, per-process configuration), by map name.
	MapEntries map[string]int
	// InFlightPIDs are the processes of the calls in flight (the first
	// word of every start map's key is the PID).
	InFlightPIDs []uint32
	// LinkIDs, MapIDs and ProgIDs are the kernel objects it holds open.
	LinkIDs, MapIDs, ProgIDs []uint32
}

// mapEntriesTotal is the sum of MapEntries.
func (u agentUsage) mapEntriesTotal() int {
	n := 0
	for _, v := range u.MapEntries {
		n += v
	}
	return n
}

func (u agentUsage) String() string {
	var names []string
	for k, v := range u.MapEntries {
		if v > 0 {
			names = append(names, fmt.Sprintf("%s=%d", k, v))
		}
	}
	sort.Strings(names)
	s := fmt.Sprintf("fds=%d bpf_links=%d perf_events=%d threads=%d goroutines=%d rss=%.1fMiB heap_inuse=%.1fMiB map_entries=%d %v",
		u.FDs, u.Links, u.PerfEvents, u.Threads, u.Goroutines, float64(u.RSSKiB)/1024, float64(u.HeapInuseKiB)/1024, u.mapEntriesTotal(), names)
	if len(u.InFlightPIDs) > 0 {
		s += fmt.Sprintf(" in_flight_pids=%v", u.InFlightPIDs)
	}
	return s
}

// fdinfoField returns a numeric field of /proc/PID/fdinfo/FD.
func fdinfoField(pid int, fd, field string) (uint32, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			return uint32(n), err == nil
		}
	}
	return 0, false
}

// procStatusField returns a numeric field of /proc/PID/status ("Threads",
// "VmRSS" in kB).
func procStatusField(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return -1
}

// measureAgent reads what the agent holds now: its descriptors by kind, the
// entries of its hash maps (read through the kernel by map ID), threads,
// RSS and its own go_goroutines.
func measureAgent(t *testing.T, a *agentProc) agentUsage {
	t.Helper()
	pid := a.cmd.Process.Pid
	u := agentUsage{MapEntries: map[string]int{}}
	var links map[string]string
	u.FDs, links = fdCount(pid)
	for fd, l := range links {
		switch l {
		case "anon_inode:bpf_link":
			u.Links++
			if id, ok := fdinfoField(pid, fd, "link_id"); ok {
				u.LinkIDs = append(u.LinkIDs, id)
			}
		case "anon_inode:[perf_event]":
			u.PerfEvents++
		case "anon_inode:bpf-prog":
			if id, ok := fdinfoField(pid, fd, "prog_id"); ok {
				u.ProgIDs = append(u.ProgIDs, id)
			}
		case "anon_inode:bpf-map":
			id, ok := fdinfoField(pid, fd, "map_id")
			if !ok {
				continue
			}
			u.MapIDs = append(u.MapIDs, id)
			typ, _ := fdinfoField(pid, fd, "map_type")
			if ebpf.MapType(typ) != ebpf.Hash && ebpf.MapType(typ) != ebpf.LRUHash {
				continue
			}
			m, err := ebpf.NewMapFromID(ebpf.MapID(id))
			if err != nil {
				continue // closed meanwhile
			}
			name := fmt.Sprintf("map%d", id)
			if info, err := m.Info(); err == nil && info.Name != "" {
				name = info.Name
			}
			u.MapEntries[name] += countEntries(m)
			if strings.Contains(name, "_sta") {
				u.InFlightPIDs = append(u.InFlightPIDs, keyPIDs(m)...)
			}
			m.Close()
		}
	}
	u.Threads = procStatusField(pid, "Threads")
	u.RSSKiB = procStatusField(pid, "VmRSS")
	if s, err := a.scrape(); err == nil {
		g, _ := s.value("go_goroutines", nil)
		u.Goroutines = int(g)
		h, _ := s.value("go_memstats_heap_inuse_bytes", nil)
		u.HeapInuseKiB = int(h / 1024)
	}
	return u
}

// countEntries counts the keys of a hash map.
func countEntries(m *ebpf.Map) int {
	key := make([]byte, m.KeySize())
	next := make([]byte, m.KeySize())
	n := 0
	var prev any
	for n < 1<<20 {
		if err := m.NextKey(prev, &next); err != nil {
			break
		}
		n++
		copy(key, next)
		prev = key
	}
	return n
}

// keyPIDs returns the first 32-bit word of every key of a start map: the
// PID of a goroutine_key.
func keyPIDs(m *ebpf.Map) []uint32 {
	var out []uint32
	key := make([]byte, m.KeySize())
	val := make([]byte, m.ValueSize())
	it := m.Iterate()
	for it.Next(&key, &val) && len(out) < 100 {
		if len(key) >= 4 {
			out = append(out, binary.LittleEndian.Uint32(key))
		}
	}
	return out
}

// stableUsage waits until the agent's descriptors and map entries read the
// same three times in a row (at most timeout) and returns the last reading.
func stableUsage(t *testing.T, a *agentProc, timeout time.Duration) agentUsage {
	t.Helper()
	u := measureAgent(t, a)
	same := 0
	deadline := time.Now().Add(timeout)
	for same < 3 && time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
		v := measureAgent(t, a)
		if v.FDs == u.FDs && v.mapEntriesTotal() == u.mapEntriesTotal() && v.Links == u.Links {
			same++
		} else {
			same = 0
		}
		u = v
	}
	return u
}

// withinTenPercent reports whether after is at most 10% (and at least
// slack) above before.
func withinTenPercent(before, after, slack int) bool {
	limit := before + before/10
	if limit < before+slack {
		limit = before + slack
	}
	return after <= limit
}

// kernelObjectsLeft returns which of the given link, map and program IDs
// still exist in the kernel.
func kernelObjectsLeft(u agentUsage) []string {
	var left []string
	for _, id := range u.LinkIDs {
		if l, err := link.NewFromID(link.ID(id)); err == nil {
			l.Close()
			left = append(left, fmt.Sprintf("link %d", id))
		} else if !errors.Is(err, os.ErrNotExist) {
			left = append(left, fmt.Sprintf("link %d: %v", id, err))
		}
	}
	for _, id := range u.MapIDs {
		if m, err := ebpf.NewMapFromID(ebpf.MapID(id)); err == nil {
			m.Close()
			left = append(left, fmt.Sprintf("map %d", id))
		}
	}
	for _, id := range u.ProgIDs {
		if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
			p.Close()
			left = append(left, fmt.Sprintf("program %d", id))
		}
	}
	return left
}

// waitKernelObjectsGone waits (the kernel frees links and programs after an
// RCU grace period) until none of u's objects exist and returns those left.
func waitKernelObjectsGone(u agentUsage, timeout time.Duration) []string {
	var left []string
	waitFor(timeout, func() bool { left = kernelObjectsLeft(u); return len(left) == 0 })
	return left
}

// pinnedObjects lists what is pinned under /sys/fs/bpf.
func pinnedObjects(t *testing.T) []string {
	t.Helper()
	var out []string
	filepath.WalkDir("/sys/fs/bpf", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// uprobeEventsUnder returns the lines of uprobe_events naming a file under
// dir (empty when tracefs is not mounted: the agent's uprobe_multi links and
// perf-event uprobes do not create trace events there, but a leak would).
func uprobeEventsUnder(dir string) []string {
	f, err := os.Open(filepath.Join(tracefs, "uprobe_events"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), dir) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// loadResult is what a load loop sent and saw.
type loadResult struct {
	sent, failed, wrong atomic.Int64
}

// driveLoad sends GET path over conns keep-alive connections to tp until
// stop is closed or max requests were sent, checking every response against
// want; it returns when every worker has stopped.
func driveLoad(tp *targetProc, conns int, path, want string, max int64, stop <-chan struct{}) *loadResult {
	r := &loadResult{}
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-env.ctx.Done():
					return
				default:
				}
				if r.sent.Add(1) > max {
					r.sent.Add(-1)
					return
				}
				code, body, err := tp.do("GET", path)
				switch {
				case err != nil:
					r.failed.Add(1)
				case code != 200 || body != want:
					r.wrong.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return r
}
