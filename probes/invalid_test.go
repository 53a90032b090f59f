package probes

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// The reader counts invalid events per family and reason, and in the
// window of their (process, family) only when they are evidence.
func TestReaderCountsInvalidEvents(t *testing.T) {
	r := newDecoderRig(t)
	rd, c := newTestReaders(r, 42)
	for i := 0; i < 3; i++ {
		rd.handle(r.sh, c, fakeEvent(kindServer, 42, InvalidStatus))
	}
	rd.handle(r.sh, c, fakeEvent(kindServer, 42, InvalidPath))
	rd.handle(r.sh, c, fakeEvent(kindServer, 42, Decoded))
	rd.handle(r.sh, c, fakeEvent(kindClient, 42, InvalidPeerStatus))
	rd.handle(r.sh, c, fakeEntryEvent(42, ufCountID, InvalidUTF8))
	rd.handle(r.sh, c, fakeEvent(kindServer, 99, Decoded)) // not attached

	if n := c.invalid[kindServer][InvalidStatus].Load(); n != 3 {
		t.Errorf("http_server status: %d, want 3", n)
	}
	if n := c.invalid[kindServer][InvalidPath].Load(); n != 1 {
		t.Errorf("http_server path: %d, want 1", n)
	}
	if n := c.invalid[kindClient][InvalidPeerStatus].Load(); n != 1 {
		t.Errorf("http_client status: %d, want 1", n)
	}
	if n := c.unknown.Load(); n != 1 {
		t.Errorf("unattributed: %d, want 1", n)
	}
	got := rd.invalid(&Family{Kind: kindServer, Invalid: []string{"status", "method", "utf8", "path", "duration"}})
	if want := map[string]uint64{"status": 3, "method": 0, "utf8": 0, "path": 1, "duration": 0}; !equalCounts(got, want) {
		t.Errorf("http_server invalid by reason %v, want %v", got, want)
	}
	w := rd.windows()
	srv := w[watchKey{pid: 42, kind: kindServer}]
	// The refused path was plausibly read otherwise: it weighs as valid.
	if srv.bad() != 3 || srv.valid != 2 {
		t.Errorf("http_server window: %d invalid, %d valid; want 3, 2", srv.bad(), srv.valid)
	}
	if _, ok := w[watchKey{pid: 42, kind: kindClient}]; ok {
		t.Error("a client status a server may send opened a window")
	}
	if uf := w[watchKey{pid: 42, kind: kindEntries, sub: ufCountID}]; uf.invalid[InvalidUTF8] != 1 {
		t.Errorf("entry window: %+v, want one utf8", uf)
	}
	if len(w) != 2 {
		t.Errorf("%d windows open, want 2: %v", len(w), w)
	}
}

