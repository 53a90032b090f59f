package userfunc

import (
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf/link"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/internal/decodetest"
	"github.com/blindspot-dev/blindspot/probes/internal/eventbytes"
)

const (
	ufCountID   = 7 // a counter with one string label
	ufSecondsID = 8 // a histogram with one string label
)

// decoderRig is the family's decoder over two specs, and the aggregator
// it folds into.
type decoderRig struct {
	*decodetest.Rig
	user               *Probes
	ufCount, ufSeconds *aggregator.Metric
}

func newDecoderRig(t testing.TB) *decoderRig {
	t.Helper()
	r := &decoderRig{
		user:      New(),
		ufCount:   &aggregator.Metric{Name: "orders_total", Help: "Orders.", Unit: "{call}", Kind: aggregator.Counter, Labels: []string{"order_type"}},
		ufSeconds: &aggregator.Metric{Name: "charge_duration_seconds", Help: "Charges.", Unit: "s", Kind: aggregator.Histogram, Labels: []string{"gateway"}, Buckets: aggregator.DurationBuckets},
	}
	specs := map[uint32]*userDecode{
		ufCountID:   {metric: r.ufCount, n: 1, types: [MaxLabels]LabelType{LabelString}, maxLen: [MaxLabels]int{64}},
		ufSecondsID: {metric: r.ufSeconds, n: 1, types: [MaxLabels]LabelType{LabelString}, maxLen: [MaxLabels]int{16}, duration: true},
	}
	r.user.byID.Store(&specs)
	r.Rig = decodetest.NewRig([]*aggregator.Metric{r.ufCount, r.ufSeconds}, func(*aggregator.Aggregator) *probes.Family { return r.user.Family() })
	return r
}

// A plausible business event, changed by f.
func userEvent(id uint32, label string, f func(*bpfUfEvent)) []byte {
	var ev bpfUfEvent
	ev.Hdr.Kind, ev.Hdr.Pid, ev.Hdr.StartNs, ev.Hdr.EndNs = kindUserFunc, 42, 1000000, 3000000
	ev.Id = id
	ev.V.Len[0] = eventbytes.SetChars(ev.V.Str[0][:], label)
	if f != nil {
		f(&ev)
	}
	return eventbytes.Raw(&ev)
}

// Crafted events with an implausible value, as a misread program yields
// them, are refused by the decoder under the right reason, and nothing of
// them reaches the shard.
func TestDecodeRefusesImplausibleEvents(t *testing.T) {
	r := newDecoderRig(t)
	r.Refuses(t, decodetest.Cases{
		{"business label invalid UTF-8", userEvent(ufCountID, "re\xc3\x28tail", nil), probes.InvalidUTF8, "utf8"},
		{"business label NUL", userEvent(ufCountID, "retail\x00", nil), probes.InvalidUTF8, "utf8"},
		{"business end before start", userEvent(ufSecondsID, "stripe", func(e *bpfUfEvent) { e.Hdr.StartNs, e.Hdr.EndNs = 3000000, 1000000 }), probes.InvalidDuration, "duration"},
	})
}

// What a correctly read program sends is still decoded: a business label
// of a counter, text cut by its buffer in the middle of a rune.
func TestDecodeAcceptsPlausibleEdges(t *testing.T) {
	r := newDecoderRig(t)
	for _, c := range []struct {
		name string
		raw  []byte
	}{
		{"business counter", userEvent(ufCountID, "retail", nil)},
		{"business histogram cut in a rune", userEvent(ufSecondsID, "abcdefghijklmnoé", func(e *bpfUfEvent) { e.V.Len[0] = 16 })},
	} {
		if v := r.Decode(r.Sh, r.TID, c.raw); v != probes.Decoded {
			t.Errorf("%s: verdict %d, want decoded", c.name, v)
		}
	}
	got := r.Observed()
	want := map[string]uint64{"orders_total": 1, "charge_duration_seconds": 1}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d observations, want %d (all: %v)", k, got[k], n, got)
		}
	}
	r.LabelsValid(t)
}

