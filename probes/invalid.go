package probes

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// The invalid-event policy. Every implausible event is refused and counted
// (blindspot_events_invalid_total{probe,reason}); a family whose events
// keep failing the checks in one process is detached from that process,
// and from no other:
//
//   - A window opens for a (process, family) — for a family of
//     configured entries (Entries, the business functions), (process,
//     entry) — with its first invalid event that is
//     evidence of a misread program (verdict.evidence: not a path, an
//     HTTP/2 method or a client's status 0–999, which peers can send).
//   - While it is open, its events are counted: invalid (by reason) and
//     plausibly read.
//   - It detaches the family as soon as it holds at least policyMinInvalid
//     invalid events and they are more than half of its events.
//   - Otherwise it closes after policyMaxEvents events or policyMaxAge,
//     whichever comes first, and the next invalid event opens a new one: a
//     trickle of invalid events among many plausible ones is counted,
//     never detached.
//
// The detached family's status in /targets then says why, e.g. "detached:
// 37 of 40 events invalid (status) — offsets for this binary are likely
// wrong", and blindspot_probe_errors_total{probe,reason="invalid_events"}
// counts it (through Manager.OnDetached).
//
// The readers only count: a window's counters live in each reader's own
// watch map (no lock shared between readers, no allocation but the one
// that opens a window), and the policy sums them once per policyInterval.
const (
	policyMinInvalid = 20
	policyMaxEvents  = 1000
	policyMaxAge     = time.Hour
	policyInterval   = time.Second
	// maxWatched bounds each reader's open windows; past it, invalid events
	// of further (process, family) pairs are counted but not weighed until
	// a window closes.
	maxWatched = 256
)

// watchKey names one family in one process.
type watchKey struct {
	pid  uint32
	kind uint16
	sub  uint32 // a family of configured entries (Entries): the entry
}

// watchKey is the key of an event the decoder accepted as well formed.
func (r *readers) watchKey(kind uint16, pid uint32, raw []byte) watchKey {
	k := watchKey{pid: pid, kind: kind}
	if entry := r.entries[kind]; entry != nil {
		k.sub = entry(raw)
	}
	return k
}

// watchCount is one reader's count of one open window.
type watchCount struct {
	valid   atomic.Uint64
	invalid [numVerdicts]atomic.Uint64
}

type watchMap = map[watchKey]*watchCount

// noteInvalid counts an invalid event (evidence) in its window, opening
// the window with the first: only that allocates.
func (c *readerCounts) noteInvalid(k watchKey, v Verdict) {
	if m := c.watch.Load(); m != nil {
		if w := (*m)[k]; w != nil {
			w.invalid[v].Add(1)
			return
		}
	}
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	old := c.watch.Load()
	n := 0
	if old != nil {
		if w := (*old)[k]; w != nil {
			w.invalid[v].Add(1)
			return
		}
		n = len(*old)
	}
	if n >= maxWatched {
		return
	}
	next := make(watchMap, n+1)
	if old != nil {
		for kk, w := range *old {
			next[kk] = w
		}
	}
	w := &watchCount{}
	w.invalid[v].Add(1)
	next[k] = w
	c.watch.Store(&next)
}

// unwatch closes windows in this reader.
func (c *readerCounts) unwatch(keys []watchKey) {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	old := c.watch.Load()
	if old == nil {
		return
	}
	gone := 0
	for _, k := range keys {
		if _, ok := (*old)[k]; ok {
			gone++
		}
	}
	if gone == 0 {
		return
	}
	next := make(watchMap, len(*old)-gone)
	for k, w := range *old {
		next[k] = w
	}
	for _, k := range keys {
		delete(next, k)
	}
	c.watch.Store(&next)
}

// windowCounts are the counts of one window, summed over the readers.
type windowCounts struct {
	valid   uint64
	invalid [numVerdicts]uint64
}

func (w windowCounts) bad() uint64 {
	var n uint64
	for _, x := range w.invalid {
		n += x
	}
	return n
}

// windows sums the open windows of every reader.
func (r *readers) windows() map[watchKey]windowCounts {
	out := map[watchKey]windowCounts{}
	for _, c := range r.counts {
		m := c.watch.Load()
		if m == nil {
			continue
		}
		for k, w := range *m {
			s := out[k]
			s.valid += w.valid.Load()
			for v := range w.invalid {
				s.invalid[v] += w.invalid[v].Load()
			}
			out[k] = s
		}
	}
	return out
}

// unwatch closes windows in every reader.
func (r *readers) unwatch(keys []watchKey) {
	if len(keys) == 0 {
		return
	}
	for _, c := range r.counts {
		c.unwatch(keys)
	}
}

// invalidPolicy decides, from the windows' counts, which families to
// detach and which windows to close. It holds only when each window
// opened; it is pure Go, driven by the caller's clock.
type invalidPolicy struct {
	opened map[watchKey]time.Time
}

