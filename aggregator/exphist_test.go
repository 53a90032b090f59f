package aggregator

import (
	"math"
	"math/rand"
	"testing"
)

// lowerBound is the exclusive lower bound of bucket i at scale.
func lowerBound(i, scale int32) float64 {
	return math.Exp2(float64(i) * math.Exp2(-float64(scale)))
}

func TestExpIndexBounds(t *testing.T) {
	for _, scale := range []int32{-3, 0, 1, 3, 8} {
		for _, v := range []float64{1e-9, 0.001, 0.0051, 0.25, 0.5, 1, 1.5, 2, 3, 1024, 7e5} {
			i := expIndex(v, scale)
			lo, hi := lowerBound(i, scale), lowerBound(i+1, scale)
			// Relative slack for the float error of Log near a boundary.
			if !(v > lo*(1-1e-12) && v <= hi*(1+1e-12)) {
				t.Errorf("scale %d: %g in bucket %d = (%g, %g]", scale, v, i, lo, hi)
			}
		}
	}
	// Powers of two are upper bounds, exactly.
	if i := expIndex(1, 3); i != -1 {
		t.Errorf("index of 1 at scale 3 = %d, want -1", i)
	}
	if i := expIndex(4, 0); i != 1 {
		t.Errorf("index of 4 at scale 0 = %d, want 1", i)
	}
}

// TestExpHistMatchesBruteForce checks that downscaling and widening keep
// every observation in the bucket a direct computation at the final scale
// gives, within the bucket bound.
func TestExpHistMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	h := newExpHist()
	var vals []float64
	for i := 0; i < 20000; i++ {
		v := math.Exp(r.NormFloat64()*3 - 4) // spans many powers of two
		if i%1000 == 0 {
			v = 0
		}
		vals = append(vals, v)
		h.observe(v)
	}
	if len(h.counts) > ExpMaxBuckets {
		t.Fatalf("%d buckets", len(h.counts))
	}
	want := map[int32]uint64{}
	var zero uint64
	for _, v := range vals {
		if v == 0 {
			zero++
			continue
		}
		want[expIndex(v, h.scale)]++
	}
	if h.zero != zero {
		t.Errorf("zero = %d, want %d", h.zero, zero)
	}
	for j, c := range h.counts {
		i := h.offset + int32(j)
		if c != want[i] {
			t.Errorf("scale %d bucket %d = %d, want %d", h.scale, i, c, want[i])
		}
		delete(want, i)
	}
	for i, c := range want {
		if c != 0 {
			t.Errorf("bucket %d missing (%d)", i, c)
		}
	}
	t.Logf("scale %d, %d buckets", h.scale, len(h.counts))

	// Merging two halves gives the whole.
	a, b := newExpHist(), newExpHist()
	for i, v := range vals {
		if i%2 == 0 {
			a.observe(v)
		} else {
			b.observe(v * 1000) // a different range: different scales
		}
	}
	m := MergeExp(a.snapshot(), b.snapshot())
	var n uint64 = m.Zero
	for _, c := range m.Counts {
		n += c
	}
	if n != uint64(len(vals)) || len(m.Counts) > ExpMaxBuckets || m.Scale > min(a.scale, b.scale) {
		t.Errorf("merged: %d observations, %d buckets, scale %d (a %d, b %d)", n, len(m.Counts), m.Scale, a.scale, b.scale)
	}
}

func TestExpHistSteadyStateDoesNotAllocate(t *testing.T) {
	h := newExpHist()
	for _, v := range []float64{0.001, 0.01, 0.1, 1} {
		h.observe(v)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		h.observe(0.002)
		h.observe(0.5)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per observation", allocs)
	}
}

// The table expIndex uses up to ExpMaxScale puts every value where the
// logarithm does, but for values within float error of a boundary (where
// the table's exact comparison is the one to trust); exact boundaries
// (base^i) go to bucket i-1, as the bucket (base^(i-1), base^i] says.
func TestExpIndexTableMatchesLog(t *testing.T) {
	logIndex := func(v float64, scale int32) int32 {
		return int32(math.Ceil(math.Log(v)*math.Ldexp(math.Log2E, int(scale)))) - 1
	}
	r := rand.New(rand.NewSource(2))
	for n := 0; n < 2_000_000; n++ {
		v := math.Exp(r.NormFloat64() * 20)
		if frac, _ := math.Frexp(v); frac == 0.5 {
			continue
		}
		for scale := int32(1); scale <= ExpMaxScale; scale++ {
			got, want := expIndex(v, scale), logIndex(v, scale)
			if got == want {
				continue
			}
			// Only allowed right at a boundary.
			b := lowerBound(max(got, want), scale)
			if math.Abs(v-b) > b*1e-13 {
				t.Fatalf("scale %d: %g in bucket %d, the logarithm says %d (boundary %g)", scale, v, got, want, b)
			}
		}
	}
	for i := int32(-2000); i < 2000; i += 7 {
		v := lowerBound(i, ExpMaxScale) // as exact as Exp2 makes it
		if got := expIndex(v, ExpMaxScale); got != i-1 && got != i {
			t.Errorf("boundary %d (%g): bucket %d", i, v, got)
		}
	}
}

func BenchmarkExpIndex(b *testing.B) {
	vals := make([]float64, 1024)
	r := rand.New(rand.NewSource(3))
	for i := range vals {
		vals[i] = math.Exp(r.NormFloat64()*3 - 4)
	}
	b.ResetTimer()
	var sink int32
	for i := 0; i < b.N; i++ {
		sink += expIndex(vals[i%len(vals)], 3)
	}
	_ = sink
}
