package probes

import (
	"testing"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes/label"
	"github.com/blindspot-dev/blindspot/probes/userfunc"
)

// decoderRig holds the business functions' decoder, the stand-in
// families' (fakefamily_test.go) and the aggregator they fold into.
type decoderRig struct {
	agg                *aggregator.Aggregator
	sh                 *aggregator.Shard
	tid                aggregator.TargetID
	user               *userProbes
	ufCount, ufSeconds *aggregator.Metric
}

const (
	ufCountID   = 7 // a counter with one string label
	ufSecondsID = 8 // a histogram with one string label
)

func newDecoderRig(t *testing.T) *decoderRig {
	t.Helper()
	r := &decoderRig{
		ufCount:   &aggregator.Metric{Name: "orders_total", Help: "Orders.", Unit: "{call}", Kind: aggregator.Counter, Labels: []string{"order_type"}},
		ufSeconds: &aggregator.Metric{Name: "charge_duration_seconds", Help: "Charges.", Unit: "s", Kind: aggregator.Histogram, Labels: []string{"gateway"}, Buckets: aggregator.DurationBuckets},
	}
	r.agg = aggregator.New([]*aggregator.Metric{fakeDuration, r.ufCount, r.ufSeconds}, aggregator.Options{Shards: 1})
	r.tid = r.agg.AddTarget(aggregator.Target{PID: 42, Service: "svc"})
	r.sh = r.agg.Shard(0)
	r.user = &userProbes{}
	specs := map[uint32]*userDecode{
		ufCountID:   {metric: r.ufCount, n: 1, types: [userfunc.MaxLabels]userfunc.LabelType{userfunc.LabelString}, maxLen: [userfunc.MaxLabels]int{64}},
		ufSecondsID: {metric: r.ufSeconds, n: 1, types: [userfunc.MaxLabels]userfunc.LabelType{userfunc.LabelString}, maxLen: [userfunc.MaxLabels]int{16}, duration: true},
	}
	r.user.byID.Store(&specs)
	return r
}

func (r *decoderRig) decoders() [MaxKinds]Decoder {
	var d [MaxKinds]Decoder
	d[kindServer] = fakeDecode
	d[kindClient] = fakeDecode
	d[kindUserFunc] = r.user.decode
	return d
}

// observed counts what reached the aggregator, by metric.
func (r *decoderRig) observed() map[string]uint64 {
	out := map[string]uint64{}
	for _, p := range r.agg.Snapshot() {
		out[p.Metric.Name] += p.Count // a counter's count is its value here
	}
	return out
}

// A plausible business event, changed by f.
func userEvent(id uint32, label string, f func(*userFuncUfEvent)) []byte {
	var ev userFuncUfEvent
	ev.Hdr.Kind, ev.Hdr.Pid, ev.Hdr.StartNs, ev.Hdr.EndNs = kindUserFunc, 42, 1000000, 3000000
	ev.Id = id
	ev.V.Len[0] = setChars(ev.V.Str[0][:], label)
	if f != nil {
		f(&ev)
	}
	return raw(&ev)
}

// Crafted events with an implausible value, as a misread program yields
// them, are refused by their decoder under the right reason, and nothing
// of them reaches the shard.
func TestDecodersRefuseImplausibleEvents(t *testing.T) {
	r := newDecoderRig(t)
	dec := r.decoders()
	cases := []struct {
		name   string
		raw    []byte
		want   Verdict
		reason string
	}{
		// Business functions.
		{"business label invalid UTF-8", userEvent(ufCountID, "re\xc3\x28tail", nil), InvalidUTF8, "utf8"},
		{"business label NUL", userEvent(ufCountID, "retail\x00", nil), InvalidUTF8, "utf8"},
		{"business end before start", userEvent(ufSecondsID, "stripe", func(e *userFuncUfEvent) { e.Hdr.StartNs, e.Hdr.EndNs = 3000000, 1000000 }), InvalidDuration, "duration"},
	}
	for _, c := range cases {
		kind := uint16(c.raw[0]) | uint16(c.raw[1])<<8
		v := dec[kind](r.sh, r.tid, c.raw)
		if v != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, v, c.want)
			continue
		}
		if got := invalidReasons[v]; got != c.reason {
			t.Errorf("%s: reason %q, want %q", c.name, got, c.reason)
		}
	}
	if got := r.observed(); len(got) != 0 {
		t.Errorf("implausible events reached the aggregator: %v", got)
	}
}

