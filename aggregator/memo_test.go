package aggregator

import (
	"math"
	"sort"
	"sync"
	"testing"
	"time"
)

// A memoised event lands in the series its labels name, exactly as
// Observe would put it; a key memoised for another target is no hit.
func TestMemoObservesLikeObserve(t *testing.T) {
	m := testMetric()
	a := New([]*Metric{m}, Options{})
	tid := a.AddTarget(Target{PID: 1, Service: "svc"})
	other := a.AddTarget(Target{PID: 2, Service: "svc"})
	sh := a.Shard(0)
	l := Labels{sh.InternString("/items/{id}"), sh.Status(200)}
	key := []byte("k1")
	if sh.ObserveMemo(key, tid, 0.01) {
		t.Fatal("hit before anything was memoised")
	}
	sh.ObserveAndMemo(key, m, tid, l, 0.01)
	for i := 0; i < 9; i++ {
		if !sh.ObserveMemo(key, tid, 0.02) {
			t.Fatal("memoised key missed")
		}
	}
	if sh.ObserveMemo(key, other, 0.02) {
		t.Fatal("a key memoised for one target hit for another")
	}
	sh.Observe(m, tid, l, 0.03)
	pts := a.Snapshot()
	if len(pts) != 1 || pts[0].Count != 11 || pts[0].Labels[0] != "/items/{id}" || pts[0].Labels[1] != "200" {
		t.Fatalf("points %+v", pts)
	}
	var exp uint64
	for _, c := range pts[0].Exp.Counts {
		exp += c
	}
	if b := pts[0].Buckets; b[bucketIndex(m.Buckets, 0.01)] != 1 || b[bucketIndex(m.Buckets, 0.02)] != 9 || b[bucketIndex(m.Buckets, 0.03)] != 1 || exp != 11 {
		t.Errorf("buckets %v, exponential %v", b, pts[0].Exp)
	}
}

// Series removed behind a memo (DeleteSeries, an expired target, a removed
// metric) are never written through it: the memo finds the series anew,
// or none.
func TestMemoFollowsRemovedSeries(t *testing.T) {
	m := testMetric()
	extra := &Metric{Name: "extra_seconds", Kind: Histogram, Labels: []string{"a"}, Buckets: DurationBuckets}
	a := New([]*Metric{m}, Options{Grace: time.Minute})
	a.AddMetric(extra)
	tid := a.AddTarget(Target{PID: 1, Service: "svc"})
	sh := a.Shard(0)
	l := Labels{sh.InternString("x")}
	sh.ObserveAndMemo([]byte("m"), m, tid, l, 0.01)
	sh.ObserveAndMemo([]byte("e"), extra, tid, l, 0.01)

	// DeleteSeries: the next event makes the series again, with one count.
	sh.DeleteSeries(m, tid)
	if !sh.ObserveMemo([]byte("m"), tid, 0.01) {
		t.Fatal("memo lost by DeleteSeries")
	}
	if n, _ := total(a.Snapshot(), m); n != 1 {
		t.Errorf("after DeleteSeries: %d, want 1", n)
	}

	// A removed metric takes no more events.
	a.RemoveMetric(extra)
	sh.ObserveMemo([]byte("e"), tid, 0.01)
	for _, p := range a.Snapshot() {
		if p.Metric == extra {
			t.Errorf("removed metric written through the memo: %+v", p)
		}
	}

	// An expired target's memo goes with it, and its late events are not
	// written.
	now := time.Now()
	a.TargetExited(tid, now)
	a.Expire(now.Add(time.Hour))
	if sh.ObserveMemo([]byte("m"), tid, 0.01) {
		t.Error("an expired target's memo still hits")
	}
	if pts := a.Snapshot(); len(pts) != 0 {
		t.Errorf("points after expiry: %+v", pts)
	}
}

// The memo is bounded: past memoLimit keys it starts over.
func TestMemoBounded(t *testing.T) {
	m := testMetric()
	a := New([]*Metric{m}, Options{})
	tid := a.AddTarget(Target{PID: 1, Service: "svc"})
	sh := a.Shard(0)
	l := Labels{sh.InternString("x")}
	for i := 0; i < 3*memoLimit; i++ {
		sh.ObserveAndMemo([]byte{byte(i), byte(i >> 8), byte(i >> 16)}, m, tid, l, 0.01)
		if len(sh.memo) > memoLimit {
			t.Fatalf("memo holds %d keys, bound %d", len(sh.memo), memoLimit)
		}
	}
	if n, _ := total(a.Snapshot(), m); n != 3*memoLimit {
		t.Errorf("count %d, want %d", n, 3*memoLimit)
	}
}

// A memoised event allocates nothing.
func TestMemoDoesNotAllocate(t *testing.T) {
	m := testMetric()
	a := New([]*Metric{m}, Options{})
	tid := a.AddTarget(Target{PID: 1, Service: "svc"})
	sh := a.Shard(0)
	key := []byte("key")
	sh.ObserveAndMemo(key, m, tid, Labels{sh.InternString("x")}, 0.01)
	if allocs := testing.AllocsPerRun(1000, func() { sh.ObserveMemo(key, tid, 0.01) }); allocs != 0 {
		t.Errorf("%v allocations per memoised event, want 0", allocs)
	}
}

// While the owner holds its shard for a batch, a snapshot waits for the
// batch and sees all of it or none of it.
func TestHoldBatchesEvents(t *testing.T) {
	m := testMetric()
	a := New([]*Metric{m}, Options{})
	tid := a.AddTarget(Target{PID: 1, Service: "svc"})
	sh := a.Shard(0)
	l := Labels{sh.InternString("x")}
	sh.Observe(m, tid, l, 0.01)
	var wg sync.WaitGroup
	counts := make(chan uint64, 100)
	for round := 0; round < 100; round++ {
		sh.Hold()
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, _ := total(a.Snapshot(), m)
			counts <- n
		}()
		for i := 0; i < 10; i++ {
			sh.Observe(m, tid, l, 0.01)
			sh.Route(tid, []byte("/a/1"), nil)
		}
		sh.Release()
	}
	wg.Wait()
	close(counts)
	var got []int
	for n := range counts {
		got = append(got, int(n))
	}
	sort.Ints(got)
	for _, n := range got {
		if (n-1)%10 != 0 {
			t.Fatalf("a snapshot saw part of a batch: %d", n)
		}
	}
}

func TestBucketIndexMatchesSearch(t *testing.T) {
	for _, v := range []float64{-1, 0, 0.001, 0.005, 0.0050001, 0.3, 1, 10, 11, 1e9} {
		want := sort.SearchFloat64s(DurationBuckets, v)
		if got := bucketIndex(DurationBuckets, v); got != want {
			t.Errorf("%v: %d, want %d", v, got, want)
		}
	}
}

func TestBucketIndexNaNAndEdges(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0.005, 10, 10.0000001} {
		want := sort.SearchFloat64s(DurationBuckets, v)
		if got := bucketIndex(DurationBuckets, v); got != want {
			t.Errorf("%v: %d, want %d", v, got, want)
		}
	}
}
