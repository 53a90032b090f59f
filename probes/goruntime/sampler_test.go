package goruntime

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/symbols"
)

// The test binary samples itself: process_vm_readv on one's own pid needs
// no privilege.

var (
	selfOnce sync.Once
	selfBin  *symbols.Binary
	selfErr  error
)

func self(tb testing.TB) *symbols.Binary {
	selfOnce.Do(func() { selfBin, selfErr = symbols.Open("/proc/self/exe") })
	if selfErr != nil {
		tb.Fatal(selfErr)
	}
	return selfBin
}

type fixture struct {
	agg  *aggregator.Aggregator
	sh   *aggregator.Shard
	proc *proc
}

func newFixture(tb testing.TB) *fixture {
	agg := aggregator.New(Metrics(), aggregator.Options{})
	t := agg.AddTarget(aggregator.Target{PID: os.Getpid(), Service: "self"})
	p, err := newProc(os.Getpid(), self(tb), t, Options{TopFunctions: 3, MaxTracked: 1 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	return &fixture{agg: agg, sh: agg.NewShard(), proc: p}
}

func (f *fixture) values(name string) map[string]float64 {
	out := map[string]float64{}
	for _, p := range f.agg.Snapshot() {
		if p.Metric.Name != name {
			continue
		}
		key := ""
		if len(p.Labels) > 0 {
			key = p.Labels[0]
		}
		if p.Metric.Kind == aggregator.Counter {
			out[key] = float64(p.Count)
		} else if p.Metric.Kind == aggregator.Histogram {
			out[key] = float64(p.Count)
		} else {
			out[key] = p.Sum
		}
	}
	return out
}

func parkedForTest(c chan struct{}) { <-c }

func spawn(n int) (stop func()) {
	c := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() { wg.Done(); parkedForTest(c) }()
	}
	wg.Wait()
	return func() { close(c) }
}

const parkedName = "github.com/blindspot-dev/blindspot/probes/goruntime.spawn.func1"

func TestSampleSelf(t *testing.T) {
	f := newFixture(t)
	stop := spawn(50)
	defer stop()
	f.proc.sample(f.sh, time.Now())
	if f.proc.gErr != nil || f.proc.gcErr != nil {
		t.Fatalf("goroutines: %v; gc: %v", f.proc.gErr, f.proc.gcErr)
	}
	want := runtime.NumGoroutine()
	got := f.values("go_goroutine_count")[""]
	if d := got - float64(want); d < -2 || d > 2 {
		t.Errorf("go_goroutine_count %v, NumGoroutine %d", got, want)
	}
	live := f.values("blindspot_go_goroutine_live")
	if live[parkedName] != 50 {
		t.Errorf("live by function: %v", live)
	}
	if len(live) > 4 {
		t.Errorf("top 3 + other expected: %v", live)
	}

	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	f.proc.sample(f.sh, time.Now())
	if c := f.values("go_memory_gc_cycles_total")[""]; c != float64(ms.NumGC) {
		t.Errorf("gc cycles %v, NumGC %d", c, ms.NumGC)
	}
	if c := f.values("blindspot_go_gc_pause_duration_seconds")[""]; c != float64(min(ms.NumGC, 256)) {
		t.Errorf("pause count %v, NumGC %d", c, ms.NumGC)
	}
	if v := f.values("go_processor_limit")[""]; v != float64(runtime.GOMAXPROCS(0)) {
		t.Errorf("go_processor_limit %v", v)
	}
	if v := f.values("go_config_gogc_percent")[""]; v != 100 && os.Getenv("GOGC") == "" {
		t.Errorf("go_config_gogc_percent %v", v)
	}
	if v := f.values("go_memory_used_bytes")[""]; v < float64(ms.HeapInuse) || v > float64(ms.Sys) {
		t.Errorf("go_memory_used_bytes %v outside [HeapInuse %d, Sys %d]", v, ms.HeapInuse, ms.Sys)
	}
	if v := f.values("go_memory_gc_goal_bytes")[""]; v < float64(ms.NextGC)/2 || v > float64(ms.NextGC)*2 {
		t.Errorf("go_memory_gc_goal_bytes %v, NextGC %d", v, ms.NextGC)
	}
	for _, m := range []string{"process_memory_usage_bytes", "process_thread_count", "process_unix_file_descriptor_count"} {
		if f.values(m)[""] <= 0 {
			t.Errorf("%s not set", m)
		}
	}
}

// argParkedForTest is started by go statements with arguments: the
// goroutine starts in a wrapper (inlining argParkedForTest since Go 1.22).
func argParkedForTest(c chan struct{}, wg *sync.WaitGroup) { wg.Done(); <-c }

// spawnArgs starts n goroutines with go argParkedForTest(c, &wg) and n
// real closures.
func spawnArgs(n int) (stop func()) {
	c := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2 * n)
	for i := 0; i < n; i++ {
		go argParkedForTest(c, &wg)
		go func() {
			wg.Done()
			<-c
		}()
	}
	wg.Wait()
	return func() { close(c) }
}

