package aggregator

import "math"

// Every histogram series also keeps a base-2 exponential histogram of its
// observations: what OpenTelemetry calls an exponential histogram and
// Prometheus a native histogram. Both use the same scale (Prometheus calls it
// the schema): bucket boundaries are powers of base = 2^(2^-scale). The
// indexing follows OpenTelemetry: bucket i holds values in
// (base^i, base^(i+1)]; Prometheus' index of the same bucket is i+1.
const (
	// ExpMaxScale is where a series starts: the finest scale Prometheus
	// accepts (256 buckets per power of two).
	ExpMaxScale = 8
	// ExpMaxBuckets bounds the buckets of one series, as the OpenTelemetry
	// SDK's default does: past it, the series halves its resolution.
	ExpMaxBuckets = 160
)

// ExpBuckets is an exponential histogram's state: observations <= 0 in
// Zero, the others in Counts, where Counts[j] is bucket Offset+j at Scale.
type ExpBuckets struct {
	Scale  int32
	Zero   uint64
	Offset int32
	Counts []uint64
}

// expHist is the event path's exponential histogram. It allocates only when
// its range of buckets widens, which happens a bounded number of times
// (never beyond ExpMaxBuckets).
type expHist struct {
	scale  int32
	zero   uint64
	offset int32
	counts []uint64
}

func newExpHist() expHist { return expHist{scale: ExpMaxScale} }

// expIndex returns the bucket index of v > 0 at scale.
func expIndex(v float64, scale int32) int32 {
	if bits := math.Float64bits(v); scale > 0 && scale <= ExpMaxScale && bits>>52 != 0 && bits>>52 < 0x7ff {
		// A normal number, v = 1.m * 2^e: the event path's case, without
		// Frexp.
		e := int32(bits>>52) - 1023
		if bits&(1<<52-1) == 0 {
			return e<<scale - 1 // a power of two is its bucket's upper bound
		}
		m := math.Float64frombits(bits&(1<<52-1) | 1023<<52)
		return (e<<ExpMaxScale + mantissaIndex(m)) >> (ExpMaxScale - scale)
	}
	frac, exp := math.Frexp(v) // v = frac * 2^exp, frac in [0.5, 1)
	if scale <= 0 {
		k := exp - 1
		if frac == 0.5 { // an exact power of two is its bucket's upper bound
			k--
		}
		return int32(k >> -scale)
	}
	if frac == 0.5 {
		return int32((exp-1)<<scale - 1)
	}
	if scale <= ExpMaxScale {
		// The index at ExpMaxScale from the mantissa, by table, then
		// coarsened to scale: each bucket there is 2^(ExpMaxScale-scale)
		// neighbours at ExpMaxScale. No logarithm on the event path.
		return (int32(exp-1)<<ExpMaxScale + mantissaIndex(frac*2)) >> (ExpMaxScale - scale)
	}
	// ceil(log2(v) * 2^scale) - 1, as the OpenTelemetry SDK computes it.
	return int32(math.Ceil(math.Log(v)*math.Ldexp(math.Log2E, int(scale)))) - 1
}

// expBounds are the bucket boundaries within one power of two at
// ExpMaxScale: expBounds[k] = 2^(k/2^ExpMaxScale), from 1 to 2.
var expBounds = func() (b [1<<ExpMaxScale + 1]float64) {
	for k := range b {
		b[k] = math.Exp2(float64(k) / (1 << ExpMaxScale))
	}
	return b
}()

// expSlotBits is how many leading mantissa bits pick a slot of expSlots:
// a slot (1/1024 of [1, 2)) is narrower than any bucket at ExpMaxScale
// (at least 0.27% of the value), so it holds at most one boundary.
const expSlotBits = 10

// expSlots[s] is the index at ExpMaxScale of the values just above the
// slot's lower end, 1 + s/2^expSlotBits.
var expSlots = func() (t [1 << expSlotBits]uint16) {
	for s := range t {
		low := 1 + float64(s)/(1<<expSlotBits)
		j := 0
		for j+1 < 1<<ExpMaxScale && expBounds[j+1] < low {
			j++
		}
		t[s] = uint16(j)
	}
	return t
}()

// mantissaIndex returns the j in [0, 2^ExpMaxScale) with
// expBounds[j] < m <= expBounds[j+1], for m in (1, 2).
func mantissaIndex(m float64) int32 {
	s := math.Float64bits(m) >> (52 - expSlotBits) & (1<<expSlotBits - 1)
	j := int32(expSlots[s])
	if expBounds[j+1] < m {
		j++
	}
	return j
}