// What a correctly read program sends is still decoded: unknown methods
// that are tokens, text cut by its buffer in the middle of a rune, SQL
// laid out on several lines, a business label of a counter.
func TestDecodersAcceptPlausibleEdges(t *testing.T) {
	r := newDecoderRig(t)
	dec := r.decoders()
	for _, c := range []struct {
		name string
		raw  []byte
	}{
		{"business counter", userEvent(ufCountID, "retail", nil)},
		{"business histogram cut in a rune", userEvent(ufSecondsID, "abcdefghijklmnoé", func(e *userFuncUfEvent) { e.V.Len[0] = 16 })},
	} {
		kind := uint16(c.raw[0]) | uint16(c.raw[1])<<8
		if v := dec[kind](r.sh, r.tid, c.raw); v != Decoded {
			t.Errorf("%s: verdict %d, want decoded", c.name, v)
		}
	}
	got := r.observed()
	want := map[string]uint64{"orders_total": 1, "charge_duration_seconds": 1}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d observations, want %d (all: %v)", k, got[k], n, got)
		}
	}
	for _, p := range r.agg.Snapshot() {
		for _, l := range p.Labels {
			if _, ok := label.Text([]byte(l), false, false); !ok {
				t.Errorf("%s: label %q is not valid UTF-8", p.Metric.Name, l)
			}
		}
	}
}

// newTestReaders returns readers over the rig's decoders with one reader's
// counts, attributing pids to the rig's target.
func newTestReaders(r *decoderRig, pids ...uint32) (*readers, *readerCounts) {
	rd := &readers{agg: r.agg, targets: &targetTable{}, decoders: r.decoders()}
	for _, pid := range pids {
		rd.targets.set(pid, r.tid, true)
	}
	c := &readerCounts{}
	rd.counts = []*readerCounts{c}
	return rd, c
}

// The reader's whole path — attribution, decoding, counting, the window of
// an open (process, family) — allocates nothing per event, valid or not,
// once the window is open. The decoders are a stand-in family's and the
// business functions' (each family's own is tested in its package).
func TestReaderPathDoesNotAllocate(t *testing.T) {
	r := newDecoderRig(t)
	rd, c := newTestReaders(r, 42)
	good := fakeEvent(kindServer, 42, Decoded)
	bad := fakeEvent(kindServer, 42, InvalidStatus)
	badPath := fakeEvent(kindServer, 42, InvalidPath)
	badClient := fakeEvent(kindClient, 42, InvalidPort)
	business := userEvent(ufCountID, "retail", nil)
	badBusiness := userEvent(ufCountID, "re\xfftail", nil)
	for _, ev := range [][]byte{good, bad, badPath, badClient, business, badBusiness} {
		rd.handle(r.sh, c, ev) // opens the windows, interns the labels
	}
	for name, ev := range map[string][]byte{"valid": good, "invalid status": bad, "invalid path": badPath, "invalid port": badClient,
		"business": business, "invalid business": badBusiness} {
		if allocs := testing.AllocsPerRun(200, func() { rd.handle(r.sh, c, ev) }); allocs != 0 {
			t.Errorf("%s event: %v allocations, want 0", name, allocs)
		}
	}
	// Without an open window, a valid event does not even look one up.
	rd2, c2 := newTestReaders(r, 42)
	if allocs := testing.AllocsPerRun(200, func() { rd2.handle(r.sh, c2, good) }); allocs != 0 {
		t.Errorf("valid event without windows: %v allocations, want 0", allocs)
	}
}
