package probes

import (
	"testing"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// decoderRig holds the stand-in families (fakefamily_test.go), among them
// one of configured entries, and the aggregator they fold into.
type decoderRig struct {
	agg     *aggregator.Aggregator
	sh      *aggregator.Shard
	tid     aggregator.TargetID
	entries *fakeEntries
}

const (
	ufCountID   = 7 // an entry of the stand-in entries family
	ufSecondsID = 8 // another
)

func newDecoderRig(t *testing.T) *decoderRig {
	t.Helper()
	r := &decoderRig{entries: &fakeEntries{}}
	r.agg = aggregator.New([]*aggregator.Metric{fakeDuration}, aggregator.Options{Shards: 1})
	r.tid = r.agg.AddTarget(aggregator.Target{PID: 42, Service: "svc"})
	r.sh = r.agg.Shard(0)
	return r
}

func (r *decoderRig) decoders() [MaxKinds]Decoder {
	var d [MaxKinds]Decoder
	d[kindServer] = fakeDecode
	d[kindClient] = fakeDecode
	d[kindEntries] = fakeDecode
	return d
}

// entryOf is what New makes of the entries family's Entry.
func (r *decoderRig) entryOf() [MaxKinds]func([]byte) uint32 {
	var e [MaxKinds]func([]byte) uint32
	e[kindEntries] = r.entries.Entry
	return e
}

// newTestReaders returns readers over the rig's decoders with one reader's
// counts, attributing pids to the rig's target.
func newTestReaders(r *decoderRig, pids ...uint32) (*readers, *readerCounts) {
	rd := &readers{agg: r.agg, targets: &targetTable{}, decoders: r.decoders(), entries: r.entryOf()}
	for _, pid := range pids {
		rd.targets.set(pid, r.tid, true)
	}
	c := &readerCounts{}
	rd.counts = []*readerCounts{c}
	return rd, c
}

// The reader's whole path — attribution, decoding, counting, the window of
// an open (process, family) — allocates nothing per event, valid or not,
// once the window is open, also for a family of configured entries, whose
// windows are per entry. The decoders are stand-ins' (each family's own is
// tested in its package).
func TestReaderPathDoesNotAllocate(t *testing.T) {
	r := newDecoderRig(t)
	rd, c := newTestReaders(r, 42)
	good := fakeEvent(kindServer, 42, Decoded)
	bad := fakeEvent(kindServer, 42, InvalidStatus)
	badPath := fakeEvent(kindServer, 42, InvalidPath)
	badClient := fakeEvent(kindClient, 42, InvalidPort)
	business := fakeEntryEvent(42, ufCountID, Decoded)
	badBusiness := fakeEntryEvent(42, ufCountID, InvalidUTF8)
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