func equalCounts(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// The policy: at least policyMinInvalid invalid events that are more than
// half of the window's events detach; a trickle is counted, never detached;
// a window closes after policyMaxEvents events or policyMaxAge.
func TestInvalidPolicy(t *testing.T) {
	k := watchKey{pid: 42, kind: kindServer}
	win := func(valid uint64, by map[Verdict]uint64) windowCounts {
		w := windowCounts{valid: valid}
		for v, n := range by {
			w.invalid[v] = n
		}
		return w
	}
	t0 := time.Unix(1000, 0)
	for _, c := range []struct {
		name   string
		w      windowCounts
		at     time.Duration // since the window opened
		detach string        // "" for none
		closed bool
	}{
		{"37 of 40", win(3, map[Verdict]uint64{InvalidStatus: 37}), 0,
			"detached: 37 of 40 events invalid (status) — offsets for this binary are likely wrong", true},
		{"reasons by count", win(0, map[Verdict]uint64{InvalidMethod: 5, InvalidStatus: 20}), 0,
			"detached: 25 of 25 events invalid (status, method) — offsets for this binary are likely wrong", true},
		{"19 of 19: too few yet", win(0, map[Verdict]uint64{InvalidStatus: 19}), 0, "", false},
		{"exactly half", win(30, map[Verdict]uint64{InvalidUTF8: 30}), 0, "", false},
		{"just over half", win(29, map[Verdict]uint64{InvalidUTF8: 30}), 0,
			"detached: 30 of 59 events invalid (utf8) — offsets for this binary are likely wrong", true},
		{"a trickle", win(990, map[Verdict]uint64{InvalidDuration: 10}), 0, "", true}, // 1000 events: closed
		{"a slow trickle", win(100, map[Verdict]uint64{InvalidStatus: 3}), policyMaxAge, "", true},
		{"open", win(100, map[Verdict]uint64{InvalidStatus: 3}), policyMaxAge - time.Second, "", false},
	} {
		var p invalidPolicy
		p.evaluate(t0, map[watchKey]windowCounts{k: {}}) // opens the window at t0
		detach, closed := p.evaluate(t0.Add(c.at), map[watchKey]windowCounts{k: c.w})
		if detach[k] != c.detach {
			t.Errorf("%s: detach %q, want %q", c.name, detach[k], c.detach)
		}
		if (len(closed) == 1 && closed[0] == k) != c.closed {
			t.Errorf("%s: closed %v, want %v", c.name, closed, c.closed)
		}
		if _, open := p.opened[k]; open == c.closed {
			t.Errorf("%s: window still open %v, want %v", c.name, open, !c.closed)
		}
	}
	// Windows are per (process, family): one family's verdict leaves the
	// others alone; a window closed elsewhere is forgotten.
	var p invalidPolicy
	other := watchKey{pid: 43, kind: kindServer}
	client := watchKey{pid: 42, kind: kindClient}
	detach, _ := p.evaluate(t0, map[watchKey]windowCounts{
		k:      win(0, map[Verdict]uint64{InvalidStatus: 40}),
		other:  win(400, map[Verdict]uint64{InvalidStatus: 40}),
		client: win(10, nil),
	})
	if len(detach) != 1 || detach[k] == "" {
		t.Errorf("detach %v, want only %v", detach, k)
	}
	p.evaluate(t0.Add(time.Second), map[watchKey]windowCounts{client: win(10, nil)})
	if _, ok := p.opened[other]; ok || len(p.opened) != 1 {
		t.Errorf("windows %v, want only %v", p.opened, client)
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

// The policy → manager path without a kernel: a family whose events keep
// failing the checks in one process is detached from that process only —
// its links closed, its status the reason, the OnDetached function told —
// while the same family in another process, with a trickle of invalid
// events, and the process's other families stay attached.
func TestInvalidEventsDetachOneFamilyFromOneProcess(t *testing.T) {
	r := newDecoderRig(t)
	m := &Manager{atts: map[int]*Attachment{}}
	rd, c := newTestReaders(r)
	rd.targets = &m.targets
	m.readers = rd
	srvFam := &loadedFamily{Family: fakeFamily("http_server", kindServer)}
	clFam := &loadedFamily{Family: fakeFamily("http_client", kindClient)}

	type procLinks struct{ srv, cl atomic.Int32 }
	links := map[int]*procLinks{}
	atts := map[int]*Attachment{}
	for _, pid := range []int{42, 43} {
		m.targets.set(uint32(pid), r.tid, true)
		pl := &procLinks{}
		links[pid] = pl
		a := &Attachment{PID: pid, Probes: []ProbeStatus{
			{Family: "http_server", Sites: []string{"net/http.serverHandler.ServeHTTP"}},
			{Family: "http_client", Sites: []string{"net/http.(*Transport).roundTrip"}},
		}}
		a.fams = []attachedFamily{
			{f: srvFam, links: []link.Link{fakeLink{closed: &pl.srv}, fakeLink{closed: &pl.srv}}},
			{f: clFam, links: []link.Link{fakeLink{closed: &pl.cl}}},
		}
		m.track(a)
		atts[pid] = a
	}
	var told []Detached
	m.OnDetached(func(d Detached) { told = append(told, d) })

	// pid 42: 37 of its 40 server events misread; its client is fine.
	// pid 43: the same family, 5 invalid among 200.
	for i := 0; i < 40; i++ {
		v := Decoded
		if i < 37 {
			v = InvalidStatus
		}
		rd.handle(r.sh, c, fakeEvent(kindServer, 42, v))
		rd.handle(r.sh, c, fakeEvent(kindClient, 42, Decoded))
	}
	for i := 0; i < 200; i++ {
		v := Decoded
		if i%40 == 0 {
			v = InvalidStatus
		}
		rd.handle(r.sh, c, fakeEvent(kindServer, 43, v))
	}
	now := time.Unix(5000, 0)
	m.checkInvalid(now)

	const reason = "detached: 37 of 40 events invalid (status) — offsets for this binary are likely wrong"
	if len(told) != 1 || told[0].PID != 42 || told[0].Attachment != atts[42] ||
		told[0].Status.Family != "http_server" || told[0].Status.Error != reason || told[0].Status.Sites != nil {
		t.Fatalf("told %+v, want http_server of pid 42 detached: %q", told, reason)
	}
	if n := links[42].srv.Load(); n != 2 {
		t.Errorf("pid 42 server links closed %d times, want 2", n)
	}
	if links[42].cl.Load() != 0 || links[43].srv.Load() != 0 || links[43].cl.Load() != 0 {
		t.Error("links of other families or processes closed")
	}
	st := atts[42].Status()
	if st[0].Error != reason || len(st[0].Sites) != 0 || st[1].Error != "" || len(st[1].Sites) != 1 {
		t.Errorf("pid 42 status %+v", st)
	}
	if st := atts[43].Status(); st[0].Error != "" {
		t.Errorf("pid 43 status %+v, want attached", st)
	}
	if atts[42].Probes[0].Error != "" {
		t.Error("Attachment.Probes changed after Attach")
	}

	// Events still in the rings fail again: a new window condemns the
	// family again, but it is detached once.
	for i := 0; i < 30; i++ {
		rd.handle(r.sh, c, fakeEvent(kindServer, 42, InvalidStatus))
	}
	m.checkInvalid(now.Add(time.Second))
	if len(told) != 1 || links[42].srv.Load() != 2 {
		t.Errorf("detached again: told %d times, closed %d links", len(told), links[42].srv.Load())
	}
	// pid 43's trickle window closes with its age; nothing else is open.
	m.checkInvalid(now.Add(policyMaxAge + time.Minute))
	if w := rd.windows(); len(w) != 0 {
		t.Errorf("windows still open: %v", w)
	}
	if len(told) != 1 {
		t.Errorf("told %d times, want once", len(told))
	}

	// Detaching the process closes what is left, once.
	m.Detach(atts[42])
	if links[42].srv.Load() != 2 || links[42].cl.Load() != 1 {
		t.Errorf("after Detach: server links closed %d times (want 2), client %d (want 1)", links[42].srv.Load(), links[42].cl.Load())
	}
	if _, ok := m.atts[42]; ok {
		t.Error("a detached process is still tracked")
	}
}

// An entry of a family of configured entries (the business functions')
// whose events keep failing the checks in a process is detached from it
// through the family's DetachEntry, with the reason; the other entry, and
// the same entry in another process, stay (probes/userfunc's
// TestDetachEntry checks the family's side).
func TestInvalidEventsDetachOneEntry(t *testing.T) {
	r := newDecoderRig(t)
	m := &Manager{atts: map[int]*Attachment{}}
	rd, c := newTestReaders(r)
	rd.targets = &m.targets
	m.readers = rd
	m.families = []*loadedFamily{{Family: &Family{Name: "entries", Kind: kindEntries, Decode: fakeDecode, Entries: r.entries}}}
	r.entries.attached = map[int]map[uint32]bool{42: {ufCountID: true, ufSecondsID: true}, 43: {ufCountID: true}}
	m.targets.set(42, r.tid, true)
	m.targets.set(43, r.tid, true)
	var told []Detached
	m.OnDetached(func(d Detached) { told = append(told, d) })
	for i := 0; i < 25; i++ {
		rd.handle(r.sh, c, fakeEntryEvent(42, ufCountID, InvalidUTF8))
		rd.handle(r.sh, c, fakeEntryEvent(42, ufSecondsID, Decoded))
		rd.handle(r.sh, c, fakeEntryEvent(43, ufCountID, Decoded))
	}
	rd.handle(r.sh, c, fakeEntryEvent(43, ufCountID, InvalidUTF8))
	m.checkInvalid(time.Unix(5000, 0))
	const reason = "detached: 25 of 25 events invalid (utf8) — offsets for this binary are likely wrong"
	if len(told) != 1 || told[0].PID != 42 || told[0].Attachment != nil ||
		told[0].Status.Family != "entries:7" || told[0].Status.Error != reason {
		t.Fatalf("told %+v", told)
	}
	if want := []detachedEntry{{42, ufCountID, reason}}; len(r.entries.detached) != 1 || r.entries.detached[0] != want[0] {
		t.Errorf("DetachEntry calls %+v, want %+v", r.entries.detached, want)
	}
	// Its window is closed: more invalid events open a new one, and the
	// family, which no longer has the entry there, is not told again.
	for i := 0; i < 25; i++ {
		rd.handle(r.sh, c, fakeEntryEvent(42, ufCountID, InvalidUTF8))
	}
	m.checkInvalid(time.Unix(5001, 0))
	if len(told) != 1 {
		t.Errorf("told %d times, want once", len(told))
	}
	// Detaching the process tells the family.
	a := &Attachment{PID: 42}
	m.track(a)
	m.opts.DrainInterval = time.Millisecond
	m.Detach(a)
	if len(r.entries.processes) != 1 || r.entries.processes[0] != 42 {
		t.Errorf("ProcessDetached calls %v, want [42]", r.entries.processes)
	}
}

// The policy reads and closes windows while the readers count into them:
// no lock shared between readers, nothing lost or raced (run with -race).
func TestPolicyBesideReaders(t *testing.T) {
	agg := aggregator.New([]*aggregator.Metric{fakeDuration}, aggregator.Options{Shards: 2})
	tid := agg.AddTarget(aggregator.Target{PID: 42, Service: "svc"})
	m := &Manager{atts: map[int]*Attachment{}}
	m.readers = &readers{agg: agg, targets: &m.targets}
	m.readers.decoders[kindServer] = fakeDecode
	m.readers.counts = []*readerCounts{{}, {}}
	srvFam := &loadedFamily{Family: fakeFamily("http_server", kindServer)}
	var closed atomic.Int32
	for _, pid := range []int{42, 43} {
		m.targets.set(uint32(pid), tid, true)
		a := &Attachment{PID: pid, Probes: []ProbeStatus{{Family: "http_server"}}}
		a.fams = []attachedFamily{{f: srvFam, links: []link.Link{fakeLink{closed: &closed}}}}
		m.track(a)
	}
	var told atomic.Int32
	m.OnDetached(func(Detached) { told.Add(1) })
	good := fakeEvent(kindServer, 42, Decoded)
	bad42 := fakeEvent(kindServer, 42, InvalidStatus)
	bad43 := fakeEvent(kindServer, 43, InvalidStatus)
	good43 := fakeEvent(kindServer, 43, Decoded)
	done := make(chan struct{})
	for i, c := range m.readers.counts {
		go func(sh *aggregator.Shard, c *readerCounts) {
			defer func() { done <- struct{}{} }()
			for j := 0; j < 3000; j++ {
				m.readers.handle(sh, c, bad42) // pid 42: all misread
				if j%50 == 0 {                 // pid 43: 2% misread
					m.readers.handle(sh, c, bad43)
				} else {
					m.readers.handle(sh, c, good43)
				}
				m.readers.handle(sh, c, good)
				m.readers.handle(sh, c, bad42)
			}
		}(agg.Shard(i), c)
	}
	now := time.Unix(5000, 0)
	for running := 2; running > 0; {
		select {
		case <-done:
			running--
		default:
			now = now.Add(policyInterval)
			m.checkInvalid(now)
			time.Sleep(time.Millisecond)
		}
	}
	m.checkInvalid(now.Add(policyInterval))
	if told.Load() != 1 || closed.Load() != 1 {
		t.Errorf("told %d, closed %d links; want pid 42 detached once", told.Load(), closed.Load())
	}
	st := m.atts[43].Status()
	if st[0].Error != "" {
		t.Errorf("pid 43 detached: %+v", st)
	}
	var invalid uint64
	for _, c := range m.readers.counts {
		invalid += c.invalid[kindServer][InvalidStatus].Load()
	}
	if want := uint64(2 * (2*3000 + 60)); invalid != want {
		t.Errorf("%d invalid events counted, want %d", invalid, want)
	}
}