// The decoder folds an event into a shard without allocating once its
// labels have been seen, and refuses an implausible one without allocating
// either; Entry, which the reader calls for the event's window, neither.
func TestDecodeDoesNotAllocate(t *testing.T) {
	r := newDecoderRig(t)
	for _, c := range []struct {
		name string
		raw  []byte
		want probes.Verdict
	}{
		{"business", userEvent(ufCountID, "retail", nil), probes.Decoded},
		{"invalid business", userEvent(ufCountID, "re\xfftail", nil), probes.InvalidUTF8},
	} {
		if v := r.Decode(r.Sh, r.TID, c.raw); v != c.want {
			t.Fatalf("%s: verdict %d, want %d", c.name, v, c.want)
		}
		if allocs := testing.AllocsPerRun(200, func() { r.Decode(r.Sh, r.TID, c.raw) }); allocs != 0 {
			t.Errorf("%s: %v allocations per event, want 0", c.name, allocs)
		}
		if allocs := testing.AllocsPerRun(200, func() { r.user.Entry(c.raw) }); allocs != 0 {
			t.Errorf("%s: Entry makes %v allocations, want 0", c.name, allocs)
		}
	}
}

// An event's entry, for the invalid-event policy, is its spec id.
func TestEntryIsTheSpecID(t *testing.T) {
	for _, id := range []uint32{ufCountID, 0x01020304, ^uint32(0)} {
		if got := New().Entry(userEvent(id, "x", nil)); got != id {
			t.Errorf("Entry = %#x, want %#x", got, id)
		}
	}
}

// fakeLink counts its closes.
type fakeLink struct {
	link.Link
	closed *atomic.Int32
}

func (l fakeLink) Close() error {
	l.closed.Add(1)
	return nil
}

// The invalid-event policy detaches a configured business function whose
// string labels keep failing the check from one process (the manager's
// side, from the readers' windows to DetachEntry, is probes'
// TestInvalidEventsDetachOneEntry): its links are closed, its status is
// the reason, and it is detached once.
func TestDetachEntry(t *testing.T) {
	r := newDecoderRig(t)
	var closed atomic.Int32
	f := &Func{Entry: &Entry{Function: "main.placeOrder", Metric: "orders_total"}, Metric: r.ufCount}
	const key = "orders-key"
	u := r.user
	u.funcs = map[string]*Func{key: f}
	u.specs = map[specKey]*userSpec{{key, nil}: {id: ufCountID}}
	u.procs = map[int]*userProc{42: {pid: 42,
		links:    map[string][]link.Link{key: {fakeLink{closed: &closed}}},
		statuses: map[string]probes.ProbeStatus{key: {Family: "userfunc:orders_total", Sites: []string{"main.placeOrder"}}},
	}}
	const reason = "detached: 25 of 25 events invalid (utf8) — offsets for this binary are likely wrong"
	if _, ok := u.DetachEntry(43, ufCountID, reason); ok {
		t.Error("detached from a process it is not attached to")
	}
	if _, ok := u.DetachEntry(42, ufSecondsID, reason); ok {
		t.Error("detached an entry the process does not have")
	}
	st, ok := u.DetachEntry(42, ufCountID, reason)
	if !ok || st.Family != "userfunc:orders_total" || st.Error != reason {
		t.Fatalf("DetachEntry = %+v, %v", st, ok)
	}
	if _, ok := u.DetachEntry(42, ufCountID, reason); ok {
		t.Error("detached twice")
	}
	if closed.Load() != 1 {
		t.Errorf("links closed %d times, want 1", closed.Load())
	}
	if st := u.UserStatus(42); len(st) != 1 || st[0].Error != reason {
		t.Errorf("UserStatus = %+v", st)
	}
}

// FuzzDecode: arbitrary ring events never panic the decoder nor make it
// allocate beyond a bound.
func FuzzDecode(f *testing.F) {
	newDecoderRig(f).Fuzz(f, userEvent(ufCountID, "retail", nil), userEvent(ufSecondsID, "stripe", nil))
}
