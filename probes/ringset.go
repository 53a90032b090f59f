package probes

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// ringSet is one BPF ring buffer per possible CPU, reachable from BPF through
// an array of maps, and one reader per ring feeding one aggregator shard.
type ringSet struct {
	outer *ebpf.Map
	inner []*ebpf.Map
	lost  *ebpf.Map
}

func newRingSet(cpus, ringBytes int) (*ringSet, error) {
	rs := &ringSet{}
	innerSpec := &ebpf.MapSpec{Name: "ring", Type: ebpf.RingBuf, MaxEntries: uint32(ringBytes)}
	outer, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       "rings",
		Type:       ebpf.ArrayOfMaps,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: uint32(cpus),
		InnerMap:   innerSpec,
	})
	if err != nil {
		return nil, fmt.Errorf("create ring array: %w", err)
	}
	rs.outer = outer
	for i := 0; i < cpus; i++ {
		m, err := ebpf.NewMap(innerSpec)
		if err != nil {
			rs.close()
			return nil, fmt.Errorf("create ring buffer %d: %w", i, err)
		}
		rs.inner = append(rs.inner, m)
		if err := outer.Put(uint32(i), m); err != nil {
			rs.close()
			return nil, fmt.Errorf("install ring buffer %d: %w", i, err)
		}
	}
	rs.lost, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "lost", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: MaxKinds,
	})
	if err != nil {
		rs.close()
		return nil, fmt.Errorf("create lost-event counters: %w", err)
	}
	return rs, nil
}

func (rs *ringSet) close() {
	for _, m := range rs.inner {
		m.Close()
	}
	if rs.outer != nil {
		rs.outer.Close()
	}
	if rs.lost != nil {
		rs.lost.Close()
	}
}

