package dbsql

import (
	"testing"
	"unsafe"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/label"
)

// raw views an event struct as the bytes a ring buffer would hand over.
func raw[T any](ev *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(ev)), unsafe.Sizeof(*ev))
}

func setChars(dst []int8, s string) uint8 {
	for i := 0; i < len(s) && i < len(dst); i++ {
		dst[i] = int8(s[i])
	}
	return uint8(min(len(s), len(dst)))
}

// decoderRig is the family's decoder and the aggregator it folds into.
type decoderRig struct {
	agg    *aggregator.Aggregator
	sh     *aggregator.Shard
	tid    aggregator.TargetID
	decode probes.Decoder
}

func newDecoderRig(t *testing.T) *decoderRig {
	t.Helper()
	r := &decoderRig{agg: aggregator.New(Metrics(), aggregator.Options{Shards: 1})}
	r.tid = r.agg.AddTarget(aggregator.Target{PID: 42, Service: "svc"})
	r.sh = r.agg.Shard(0)
	r.decode = Family(r.agg, nil).Decode
	return r
}

// observed counts what reached the aggregator, by metric.
func (r *decoderRig) observed() map[string]uint64 {
	out := map[string]uint64{}
	for _, p := range r.agg.Snapshot() {
		out[p.Metric.Name] += p.Count
	}
	return out
}

// A plausible event, changed by f.
func dbEvent(f func(*bpfDbEvent)) []byte {
	var ev bpfDbEvent
	ev.Hdr.Kind, ev.Hdr.Pid, ev.Hdr.StartNs, ev.Hdr.EndNs = kindDB, 42, 1000000, 3000000
	ev.Op = dbOpQuery
	ev.QueryLen = uint16(setChars(ev.Query[:], "SELECT id FROM items WHERE id = $1"))
	if f != nil {
		f(&ev)
	}
	return raw(&ev)
}

// Crafted events with an implausible value, as a misread program yields
// them, are refused by the decoder under the right reason, and nothing of
// them reaches the shard.
func TestDecodeRefusesImplausibleEvents(t *testing.T) {
	r := newDecoderRig(t)
	cases := []struct {
		name   string
		raw    []byte
		want   probes.Verdict
		reason string
	}{
		// database/sql.
		{"db query invalid UTF-8", dbEvent(func(e *bpfDbEvent) { e.QueryLen = uint16(setChars(e.Query[:], "SELECT \xff FROM items")) }), probes.InvalidUTF8, "utf8"},
		{"db query NUL", dbEvent(func(e *bpfDbEvent) { e.QueryLen = uint16(setChars(e.Query[:], "SELECT 1\x00\x00")) }), probes.InvalidUTF8, "utf8"},
		{"db end before start", dbEvent(func(e *bpfDbEvent) { e.Hdr.StartNs, e.Hdr.EndNs = 3000000, 1000000 }), probes.InvalidDuration, "duration"},
		{"db wait end before start", dbEvent(func(e *bpfDbEvent) { e.Op, e.Hdr.StartNs, e.Hdr.EndNs = dbOpWait, 3000000, 1000000 }), probes.InvalidDuration, "duration"},
	}
	for _, c := range cases {
		v := r.decode(r.sh, r.tid, c.raw)
		if v != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, v, c.want)
			continue
		}
		if got := v.Reason(); got != c.reason {
			t.Errorf("%s: reason %q, want %q", c.name, got, c.reason)
		}
	}
	if got := r.observed(); len(got) != 0 {
		t.Errorf("implausible events reached the aggregator: %v", got)
	}
}

// What a correctly read program sends is still decoded.
func TestDecodeAcceptsPlausibleEdges(t *testing.T) {
	r := newDecoderRig(t)
	for _, c := range []struct {
		name string
		raw  []byte
	}{
		{"db multi-line query", dbEvent(func(e *bpfDbEvent) { e.QueryLen = uint16(setChars(e.Query[:], "SELECT id\n\tFROM items\r\n")) })},
		{"db begin", dbEvent(func(e *bpfDbEvent) { e.Op, e.QueryLen = dbOpBegin, 0 })},
	} {
		if v := r.decode(r.sh, r.tid, c.raw); v != probes.Decoded {
			t.Errorf("%s: verdict %d, want decoded", c.name, v)
		}
	}
	if got := r.observed(); got["db_client_operation_duration_seconds"] != 2 {
		t.Errorf("db_client_operation_duration_seconds: %d observations, want 2 (all: %v)", got["db_client_operation_duration_seconds"], got)
	}
	for _, p := range r.agg.Snapshot() {
		for _, l := range p.Labels {
			if _, ok := label.Text([]byte(l), false, false); !ok {
				t.Errorf("%s: label %q is not valid UTF-8", p.Metric.Name, l)
			}
		}
	}
}