const (
	argParkedName     = "github.com/blindspot-dev/blindspot/probes/goruntime.argParkedForTest"
	argClosureName    = "github.com/blindspot-dev/blindspot/probes/goruntime.spawnArgs.func1"
	argClosureNameOld = "github.com/blindspot-dev/blindspot/probes/goruntime.spawnArgs.func2"
)

// TestStartFunctionNames: goroutines started by a go statement with
// arguments are named after the function the statement names, not the
// wrapper; real closures keep their names; the wrappers of a binary are
// worked out once and shared by the programs running it.
func TestStartFunctionNames(t *testing.T) {
	f := newFixture(t)
	stop := spawnArgs(30)
	defer stop()
	f.proc.sample(f.sh, time.Now())
	if f.proc.gErr != nil {
		t.Fatal(f.proc.gErr)
	}
	live := f.values("blindspot_go_goroutine_live")
	if live[argParkedName] != 30 || live[argClosureName]+live[argClosureNameOld] != 30 {
		t.Errorf("live by function: %v", live)
	}
	for name := range live {
		if strings.Contains(name, "gowrap") {
			t.Errorf("wrapper name exported: %s", name)
		}
	}

	agg := aggregator.New(Metrics(), aggregator.Options{})
	s := New(agg, &Options{Interval: time.Hour})
	defer s.Close()
	bin := self(t)
	for _, pid := range []int{os.Getpid(), os.Getpid() + 1_000_000} {
		if err := s.Attach(pid, bin, agg.AddTarget(aggregator.Target{PID: pid, Service: "self"})); err != nil && pid == os.Getpid() {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	shared := s.procs[os.Getpid()].names == s.procs[os.Getpid()+1_000_000].names && len(s.names) == 1
	s.mu.Unlock()
	if !shared {
		t.Error("two programs of one binary do not share its start function names")
	}
	s.Detach(os.Getpid())
	s.Detach(os.Getpid() + 1_000_000)
	s.mu.Lock()
	kept := len(s.names)
	s.mu.Unlock()
	if kept != 0 {
		t.Errorf("names of a binary no program runs kept: %d", kept)
	}
}

func TestOldestAge(t *testing.T) {
	f := newFixture(t)
	stop := spawn(5)
	defer stop()
	t0 := time.Now()
	f.proc.sample(f.sh, t0)
	f.proc.sample(f.sh, t0.Add(3*time.Second))
	if age := f.values("blindspot_go_goroutine_oldest_age_seconds")[parkedName]; age != 3 {
		t.Errorf("oldest age %v, want 3", age)
	}
	stop2 := spawn(10) // newer goroutines of the same function
	defer stop2()
	f.proc.sample(f.sh, t0.Add(5*time.Second))
	if age := f.values("blindspot_go_goroutine_oldest_age_seconds")[parkedName]; age != 5 {
		t.Errorf("oldest age %v, want 5", age)
	}
	if n := f.values("blindspot_go_goroutine_live")[parkedName]; n != 15 {
		t.Errorf("live %v, want 15", n)
	}
}

func TestReaderSkipsBadSpans(t *testing.T) {
	r := memReader{pid: os.Getpid()}
	good := []byte("abcdefgh")
	addr := uint64(uintptrOf(good))
	dst := make([]byte, 8+4+8)
	failed, err := r.read([]span{{addr, 8}, {8, 4}, {addr, 8}}, dst)
	if err != nil || failed != 1 {
		t.Fatalf("failed %d, err %v", failed, err)
	}
	if string(dst[:8]) != "abcdefgh" || string(dst[12:]) != "abcdefgh" || string(dst[8:12]) != "\x00\x00\x00\x00" {
		t.Errorf("read %q", dst)
	}
}

// BenchmarkSample measures one sample of this process with N extra
// parked goroutines (the cost per second of a program with N goroutines
// at the default interval).
func BenchmarkSample(b *testing.B) {
	for _, n := range []int{1000, 10_000, 200_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			stop := spawn(n)
			defer stop()
			f := newFixture(b)
			now := time.Now()
			f.proc.sample(f.sh, now)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now = now.Add(time.Second)
				f.proc.sample(f.sh, now)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/goroutine")
		})
	}
}

func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }
