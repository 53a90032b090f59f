package e2e

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The runtime metrics end to end: test/targets/goroutines built on every
// release in every flavour, sampled by one real agent.

var (
	rtBuildOnce sync.Once
	rtBuildErr  error
	rtVariants  []variant
	rtSkipped   []string
)

// runtimeTargets builds the goroutines target on every release in every
// flavour (cached).
func runtimeTargets(t *testing.T) []variant {
	t.Helper()
	rtBuildOnce.Do(func() {
		rtVariants, rtSkipped, rtBuildErr = buildMatrix(env.ctx, fullMatrix("goroutines"))
	})
	if rtBuildErr != nil {
		t.Fatal(rtBuildErr)
	}
	requireMatrix(t, rtSkipped)
	return rtVariants
}

// get calls one endpoint of the goroutines target and returns the number
// it prints.
func (tp *targetProc) number(t *testing.T, path string) int {
	t.Helper()
	code, body, err := tp.do("GET", path)
	if err != nil || code != 200 {
		t.Fatalf("%s: %d %v", path, code, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(body))
	if err != nil {
		t.Fatalf("%s: %q", path, body)
	}
	return n
}

// gauge reads one runtime gauge or counter of a service.
func (a *agentProc) gauge(t *testing.T, name, service string, match map[string]string) (float64, bool) {
	t.Helper()
	s, err := a.scrape()
	if err != nil {
		return 0, false
	}
	m := map[string]string{"service_name": service}
	for k, v := range match {
		m[k] = v
	}
	return s.value(name, m)
}

// pauseCount is the observation count of a service's GC pause histogram.
func (a *agentProc) pauseCount(service string) (uint64, bool) {
	s, err := a.scrape()
	if err != nil {
		return 0, false
	}
	for _, se := range s.histograms["blindspot_go_gc_pause_duration_seconds"] {
		if se.labels["service_name"] == service {
			return se.count, true
		}
	}
	return 0, false
}

func TestRuntimeMetrics(t *testing.T) {
	requireBPF(t)
	variants := runtimeTargets(t)
	a := startAgent(t, "runtime:\n  interval: 200ms\n  top_functions: 5\n")
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			tp := startTarget(t, v.exe, uniqueService("rt", v))
			a.waitTargeted(t, tp.pid, 15*time.Second)
			checkGoroutineSteps(t, a, tp)
			checkLeak(t, a, tp)
			checkGC(t, a, tp)
			checkProcess(t, a, tp)
		})
	}
}

const parkedFn = "main.parked"

// checkGoroutineSteps changes the goroutine count in known steps: the
// total follows runtime.NumGoroutine and main.parked is counted exactly.
func checkGoroutineSteps(t *testing.T, a *agentProc, tp *targetProc) {
	parked := 0
	for _, step := range []struct {
		path  string
		delta int
	}{{"/spawn?n=100", 100}, {"/spawn?n=400", 400}, {"/release?n=300", -300}, {"/release?n=199", -199}} {
		tp.number(t, step.path)
		parked += step.delta
		// NumGoroutine as the handler sees it, less the goroutine net/http
		// runs only while a request is served ((*connReader).backgroundRead).
		// Released goroutines take a moment to end: read it again each time.
		var want int
		var got, live float64
		ok := waitFor(10*time.Second, func() bool {
			want = tp.number(t, "/count") - 1
			got, _ = a.gauge(t, "go_goroutine_count", tp.service, nil)
			live, _ = a.gauge(t, "blindspot_go_goroutine_live", tp.service, map[string]string{"blindspot_go_goroutine_start_function": parkedFn})
			return got == float64(want) && live == float64(parked)
		})
		if !ok {
			t.Fatalf("after %s: go_goroutine_count %v, NumGoroutine %d; live{%s} %v, want %d", step.path, got, want, parkedFn, live, parked)
		}
	}
}

