// Package decodetest runs a probe family's decoder in tests, on an
// aggregator of its own (events are built with package eventbytes).
package decodetest

import (
	"runtime"
	"testing"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/label"
)

// Rig is a family's decoder and the one-shard aggregator it folds into,
// with one target (PID 42).
type Rig struct {
	Agg    *aggregator.Aggregator
	Sh     *aggregator.Shard
	TID    aggregator.TargetID
	Decode probes.Decoder
}

// NewRig builds a rig for the family whose metrics are given; family makes
// the family on the rig's aggregator.
func NewRig(metrics []*aggregator.Metric, family func(*aggregator.Aggregator) *probes.Family) *Rig {
	r := &Rig{Agg: aggregator.New(metrics, aggregator.Options{Shards: 1})}
	r.TID = r.Agg.AddTarget(aggregator.Target{PID: 42, Service: "svc"})
	r.Sh = r.Agg.Shard(0)
	r.Decode = family(r.Agg).Decode
	return r
}

// Observed counts what reached the aggregator, by metric name.
func (r *Rig) Observed() map[string]uint64 {
	out := map[string]uint64{}
	for _, p := range r.Agg.Snapshot() {
		out[p.Metric.Name] += p.Count
	}
	return out
}

// Cases are crafted events and what the decoder must make of each: the
// verdict, and its label in blindspot_events_invalid_total. (An unnamed
// element type, so that tests may list cases without field names.)
type Cases = []struct {
	Name   string
	Raw    []byte
	Want   probes.Verdict
	Reason string
}

// Refuses checks that the decoder reaches each case's verdict and reason,
// and that nothing of the events reached the aggregator.
func (r *Rig) Refuses(t testing.TB, cases Cases) {
	t.Helper()
	for _, c := range cases {
		v := r.Decode(r.Sh, r.TID, c.Raw)
		if v != c.Want {
			t.Errorf("%s: verdict %d, want %d", c.Name, v, c.Want)
			continue
		}
		if got := v.Reason(); got != c.Reason {
			t.Errorf("%s: reason %q, want %q", c.Name, got, c.Reason)
		}
	}
	if got := r.Observed(); len(got) != 0 {
		t.Errorf("implausible events reached the aggregator: %v", got)
	}
}

// LabelsValid checks that every label in the aggregator is text a label
// may hold.
func (r *Rig) LabelsValid(t testing.TB) {
	t.Helper()
	for _, p := range r.Agg.Snapshot() {
		for _, l := range p.Labels {
			if _, ok := label.Text([]byte(l), false, false); !ok {
				t.Errorf("%s: label %q is not valid UTF-8", p.Metric.Name, l)
			}
		}
	}
}

// maxDecodeAlloc bounds what decoding one ring event may allocate: a new
// series interns its labels (a few strings of at most a few hundred bytes).
const maxDecodeAlloc = 64 << 10

// maxFirstDecodeAlloc bounds the first decoding of an event that adds a
// series: the aggregator's maps (bounded by the series limit) grow then,
// and one growth step of a map holding the thousands of series a fuzzing
// run makes is tens of kilobytes, amortized over the series before it.
const maxFirstDecodeAlloc = 1 << 20

// Fuzz feeds arbitrary ring events to the decoder, seeded with seeds: any
// verdict will do, but no panic, and at most maxDecodeAlloc bytes
// allocated per event whatever its bytes claim.
func (r *Rig) Fuzz(f *testing.F, seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		alloc := func() uint64 {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			r.Decode(r.Sh, r.TID, raw)
			runtime.ReadMemStats(&after)
			return after.TotalAlloc - before.TotalAlloc
		}
		first := alloc()
		if first > maxFirstDecodeAlloc {
			t.Fatalf("decoding %d bytes allocated %d", len(raw), first)
		}
		// Past the bound: map growth for a new series, or the event's own
		// cost? Decoding it again (its series now exists) tells.
		if first > maxDecodeAlloc {
			if n := alloc(); n > maxDecodeAlloc {
				t.Fatalf("decoding %d bytes allocated %d, and %d again", len(raw), first, n)
			}
		}
	})
}

// Benchmark decodes evs over and over once each has been decoded (and its
// series made) a first time: the decoder's and the aggregator's share of
// one event on the steady path, in ns/op and allocs/op.
func (r *Rig) Benchmark(b *testing.B, evs [][]byte) {
	b.Helper()
	for _, ev := range evs {
		if v := r.Decode(r.Sh, r.TID, ev); v != probes.Decoded {
			b.Fatalf("verdict %d, want decoded", v)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Decode(r.Sh, r.TID, evs[i%len(evs)])
	}
}
