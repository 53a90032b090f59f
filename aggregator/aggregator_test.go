package aggregator

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func testMetric() *Metric {
	return &Metric{Name: "test_duration_seconds", Kind: Histogram, Labels: []string{"route", "status"}, Buckets: DurationBuckets}
}

func total(points []Point, m *Metric) (n uint64, sum float64) {
	for _, p := range points {
		if p.Metric == m {
			n += p.Count
			sum += p.Sum
		}
	}
	return
}

// Shards written concurrently merge to exact totals.
func TestShardsMergeExactly(t *testing.T) {
	m := testMetric()
	a := New([]*Metric{m}, Options{Shards: 4})
	tid := a.AddTarget(Target{PID: 1, Service: "svc"})
	const perShard = 10000
	var wg sync.WaitGroup
	for i := 0; i < a.Shards(); i++ {
		wg.Add(1)
		go func(sh *Shard) {
			defer wg.Done()
			for j := 0; j < perShard; j++ {
				route := sh.Route(tid, []byte(fmt.Sprintf("/items/%d", j)), nil)
				sh.Observe(m, tid, Labels{route, sh.Status(uint16(200 + j%2))}, 0.001)
			}
		}(a.Shard(i))
	}
	// Scrapes while writing must not disturb anything.
	for i := 0; i < 20; i++ {
		a.Snapshot()
	}
	wg.Wait()
	pts := a.Snapshot()
	n, sum := total(pts, m)
	if n != 4*perShard {
		t.Fatalf("count = %d, want %d", n, 4*perShard)
	}
	if sum < 39.99 || sum > 40.01 {
		t.Fatalf("sum = %v, want 40", sum)
	}
	if len(pts) != 2 {
		t.Fatalf("%d series, want 2 (/items/{id} × 200/201): %+v", len(pts), pts)
	}
	for _, p := range pts {
		if p.Labels[0] != "/items/{id}" || p.Count != 2*perShard {
			t.Errorf("series %v count %d", p.Labels, p.Count)
		}
		var inBuckets uint64
		for _, b := range p.Buckets {
			inBuckets += b
		}
		if inBuckets != p.Count || p.Buckets[0] != p.Count {
			t.Errorf("buckets %v do not add up to %d in the first bucket", p.Buckets, p.Count)
		}
	}
}

func TestBucketBoundsAreInclusive(t *testing.T) {
	m := testMetric()
	a := New([]*Metric{m}, Options{})
	tid := a.AddTarget(Target{PID: 1, Service: "svc"})
	sh := a.Shard(0)
	for _, v := range []float64{0.005, 0.0051, 10, 11} {
		sh.Observe(m, tid, Labels{}, v)
	}
	p := a.Snapshot()[0]
	if p.Buckets[0] != 1 || p.Buckets[1] != 1 || p.Buckets[13] != 1 || p.Buckets[14] != 1 {
		t.Fatalf("buckets = %v", p.Buckets)
	}
}

func TestSeriesLimitOverflow(t *testing.T) {
	m := testMetric()
	m.Limit = 10
	a := New([]*Metric{m}, Options{Shards: 2, RouteLimit: 1000})
	tid := a.AddTarget(Target{PID: 1, Service: "svc"})
	for i := 0; i < 100; i++ {
		sh := a.Shard(i % 2)
		v := sh.InternString(fmt.Sprintf("/r%d", i))
		sh.Observe(m, tid, Labels{v}, 1)
		sh.Observe(m, tid, Labels{v}, 1) // seen again: still one label set
	}
	pts := a.Snapshot()
	if len(pts) != 11 {
		t.Fatalf("%d series, want 10 + overflow", len(pts))
	}
	var over *Point
	for i := range pts {
		if pts[i].Overflow {
			over = &pts[i]
		}
	}
	if over == nil || over.Count != 180 {
		t.Fatalf("overflow series = %+v, want 180 observations", over)
	}
	if n, _ := total(pts, m); n != 200 {
		t.Fatalf("total = %d, want 200", n)
	}
	if got := a.Overflows()[m.Name]; got != 90 {
		t.Fatalf("overflowed label sets = %d, want 90", got)
	}
}