// evaluate looks at every open window once. detach maps the windows whose
// family must be detached to the reason to show; closed lists the windows
// to close (the detached ones among them).
func (p *invalidPolicy) evaluate(now time.Time, counts map[watchKey]windowCounts) (detach map[watchKey]string, closed []watchKey) {
	if p.opened == nil {
		p.opened = map[watchKey]time.Time{}
	}
	for k := range p.opened {
		if _, ok := counts[k]; !ok {
			delete(p.opened, k) // closed elsewhere
		}
	}
	for k, w := range counts {
		opened, ok := p.opened[k]
		if !ok {
			opened = now
			p.opened[k] = now
		}
		bad := w.bad()
		total := bad + w.valid
		switch {
		case bad >= policyMinInvalid && 2*bad > total:
			if detach == nil {
				detach = map[watchKey]string{}
			}
			detach[k] = detachReason(w)
		case total >= policyMaxEvents || now.Sub(opened) >= policyMaxAge:
		default:
			continue
		}
		closed = append(closed, k)
		delete(p.opened, k)
	}
	sort.Slice(closed, func(i, j int) bool { return keyLess(closed[i], closed[j]) })
	return detach, closed
}

func keyLess(a, b watchKey) bool {
	if a.pid != b.pid {
		return a.pid < b.pid
	}
	if a.kind != b.kind {
		return a.kind < b.kind
	}
	return a.sub < b.sub
}

// detachReason is the status shown for a family detached by window w:
// "detached: 37 of 40 events invalid (status) — offsets for this binary
// are likely wrong", the reasons by count.
func detachReason(w windowCounts) string {
	type rc struct {
		reason string
		n      uint64
	}
	by := map[string]uint64{}
	for v, n := range w.invalid {
		if n != 0 {
			by[invalidReasons[v]] += n
		}
	}
	var rs []rc
	for r, n := range by {
		rs = append(rs, rc{r, n})
	}
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].n != rs[j].n {
			return rs[i].n > rs[j].n
		}
		return rs[i].reason < rs[j].reason
	})
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.reason
	}
	bad := w.bad()
	return fmt.Sprintf("detached: %d of %d events invalid (%s) — offsets for this binary are likely wrong",
		bad, bad+w.valid, strings.Join(names, ", "))
}

// Detached reports a family detached from one process because its events
// kept failing the plausibility checks.
type Detached struct {
	PID int
	// Attachment is the process's attachment, whose Status now shows the
	// family detached; nil for an entry of a family of configured entries
	// (Entries), whose own status says so.
	Attachment *Attachment
	// Status is the family's new status; its Error says why.
	Status ProbeStatus
}

// OnDetached sets the function told of every family the invalid-event
// policy detaches from a process. It is called from the manager's own
// goroutine, holding none of the manager's locks.
func (m *Manager) OnDetached(fn func(Detached)) {
	m.onDetached.Store(&fn)
}

// police runs the invalid-event policy until ctx ends.
func (m *Manager) police(ctx context.Context) {
	defer m.wg.Done()
	t := time.NewTicker(policyInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.checkInvalid(now)
		}
	}
}

// checkInvalid evaluates every open window once, detaching the families
// the policy condemns.
func (m *Manager) checkInvalid(now time.Time) {
	counts := m.readers.windows()
	var gone []watchKey
	for k := range counts {
		if _, ok := m.targets.lookup(k.pid); !ok {
			gone = append(gone, k) // the process is no longer attached
			delete(counts, k)
		}
	}
	detach, closed := m.policy.evaluate(now, counts)
	m.readers.unwatch(append(gone, closed...))
	keys := make([]watchKey, 0, len(detach))
	for k := range detach {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keyLess(keys[i], keys[j]) })
	for _, k := range keys {
		if d, ok := m.detachInvalid(k, detach[k]); ok {
			if fn := m.onDetached.Load(); fn != nil && *fn != nil {
				(*fn)(d)
			}
		}
	}
}

// detachInvalid detaches one family from one process; false when it is
// not attached there (any more).
func (m *Manager) detachInvalid(k watchKey, reason string) (Detached, bool) {
	for _, f := range m.families {
		if f.Kind == k.kind && f.Entries != nil {
			st, ok := f.Entries.DetachEntry(int(k.pid), k.sub, reason)
			return Detached{PID: int(k.pid), Status: st}, ok
		}
	}
	m.attMu.Lock()
	a := m.atts[int(k.pid)]
	m.attMu.Unlock()
	if a == nil {
		return Detached{}, false
	}
	a.mu.Lock()
	var af attachedFamily
	found := false
	for i, x := range a.fams {
		if x.f.Kind == k.kind && x.f.Decode != nil {
			af, found = x, true
			a.fams = append(a.fams[:i:i], a.fams[i+1:]...)
			break
		}
	}
	var st ProbeStatus
	if found {
		st = ProbeStatus{Family: af.f.Name, Error: reason}
		for i := range a.status {
			if a.status[i].Family == af.f.Name {
				a.status[i] = st
			}
		}
	}
	a.mu.Unlock()
	if !found {
		return Detached{}, false
	}
	m.release(a.PID, af)
	return Detached{PID: a.PID, Attachment: a, Status: st}, true
}

// invalid sums a family's invalid events by reason label, every reason
// the family can report present.
func (r *readers) invalid(f *Family) map[string]uint64 {
	out := make(map[string]uint64, len(f.Invalid))
	for _, reason := range f.Invalid {
		out[reason] = 0
	}
	for v := InvalidStatus; v < numVerdicts; v++ {
		n := r.sum(func(c *readerCounts) uint64 { return c.invalid[f.Kind][v].Load() })
		if n != 0 {
			out[invalidReasons[v]] += n
		}
	}
	return out
}
