package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/blindspot-dev/blindspot/symbols"
)

// procCPU returns a process's user+system CPU time from /proc/PID/stat.
func procCPU(t testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond // USER_HZ = 100
}

// perCall runs fn n times in the target and returns its CPU per call (the
// median of rounds).
func perCall(t testing.TB, tp *targetProc, fn string, n, rounds int) time.Duration {
	var ds []time.Duration
	for r := 0; r < rounds; r++ {
		before := procCPU(t, tp.pid)
		if code, _, err := tp.do("GET", fmt.Sprintf("/loop?fn=%s&n=%d", fn, n)); err != nil || code != 200 {
			t.Fatalf("/loop: %d %v", code, err)
		}
		ds = append(ds, (procCPU(t, tp.pid)-before)/time.Duration(n))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// TestBusinessProbeCost measures the CPU a probed business function costs
// per call in the observed program: against the same function unprobed, and
// against empty BPF programs at the same sites (the floor). It logs the
// numbers (no timing assertions) and checks that a tight loop of calls is
// counted exactly. BLINDSPOT_BENCH_CALLS sets the calls per round.
func TestBusinessProbeCost(t *testing.T) {
	requireBPF(t)
	b := t
	vs := businessVariants(t)
	v := vs[0]
	n, rounds := 5000, 3
	if c, err := strconv.Atoi(os.Getenv("BLINDSPOT_BENCH_CALLS")); err == nil && c > 0 {
		n, rounds = c, 5
	}
	a := startAgent(b, `
functions:
  - metric: bench_duration_seconds
    function: main.BenchDur
    labels: {order_type: orderType}
    outcome: status
  - metric: bench_calls_total
    kind: count
    function: main.BenchCount
    labels: {order_type: orderType}
`)
	svc := uniqueService("bench", v)
	tp := startTarget(b, v.exe, svc)
	a.waitTargeted(t, tp.pid, 15*time.Second)
	waitUserProbes(t, a, tp.pid, 2)
	base := perCall(b, tp, "none", n, rounds)
	dur := perCall(b, tp, "dur", n, rounds)
	cnt := perCall(b, tp, "count", n, rounds)
	waitBusiness(t, a, svc, []bizExpect{
		{"bench_duration_seconds", []string{"order_type", "status"}, map[string]float64{"order_type=retail,status=success": float64(n * rounds)}},
		{"bench_calls_total", []string{"order_type"}, map[string]float64{"order_type=retail": float64(n * rounds)}},
	}, 1)

	// Empty programs at BenchNone's entry, then also at its RETs.
	bin, err := symbols.Open(v.exe)
	if err != nil {
		b.Fatal(err)
	}
	defer bin.Close()
	f, _ := bin.LookupFunc("main.BenchNone")
	sites, _ := bin.Sites(f)
	// The benchmark's floor program (bpf/bench_empty.c): it only counts
	// its hits, as the floor of make bench does.
	coll, err := ebpf.LoadCollection(filepath.Join(env.repoRoot, "test", "bench", "benchempty_x86_bpfel.o"))
	if err != nil {
		b.Fatal(err)
	}
	defer coll.Close()
	prog := coll.Programs["uprobe_bench_site0"]
	ex, _ := link.OpenExecutable(v.exe)
	attach := func(addr uint64) link.Link {
		off, _ := bin.FileOffset(addr)
		l, err := ex.Uprobe("", prog, &link.UprobeOptions{Address: off, PID: tp.pid})
		if err != nil {
			b.Fatal(err)
		}
		return l
	}
	l := attach(sites.Entry)
	emptyEntry := perCall(b, tp, "none", n, rounds)
	var rets []link.Link
	for _, r := range sites.Returns {
		rets = append(rets, attach(r))
	}
	emptyBoth := perCall(b, tp, "none", n, rounds)
	l.Close()
	for _, r := range rets {
		r.Close()
	}
	t.Logf("entry site emulated: %v, %d RET sites", sites.EntryEmulated, len(sites.Returns))
	t.Logf("business probe cost (%s, %d calls x %d rounds, median CPU per call):\n  unprobed %v\n  duration (entry+RET, 1 label, outcome) %v (+%v; floor: empty entry+RET %v, +%v)\n  count (entry, 1 label) %v (+%v; floor: empty entry %v, +%v)",
		v.name, n, rounds, base, dur, dur-base, emptyBoth, emptyBoth-base, cnt, cnt-base, emptyEntry, emptyEntry-base)
}