func TestRouteLimit(t *testing.T) {
	m := testMetric()
	a := New([]*Metric{m}, Options{RouteLimit: 3})
	tid := a.AddTarget(Target{PID: 1, Service: "svc"})
	other := a.AddTarget(Target{PID: 2, Service: "other"})
	sh := a.Shard(0)
	var got []string
	for _, p := range []string{"/a", "/b", "/c", "/d", "/a", "/e"} {
		got = append(got, a.str(sh.Route(tid, []byte(p), nil)))
	}
	want := []string{"/a", "/b", "/c", RouteOverflow, "/a", RouteOverflow}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("routes = %v, want %v", got, want)
	}
	if r := a.str(sh.Route(other, []byte("/d"), nil)); r != "/d" {
		t.Fatalf("another service's routes are bounded separately: got %q", r)
	}
	if r := a.str(sh.Route(tid, nil, []byte("GET /items/{id}"))); r != RouteOverflow {
		t.Fatalf("patterns count against the bound too: got %q", r)
	}
	if r := a.str(sh.RouterRoute(tid, ColonSyntax, []byte("/users/:id"))); r != RouteOverflow {
		t.Fatalf("routers' routes count against the bound too: got %q", r)
	}
	if r := a.str(sh.RouterRoute(tid, ColonSyntax, []byte("/a"))); r != "/a" {
		t.Fatalf("a router's route already counted: got %q, want /a", r)
	}
	if r := a.str(sh.RouterRoute(other, ChiSyntax, []byte("/api/*/items/{id:[0-9]+}"))); r != "/api/items/{id}" {
		t.Fatalf("chi route: got %q", r)
	}
}

func TestExpireAfterGrace(t *testing.T) {
	m := testMetric()
	a := New([]*Metric{m}, Options{Grace: time.Minute})
	old := a.AddTarget(Target{PID: 1, Service: "svc"})
	sh := a.Shard(0)
	sh.Observe(m, old, Labels{}, 1)
	t0 := time.Now()
	a.TargetExited(old, t0)
	a.Expire(t0.Add(30 * time.Second))
	if len(a.Snapshot()) != 1 {
		t.Fatal("series gone before the grace period ended")
	}
	a.Expire(t0.Add(61 * time.Second))
	if len(a.Snapshot()) != 0 || len(a.Targets()) != 0 {
		t.Fatal("series kept after the grace period")
	}
	// A late event of the expired target is not booked.
	sh.Observe(m, old, Labels{}, 1)
	if len(a.Snapshot()) != 0 {
		t.Fatal("late event of an expired target created a series")
	}
	// A restarted program starts fresh.
	fresh := a.AddTarget(Target{PID: 1, Service: "svc"})
	sh.Observe(m, fresh, Labels{}, 1)
	if pts := a.Snapshot(); len(pts) != 1 || pts[0].Count != 1 {
		t.Fatalf("restarted program: %+v", pts)
	}
}

// The event path allocates nothing once its series and route exist.
func TestEventPathDoesNotAllocate(t *testing.T) {
	m := testMetric()
	a := New([]*Metric{m}, Options{})
	tid := a.AddTarget(Target{PID: 1, Service: "svc"})
	sh := a.Shard(0)
	path, method := []byte("/items/42"), []byte("GET")
	allocs := testing.AllocsPerRun(1000, func() {
		r := sh.Route(tid, path, nil)
		sh.Observe(m, tid, Labels{r, sh.Intern(method), sh.Status(200)}, 0.01)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per event, want 0", allocs)
	}
}

func BenchmarkObserve(b *testing.B) {
	m := testMetric()
	a := New([]*Metric{m}, Options{})
	tid := a.AddTarget(Target{PID: 1, Service: "svc"})
	sh := a.Shard(0)
	path := []byte("/items/42")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r := sh.Route(tid, path, nil)
		sh.Observe(m, tid, Labels{r, sh.Status(200)}, 0.01)
	}
}
