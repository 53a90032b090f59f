package dbsql

import (
	"testing"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/internal/decodetest"
	"github.com/blindspot-dev/blindspot/probes/internal/eventbytes"
)

func raw[T any](ev *T) []byte             { return eventbytes.Raw(ev) }
func setChars(dst []int8, s string) uint8 { return eventbytes.SetChars(dst, s) }

type decoderRig = decodetest.Rig

func newDecoderRig(t testing.TB) *decoderRig {
	t.Helper()
	return decodetest.NewRig(Metrics(), func(agg *aggregator.Aggregator) *probes.Family { return Family(agg, nil) })
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
	cases := decodetest.Cases{
		// database/sql.
		{"db query invalid UTF-8", dbEvent(func(e *bpfDbEvent) { e.QueryLen = uint16(setChars(e.Query[:], "SELECT \xff FROM items")) }), probes.InvalidUTF8, "utf8"},
		{"db query NUL", dbEvent(func(e *bpfDbEvent) { e.QueryLen = uint16(setChars(e.Query[:], "SELECT 1\x00\x00")) }), probes.InvalidUTF8, "utf8"},
		{"db end before start", dbEvent(func(e *bpfDbEvent) { e.Hdr.StartNs, e.Hdr.EndNs = 3000000, 1000000 }), probes.InvalidDuration, "duration"},
		{"db wait end before start", dbEvent(func(e *bpfDbEvent) { e.Op, e.Hdr.StartNs, e.Hdr.EndNs = dbOpWait, 3000000, 1000000 }), probes.InvalidDuration, "duration"},
	}
	r.Refuses(t, cases)
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
		if v := r.Decode(r.Sh, r.TID, c.raw); v != probes.Decoded {
			t.Errorf("%s: verdict %d, want decoded", c.name, v)
		}
	}
	if got := r.Observed(); got["db_client_operation_duration_seconds"] != 2 {
		t.Errorf("db_client_operation_duration_seconds: %d observations, want 2 (all: %v)", got["db_client_operation_duration_seconds"], got)
	}
	r.LabelsValid(t)
}

// FuzzDecode: arbitrary ring events never panic the decoder nor make it
// allocate beyond a bound.
func FuzzDecode(f *testing.F) {
	newDecoderRig(f).Fuzz(f, dbEvent(nil))
}

// BenchmarkDecode is the decoder's and the aggregator's share of one
// operation on the steady path (labels and series seen before).
func BenchmarkDecode(b *testing.B) {
	r := newDecoderRig(b)
	var evs [][]byte
	for _, q := range []string{
		"SELECT id, total FROM orders WHERE id = $1",
		"INSERT INTO orders (id, total) VALUES ($1, $2)",
		"UPDATE items SET stock = stock - 1 WHERE id = ?",
	} {
		evs = append(evs, dbEvent(func(e *bpfDbEvent) { e.QueryLen = uint16(setChars(e.Query[:], q)) }))
	}
	evs = append(evs, dbEvent(func(e *bpfDbEvent) { e.Op, e.QueryLen = dbOpCommit, 0 }))
	r.Benchmark(b, evs)
}