// lostEvents sums the per-CPU lost counters of one event kind.
func (rs *ringSet) lostEvents(kind uint16) uint64 {
	var per []uint64
	if err := rs.lost.Lookup(uint32(kind), &per); err != nil {
		return 0
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}

// readers drain every ring on a timer: events are submitted without a
// wake-up (a wake-up inside a uprobe costs more than the probe), so each
// reader polls with a deadline; a ring filling past a threshold wakes its
// reader at once.
type readers struct {
	rs       *ringSet
	agg      *aggregator.Aggregator
	interval time.Duration
	delay    time.Duration // Options.ReadDelay: a test's slow reader
	targets  *targetTable
	decoders [MaxKinds]Decoder
	entries  [MaxKinds]func(raw []byte) uint32 // Entries.Entry, by kind

	counts []*readerCounts // one per reader: no cache line shared between CPUs
	wg     sync.WaitGroup
	rds    []*ringReader
}

// readerCounts are one reader's own counters, padded to a cache line of
// their own.
type readerCounts struct {
	events    [MaxKinds]atomic.Uint64
	invalid   [MaxKinds][numVerdicts]atomic.Uint64 // by kind and verdict
	malformed atomic.Uint64
	unknown   atomic.Uint64
	// watch counts the events of each (process, family) whose window of
	// the invalid-event policy is open (invalid.go): read on every event
	// while one is, replaced whole under watchMu (by this reader when an
	// invalid event opens a window, by the policy when it closes one).
	watch   atomic.Pointer[watchMap]
	watchMu sync.Mutex

	// The reader's last attribution, reused while the PID and the table
	// are the same (owner only).
	lastTable *map[uint32]aggregator.TargetID
	lastPid   uint32
	lastT     aggregator.TargetID
	_         [64]byte
}

// target attributes pid through tt, remembering the last answer: events
// of one busy process follow each other.
func (c *readerCounts) target(tt *targetTable, pid uint32) (aggregator.TargetID, bool) {
	m := tt.cur.Load()
	if m == nil {
		return 0, false
	}
	if m == c.lastTable && pid == c.lastPid {
		return c.lastT, true
	}
	t, ok := (*m)[pid]
	if ok {
		c.lastTable, c.lastPid, c.lastT = m, pid, t
	}
	return t, ok
}

func (r *readers) sum(f func(*readerCounts) uint64) uint64 {
	var n uint64
	for _, c := range r.counts {
		n += f(c)
	}
	return n
}

func (r *readers) start(ctx context.Context) error {
	for i, m := range r.rs.inner {
		rd, err := newRingReader(m)
		if err != nil {
			r.stop()
			return fmt.Errorf("open ring buffer %d: %w", i, err)
		}
		r.rds = append(r.rds, rd)
	}
	for i, rd := range r.rds {
		c := &readerCounts{}
		r.counts = append(r.counts, c)
		r.wg.Add(1)
		go r.run(ctx, rd, r.agg.Shard(i%r.agg.Shards()), c)
	}
	return nil
}

// holdBatch bounds the events a reader folds under one hold of its
// shard's lock (a scrape waits for at most that many), and the events
// read before their space is handed back to the producers.
const holdBatch = 64

func (r *readers) run(ctx context.Context, rd *ringReader, sh *aggregator.Shard, c *readerCounts) {
	defer r.wg.Done()
	batch := holdBatch
	if r.delay > 0 {
		batch = 1 // a test's slow reader: one event at a time
	}
	handle := func(raw []byte) { r.handle(sh, c, raw) }
	for ctx.Err() == nil {
		// Everything the ring holds, in batches folded under one hold of
		// the shard's lock each, released before the reader can wait.
		for {
			sh.Hold()
			n, more := rd.read(batch, handle)
			sh.Release()
			if r.delay > 0 && n > 0 {
				time.Sleep(r.delay)
			}
			if !more {
				break
			}
			if n == 0 {
				// A record still being written at the head of the ring.
				time.Sleep(50 * time.Microsecond)
			}
		}
		if err := rd.wait(r.interval); err != nil {
			return // closed (or epoll failed: nothing more can be read)
		}
	}
}

// EventHeader is struct event_header of bpf/common.h, the first field of
// every event, as bpf2go generates it (probes/gen.go). Each family's tests
// compare it field by field with the Hdr of its own generated event
// (bpfcheck.SameLayout: Go converts no struct with a blank field between
// packages) and with each object's BTF.
type EventHeader = sharedEventHeader

func (r *readers) handle(sh *aggregator.Shard, c *readerCounts, raw []byte) {
	if len(raw) < int(unsafe.Sizeof(EventHeader{})) {
		c.malformed.Add(1)
		return
	}
	h := (*EventHeader)(unsafe.Pointer(&raw[0]))
	kind, pid := h.Kind, h.Pid
	if int(kind) >= MaxKinds || r.decoders[kind] == nil {
		c.malformed.Add(1)
		return
	}
	// One writer per reader's counters: a plain store, no locked add.
	c.events[kind].Store(c.events[kind].Load() + 1)
	t, ok := c.target(r.targets, pid)
	if !ok {
		c.unknown.Add(1)
		return
	}
	v := r.decoders[kind](sh, t, raw)
	switch {
	case v == Malformed:
		c.malformed.Add(1)
		return
	case v.invalid():
		c.invalid[kind][v].Add(1)
		if v.evidence() {
			c.noteInvalid(r.watchKey(kind, pid, raw), v)
			return
		}
	}
	// Plausibly read: weighed against the invalid ones of an open window.
	if w := c.watch.Load(); w != nil && len(*w) != 0 {
		if wc := (*w)[r.watchKey(kind, pid, raw)]; wc != nil {
			wc.valid.Add(1)
		}
	}
}

// stop stops the readers, waits for them, and unmaps their rings.
func (r *readers) stop() {
	for _, rd := range r.rds {
		rd.interrupt()
	}
	r.wg.Wait()
	for _, rd := range r.rds {
		rd.close()
	}
	r.rds = nil
}

// targetTable maps PIDs to targets for the readers without a lock: it is
// replaced whole on every change (rare) and read on every event.
type targetTable struct {
	mu  sync.Mutex
	cur atomic.Pointer[map[uint32]aggregator.TargetID]
}

func (tt *targetTable) lookup(pid uint32) (aggregator.TargetID, bool) {
	m := tt.cur.Load()
	if m == nil {
		return 0, false
	}
	t, ok := (*m)[pid]
	return t, ok
}

func (tt *targetTable) set(pid uint32, t aggregator.TargetID, present bool) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	old := tt.cur.Load()
	next := map[uint32]aggregator.TargetID{}
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	if present {
		next[pid] = t
	} else {
		delete(next, pid)
	}
	tt.cur.Store(&next)
}