// checkLeak starts a leak of one goroutine every 100 ms: the metrics name
// main.leakyWorker with its count within 1 and an oldest age that grows.
func checkLeak(t *testing.T, a *agentProc, tp *targetProc) {
	const fn = "main.leakyWorker"
	match := map[string]string{"blindspot_go_goroutine_start_function": fn}
	tp.number(t, "/leakstart?ms=100")
	time.Sleep(time.Second)
	var before, v, after float64
	ok := waitFor(10*time.Second, func() bool {
		before = float64(tp.number(t, "/leaked"))
		v, _ = a.gauge(t, "blindspot_go_goroutine_live", tp.service, match)
		after = float64(tp.number(t, "/leaked"))
		return v >= before-1 && v <= after+1 && v >= 8
	})
	if !ok {
		t.Fatalf("live{%s} %v, program says %v..%v", fn, v, before, after)
	}
	age1, _ := a.gauge(t, "blindspot_go_goroutine_oldest_age_seconds", tp.service, match)
	time.Sleep(time.Second)
	age2, _ := a.gauge(t, "blindspot_go_goroutine_oldest_age_seconds", tp.service, match)
	n2, _ := a.gauge(t, "blindspot_go_goroutine_live", tp.service, match)
	if age1 < 0.5 || age2 < age1+0.5 || n2 <= v {
		t.Errorf("leak not visible: oldest age %v then %v, live %v then %v", age1, age2, v, n2)
	}
}

// checkGC forces 10 cycles: the cycle counter rises by at least 10, and
// the pause histogram's count with it.
func checkGC(t *testing.T, a *agentProc, tp *targetProc) {
	var c0 float64
	var h0 uint64
	if !waitFor(10*time.Second, func() bool {
		var ok bool
		c0, ok = a.gauge(t, "go_memory_gc_cycles_total", tp.service, nil)
		h0, _ = a.pauseCount(tp.service) // no series before the first cycle
		return ok
	}) {
		t.Fatal("no GC metrics")
	}
	numGC := tp.number(t, "/gc?n=10")
	var c1 float64
	var h1 uint64
	ok := waitFor(10*time.Second, func() bool {
		c1, _ = a.gauge(t, "go_memory_gc_cycles_total", tp.service, nil)
		h1, _ = a.pauseCount(tp.service)
		return c1 >= c0+10 && h1 >= h0+10 && c1 >= float64(numGC)
	})
	if !ok {
		t.Fatalf("gc cycles %v → %v (program: %d), pauses %d → %d", c0, c1, numGC, h0, h1)
	}
	if numGC <= 256 && h1 != uint64(c1) {
		t.Errorf("pause count %d, cycles %v: every cycle's pause is observed", h1, c1)
	}
	for _, m := range []string{"go_memory_gc_goal_bytes", "go_memory_used_bytes", "go_processor_limit"} {
		if v, ok := a.gauge(t, m, tp.service, nil); !ok || v <= 0 {
			t.Errorf("%s = %v, %v", m, v, ok)
		}
	}
	if v, _ := a.gauge(t, "go_config_gogc_percent", tp.service, nil); v != 100 {
		t.Errorf("go_config_gogc_percent %v, want 100", v)
	}
}

func checkProcess(t *testing.T, a *agentProc, tp *targetProc) {
	for _, m := range []string{"process_memory_usage_bytes", "process_memory_virtual_bytes", "process_thread_count",
		"process_unix_file_descriptor_count", "process_uptime_seconds"} {
		if v, ok := a.gauge(t, m, tp.service, nil); !ok || v <= 0 || math.IsNaN(v) {
			t.Errorf("%s = %v, %v", m, v, ok)
		}
	}
	for _, mode := range []string{"user", "system"} {
		if _, ok := a.gauge(t, "process_cpu_time_seconds_total", tp.service, map[string]string{"cpu_mode": mode}); !ok {
			t.Errorf("no process_cpu_time_seconds_total{cpu_mode=%q}", mode)
		}
	}
	want := fmt.Sprintf(":%d", tp.pid)
	s := a.mustScrape(t)
	for _, se := range s.gauges["go_goroutine_count"] {
		if se.labels["service_name"] == tp.service && !strings.HasSuffix(se.labels["service_instance_id"], want) {
			t.Errorf("service_instance_id %q, want host%s", se.labels["service_instance_id"], want)
		}
	}
}