func (h *expHist) observe(v float64) {
	if !(v > 0) {
		h.zero++
		return
	}
	idx := expIndex(v, h.scale)
	if len(h.counts) == 0 {
		if cap(h.counts) == 0 {
			h.counts = make([]uint64, 1, 8)
		} else {
			h.counts = h.counts[:1]
		}
		h.offset = idx
		h.counts[0] = 1
		return
	}
	hi := h.offset + int32(len(h.counts)) - 1
	if idx < h.offset || idx > hi {
		lo := min(h.offset, idx)
		hi = max(hi, idx)
		d := int32(0)
		for (hi>>d)-(lo>>d)+1 > ExpMaxBuckets {
			d++
		}
		if d > 0 {
			h.downscale(d)
			idx >>= d
			lo >>= d
			hi >>= d
		}
		h.widen(lo, hi)
	}
	h.counts[idx-h.offset]++
}

// downscale lowers the scale by d, merging each 2^d neighbours.
func (h *expHist) downscale(d int32) {
	h.scale -= d
	if len(h.counts) == 0 {
		return
	}
	lo := h.offset >> d
	for j := range h.counts {
		i := h.offset + int32(j)
		c := h.counts[j]
		h.counts[j] = 0
		h.counts[(i>>d)-lo] += c
	}
	h.counts = h.counts[:(h.offset+int32(len(h.counts))-1)>>d-lo+1]
	h.offset = lo
}

// widen makes counts cover [lo, hi], which contains the current range.
func (h *expHist) widen(lo, hi int32) {
	n := int(hi - lo + 1)
	shift := int(h.offset - lo)
	old := len(h.counts)
	if n > len(h.counts) && n <= cap(h.counts) {
		h.counts = h.counts[:n]
		copy(h.counts[shift:], h.counts[:old])
		clear(h.counts[:shift])
		clear(h.counts[shift+old:])
	} else if n > cap(h.counts) {
		c := make([]uint64, n, min(max(n, 2*cap(h.counts)), ExpMaxBuckets))
		copy(c[shift:], h.counts)
		h.counts = c
	}
	h.offset = lo
}

// add merges b into a (a copy the caller owns), at the coarser of the two
// scales, within ExpMaxBuckets.
func (a *ExpBuckets) add(b *ExpBuckets) {
	a.Zero += b.Zero
	if len(b.Counts) == 0 {
		if b.Scale < a.Scale {
			a.Downscale(a.Scale - b.Scale)
		}
		return
	}
	if len(a.Counts) == 0 {
		zero := a.Zero
		scale := a.Scale
		*a = ExpBuckets{Scale: b.Scale, Zero: zero, Offset: b.Offset, Counts: append([]uint64(nil), b.Counts...)}
		if scale < b.Scale {
			a.Downscale(b.Scale - scale)
		}
		return
	}
	if b.Scale < a.Scale {
		a.Downscale(a.Scale - b.Scale)
	}
	d := b.Scale - a.Scale // >= 0: b is as fine as a, or finer
	// b's buckets at a's scale are b's indexes shifted by d.
	blo := b.Offset >> d
	bhi := (b.Offset + int32(len(b.Counts)) - 1) >> d
	lo := min(a.Offset, blo)
	hi := max(a.Offset+int32(len(a.Counts))-1, bhi)
	e := int32(0)
	for (hi>>e)-(lo>>e)+1 > ExpMaxBuckets {
		e++
	}
	if e > 0 {
		a.Downscale(e)
		d += e
		lo >>= e
		hi >>= e
	}
	c := make([]uint64, hi-lo+1)
	copy(c[a.Offset-lo:], a.Counts)
	for j, n := range b.Counts {
		c[((b.Offset+int32(j))>>d)-lo] += n
	}
	a.Offset, a.Counts = lo, c
}

// Downscale lowers the scale by d in place, merging each 2^d neighbours.
func (a *ExpBuckets) Downscale(d int32) {
	if d <= 0 {
		return
	}
	h := expHist{scale: a.Scale, zero: a.Zero, offset: a.Offset, counts: a.Counts}
	h.downscale(d)
	a.Scale, a.Offset, a.Counts = h.scale, h.offset, h.counts
}

// Clone returns a deep copy.
func (a *ExpBuckets) Clone() *ExpBuckets {
	if a == nil {
		return nil
	}
	c := *a
	c.Counts = append([]uint64(nil), a.Counts...)
	return &c
}

// MergeExp returns the sum of a and b (either may be nil) at the coarser scale.
func MergeExp(a, b *ExpBuckets) *ExpBuckets {
	switch {
	case a == nil:
		return b.Clone()
	case b == nil:
		return a.Clone()
	}
	c := a.Clone()
	c.add(b)
	return c
}

func (h *expHist) snapshot() *ExpBuckets {
	return &ExpBuckets{Scale: h.scale, Zero: h.zero, Offset: h.offset, Counts: append([]uint64(nil), h.counts...)}
}
