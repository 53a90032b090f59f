package probes

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/symbols"
)

// Options tune a Manager. The zero value of a field takes its default.
type Options struct {
	// RingBytes is the size of each per-CPU ring buffer (default
	// DefaultRingBytes for the machine's CPUs; must be a power of two and
	// a multiple of the page size).
	RingBytes int
	// DrainInterval is how often readers drain their ring (default 50 ms;
	// a ring a quarter full wakes its reader at once).
	DrainInterval time.Duration
	// MaxInFlight bounds each family's map of calls in flight (default 65536).
	MaxInFlight int
	// MaxTargets bounds the processes a family can be attached to (default 4096).
	MaxTargets int
	// SingleUprobes attaches one uprobe per site even where the kernel has
	// uprobe_multi links (as kernels before 6.6 must).
	SingleUprobes bool
	// InFlightTTL is how long a call may stay in flight before its start
	// is swept as stale (default 1 hour, at most 23 h 50 min: a duration of
	// a day or more is refused as implausible).
	InFlightTTL time.Duration
	// ReadDelay makes each reader pause this long after every event: a
	// test hook that slows the readers so that rings fill and losses can
	// be checked (zero, the default, in every real use).
	ReadDelay time.Duration
}

// Manager loads the probe families once and attaches them to processes.
type Manager struct {
	opts     Options
	rings    *ringSet
	readers  *readers
	families []*loadedFamily
	targets  targetTable
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	attMu sync.Mutex
	atts  map[int]*Attachment // by PID: what the invalid-event policy may detach

	policy     invalidPolicy // used by the police goroutine only
	onDetached atomic.Pointer[func(Detached)]
}

type loadedFamily struct {
	*Family
	multi  bool // programs loaded for uprobe_multi links
	coll   *ebpf.Collection
	config *ebpf.Map
	starts []*ebpf.Map // StartMap, then InFlightMaps

	mu      sync.Mutex
	configs map[*symbols.Binary]configResult
}

type configResult struct {
	// absent says the program does not use the family's library (its
	// anchor function is not there).
	absent  bool
	value   any
	offsets map[string]siteOffsets
	err     error
	left    []string // optional probes left out, with the reason
}

// siteOffsets are the file offsets at which one probe attaches.
type siteOffsets []uint64

// Ring sizes: 2 MiB per CPU up to 8 CPUs, then halved as CPUs double so
// that all rings together stay within 16 MiB, but never under 256 KiB
// (above 64 CPUs the total grows again, 256 KiB per CPU). A ring's
// memory is the kernel's, mapped once into the agent: it counts its size
// in the agent's RSS.
const (
	maxRingBytes   = 2 << 20
	minRingBytes   = 256 << 10
	ringBudgetByte = 16 << 20
)

// DefaultRingBytes is the size of each of cpus rings unless Options say.
func DefaultRingBytes(cpus int) int {
	size := maxRingBytes
	for size > minRingBytes && size*max(cpus, 1) > ringBudgetByte {
		size /= 2
	}
	return size
}

// New loads the given probe families into the kernel and starts the ring
// readers, which fold events into agg (one shard per ring). The families
// are the caller's (cmd/agent runs httpserver, httpclient, dbsql,
// goruntime and the business functions, probes/userfunc). Two families
// must not share a Kind.
func New(agg *aggregator.Aggregator, families []*Family, opts *Options) (*Manager, error) {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.DrainInterval <= 0 {
		o.DrainInterval = 50 * time.Millisecond
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 65536
	}
	if o.MaxTargets <= 0 {
		o.MaxTargets = 4096
	}
	if o.InFlightTTL <= 0 {
		o.InFlightTTL = time.Hour
	}
	o.InFlightTTL = min(o.InFlightTTL, maxInFlightTTL)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count cpus: %w", err)
	}
	if o.RingBytes <= 0 {
		o.RingBytes = DefaultRingBytes(cpus)
	}
	rs, err := newRingSet(cpus, o.RingBytes)
	if err != nil {
		return nil, err
	}
	m := &Manager{opts: o, rings: rs, atts: map[int]*Attachment{}}
	m.readers = &readers{rs: rs, agg: agg, interval: o.DrainInterval, delay: o.ReadDelay, targets: &m.targets}
	for _, f := range families {
		if f.Kind != 0 && (f.Kind >= MaxKinds || m.readers.decoders[f.Kind] != nil) {
			m.Close()
			return nil, fmt.Errorf("load %s probes: event kind %d taken or out of range", f.Name, f.Kind)
		}
		lf, err := m.load(f)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("load %s probes: %w", f.Name, err)
		}
		m.families = append(m.families, lf)
		if f.Decode != nil {
			m.readers.decoders[f.Kind] = f.Decode
		}
		if f.Entries != nil {
			m.readers.entries[f.Kind] = f.Entries.Entry
			f.Entries.Loaded(&Handle{m: m, f: lf})
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	if err := m.readers.start(ctx); err != nil {
		m.Close()
		return nil, err
	}
	m.wg.Add(2)
	go m.sweep(ctx)
	go m.police(ctx)
	return m, nil
}

func (m *Manager) load(f *Family) (*loadedFamily, error) {
	if f.Spec == nil {
		// A family without BPF programs: a sampler driven by its hooks.
		return &loadedFamily{Family: f, configs: map[*symbols.Binary]configResult{}}, nil
	}
	spec, err := f.Spec()
	if err != nil {
		return nil, err
	}
	if ms := spec.Maps[f.StartMap]; ms != nil {
		if !f.StartMapFixed || uint32(m.opts.MaxInFlight) < ms.MaxEntries {
			ms.MaxEntries = uint32(m.opts.MaxInFlight)
		}
	}
	starts := []string{f.StartMap}
	for _, name := range f.InFlightMaps {
		ms := spec.Maps[name]
		if ms == nil {
			return nil, fmt.Errorf("no map of calls in flight %s", name)
		}
		ms.MaxEntries = min(ms.MaxEntries, uint32(m.opts.MaxInFlight))
		starts = append(starts, name)
	}
	if ms := spec.Maps[f.ConfigMap]; ms != nil {
		ms.MaxEntries = uint32(m.opts.MaxTargets)
	}
	if ms := spec.Maps["rings"]; ms != nil {
		ms.MaxEntries = uint32(len(m.rings.inner))
		if ms.InnerMap != nil {
			ms.InnerMap.MaxEntries = uint32(m.opts.RingBytes)
		}
	}
	if v := spec.Variables["wake_bytes"]; v != nil {
		if err := v.Set(uint64(m.opts.RingBytes / 4)); err != nil {
			return nil, fmt.Errorf("set wake threshold: %w", err)
		}
	}
	multi := !m.opts.SingleUprobes && features.HaveBPFLinkUprobeMulti() == nil
	if multi {
		// One uprobe_multi link per program and process instead of one
		// perf event per site: detaching then waits for the kernel's
		// grace period once per link, not once per site.
		for _, ps := range spec.Programs {
			if ps.Type == ebpf.Kprobe && strings.HasPrefix(ps.SectionName, "uprobe") {
				ps.AttachType = ebpf.AttachTraceUprobeMulti
			}
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{"rings": m.rings.outer, "lost": m.rings.lost},
	})
	if err != nil {
		return nil, err
	}
	lf := &loadedFamily{
		Family:  f,
		multi:   multi,
		coll:    coll,
		config:  coll.Maps[f.ConfigMap],
		configs: map[*symbols.Binary]configResult{},
	}
	for _, name := range starts {
		if sm := coll.Maps[name]; sm != nil {
			lf.starts = append(lf.starts, sm)
		}
	}
	return lf, nil
}

// ProbeStatus is how one family fared in one process.
type ProbeStatus struct {
	Family string `json:"family"`
	// Functions probed, and where ("net/http.serverHandler.ServeHTTP+0xa").
	Sites []string `json:"sites,omitempty"`
	// Error says why the family could not be attached; empty when it was.
	Error string `json:"error,omitempty"`
	// Left lists optional probes left out of this program and why (for
	// example HTTP/2 when its struct offsets are not proven).
	Left []string `json:"left_out,omitempty"`
}

// Attachment is the probes of one process. Detach releases them.
type Attachment struct {
	PID int
	// Probes is how each family fared when attached (the manager does not
	// change it once Attach has returned); Status adds what happened since.
	Probes []ProbeStatus

	mu     sync.Mutex
	fams   []attachedFamily // attached now
	status []ProbeStatus
}

// attachedFamily is one family attached to one process, and its links.
type attachedFamily struct {
	f     *loadedFamily
	links []link.Link
}

// Status returns how each family fares in the process now: as in Probes,
// except for a family detached since by the invalid-event policy, whose
// Error says why.
func (a *Attachment) Status() []ProbeStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.status == nil {
		return append([]ProbeStatus(nil), a.Probes...) // not made by Attach
	}
	return append([]ProbeStatus(nil), a.status...)
}

// ErrNoFamily says that no probe family applies to a program (it links none
// of the functions blindspot probes).
var ErrNoFamily = errors.New("no probe family applies")

// Attach attaches every family that applies to the process pid, whose
// executable bin was read from exe (a path the kernel can resolve, such as
// /proc/PID/exe). A family that fails is reported in the result and the
// others still attach.
func (m *Manager) Attach(pid int, exe string, bin *symbols.Binary, t aggregator.TargetID) (*Attachment, error) {
	ex, err := link.OpenExecutable(exe)
	if err != nil {
		return nil, fmt.Errorf("open executable: %w", err)
	}
	a := &Attachment{PID: pid}
	m.targets.set(uint32(pid), t, true)
	for _, f := range m.families {
		if f.Entries != nil {
			continue // attached entry by entry by the family itself
		}
		st := ProbeStatus{Family: f.Name}
		cfg := f.configFor(bin)
		if cfg.absent {
			continue // the program does not use this library
		}
		if cfg.err != nil {
			st.Error = cfg.err.Error()
			a.Probes = append(a.Probes, st)
			continue
		}
		if f.config == nil {
			// no per-process offsets to store
		} else if err := f.config.Put(uint32(pid), cfg.value); err != nil {
			st.Error = fmt.Sprintf("store offsets: %v", err)
			a.Probes = append(a.Probes, st)
			continue
		}
		links, sites, err := f.attach(ex, pid, bin, cfg)
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			if f.config != nil {
				f.config.Delete(uint32(pid))
			}
			// A start probe attached before the failure (typically: the
			// process exited meanwhile) may have stored calls whose end
			// will never come.
			f.dropStarts(func(tgid uint32, _ uint64) bool { return tgid == uint32(pid) })
			st.Error = err.Error()
			a.Probes = append(a.Probes, st)
			continue
		}
		st.Sites = sites
		st.Left = cfg.left
		a.fams = append(a.fams, attachedFamily{f: f, links: links})
		a.Probes = append(a.Probes, st)
		if f.Attached != nil {
			f.Attached(pid, bin, t)
		}
	}
	if len(a.Probes) == 0 {
		m.targets.set(uint32(pid), 0, false)
		return a, ErrNoFamily
	}
	m.track(a)
	return a, nil
}

// track makes an attachment's families detachable by the invalid-event
// policy.
func (m *Manager) track(a *Attachment) {
	a.mu.Lock()
	a.status = append([]ProbeStatus(nil), a.Probes...)
	a.mu.Unlock()
	m.attMu.Lock()
	m.atts[a.PID] = a
	m.attMu.Unlock()
}

// configFor computes, once per binary, whether the program uses the
// family's library, what the family's BPF programs need and where its
// probes go: a later process of the executable reads none of it again
// (nor the function table, let go after attaching).
func (f *loadedFamily) configFor(bin *symbols.Binary) configResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.configs[bin]; ok {
		return r
	}
	r := configResult{offsets: map[string]siteOffsets{}}
	if f.Anchor != "" {
		if _, err := bin.LookupFunc(f.Anchor); err != nil {
			r.absent = true
			f.configs[bin] = r
			return r
		}
	}
	if f.Configure != nil {
		r.value, r.err = f.Configure(bin)
	}
	var leave map[string]string
	if r.err == nil && f.LeaveOut != nil {
		leave = f.LeaveOut(bin)
	}
	if r.err == nil {
		for _, p := range f.Probes {
			if why, ok := leave[p.Function]; ok && p.Optional {
				r.left = append(r.left, p.Function+": "+why)
				continue
			}
			offs, err := probeSites(bin, p)
			if err != nil {
				if p.Optional && errors.Is(err, symbols.ErrFuncNotFound) {
					continue
				}
				r.err = err
				break
			}
			r.offsets[p.Program+"\x00"+p.Function] = offs
		}
	}
	f.configs[bin] = r
	return r
}

// Forget drops what was computed for a binary no process runs any more.
func (m *Manager) Forget(bin *symbols.Binary) {
	for _, f := range m.families {
		f.mu.Lock()
		delete(f.configs, bin)
		f.mu.Unlock()
		if f.Entries != nil {
			f.Entries.BinaryForgotten(bin)
		}
	}
}

// probeSites returns the file offsets where p attaches.
func probeSites(bin *symbols.Binary, p Probe) (siteOffsets, error) {
	addrs, err := ProbeAddrs(bin, p)
	if err != nil {
		return nil, err
	}
	offs := make(siteOffsets, 0, len(addrs))
	for _, a := range addrs {
		site, err := bin.CheckSite(a)
		if err != nil {
			return nil, fmt.Errorf("locate %s: %w", p.Function, err)
		}
		offs = append(offs, site.Offset)
	}
	return offs, nil
}

// ProbeAddrs returns the virtual addresses where p attaches in bin: the
// cheapest safe instruction at which a call has begun, every return
// instruction, or the calls (or their return sites) it names. The error
// wraps symbols.ErrFuncNotFound when the function is absent.
func ProbeAddrs(bin *symbols.Binary, p Probe) ([]uint64, error) {
	f, err := bin.LookupFunc(p.Function)
	if err != nil {
		return nil, err
	}
	sites, err := bin.Sites(f)
	if err != nil {
		return nil, fmt.Errorf("find probe sites of %s: %w", p.Function, err)
	}
	addrs := []uint64{sites.Entry}
	if !sites.EntryEmulated && sites.StackCheck != 0 && p.Idempotent {
		addrs[0] = sites.StackCheck
	}
	if p.Call != "" {
		calls, err := bin.CallSites(f, p.Call)
		if err != nil {
			return nil, fmt.Errorf("find calls to %s in %s: %w", p.Call, p.Function, err)
		}
		if p.After != "" {
			if calls, err = firstCallAfter(bin, f, calls, p.After); err != nil {
				return nil, err
			}
		}
		if len(calls) == 0 {
			return nil, fmt.Errorf("no call to %s in %s", p.Call, p.Function)
		}
		addrs = addrs[:0]
		for _, c := range calls {
			if p.AfterCall {
				addrs = append(addrs, c.Return)
			} else {
				addrs = append(addrs, c.Call)
			}
		}
	}
	if p.Returns {
		if len(sites.Returns) == 0 {
			return nil, fmt.Errorf("%s has no return instruction to probe", p.Function)
		}
		addrs = sites.Returns
	}
	return addrs, nil
}

// firstCallAfter keeps, of calls (in address order), the first that
// follows f's one call to after.
func firstCallAfter(bin *symbols.Binary, f symbols.Func, calls []symbols.CallSite, after string) ([]symbols.CallSite, error) {
	prev, err := bin.CallSites(f, after)
	if err != nil {
		return nil, fmt.Errorf("find calls to %s in %s: %w", after, f.Name, err)
	}
	out, err := callAfter(calls, prev)
	if err != nil {
		return nil, fmt.Errorf("calls to %s in %s: %w", after, f.Name, err)
	}
	return out, nil
}

// callAfter keeps the first of calls after the one call in prev (both in
// address order).
func callAfter(calls, prev []symbols.CallSite) ([]symbols.CallSite, error) {
	if len(prev) != 1 {
		return nil, fmt.Errorf("%d calls, want one", len(prev))
	}
	for _, c := range calls {
		if c.Call > prev[0].Call {
			return []symbols.CallSite{c}, nil
		}
	}
	return nil, nil
}

func (f *loadedFamily) attach(ex *link.Executable, pid int, bin *symbols.Binary, cfg configResult) ([]link.Link, []string, error) {
	var links []link.Link
	var sites []string
	for _, p := range f.Probes {
		offs, ok := cfg.offsets[p.Program+"\x00"+p.Function]
		if !ok {
			continue
		}
		var prog *ebpf.Program
		if f.coll != nil {
			prog = f.coll.Programs[p.Program]
		}
		if prog == nil {
			return links, nil, fmt.Errorf("program %s missing from collection", p.Program)
		}
		ls, err := f.attachSites(ex, bin, prog, pid, offs, 0)
		links = append(links, ls...)
		if err != nil {
			return links, nil, fmt.Errorf("attach uprobe to %s: %w", p.Function, err)
		}
		sites = append(sites, p.Function)
	}
	return links, sites, nil
}

// CloseLinks closes links concurrently: each close waits for a kernel
// grace period, and the waits overlap.
func CloseLinks(links []link.Link) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, l := range links {
		wg.Add(1)
		sem <- struct{}{}
		go func(l link.Link) {
			defer wg.Done()
			l.Close()
			<-sem
		}(l)
	}
	wg.Wait()
}

// attachSites attaches prog at the given file offsets of one process, with
// a BPF cookie: one uprobe_multi link where the kernel has them, else one
// uprobe per site.
func (f *loadedFamily) attachSites(ex *link.Executable, bin *symbols.Binary, prog *ebpf.Program, pid int, offs []uint64, cookie uint64) ([]link.Link, error) {
	if len(offs) == 0 {
		return nil, nil
	}
	if err := verifySites(pid, bin, offs); err != nil {
		return nil, err
	}
	if f.multi {
		opts := &link.UprobeMultiOptions{Addresses: offs, PID: uint32(pid)}
		if cookie != 0 {
			opts.Cookies = make([]uint64, len(offs))
			for i := range opts.Cookies {
				opts.Cookies[i] = cookie
			}
		}
		l, err := ex.UprobeMulti(nil, prog, opts)
		if err != nil {
			return nil, err
		}
		return []link.Link{l}, nil
	}
	var links []link.Link
	for _, off := range offs {
		l, err := ex.Uprobe("", prog, &link.UprobeOptions{Address: off, PID: pid, Cookie: cookie})
		if err != nil {
			return links, err
		}
		links = append(links, l)
	}
	return links, nil
}

// Detach removes a process's probes and everything kept about it in BPF
// maps.
func (m *Manager) Detach(a *Attachment) {
	m.attMu.Lock()
	if m.atts[a.PID] == a {
		delete(m.atts, a.PID)
	}
	m.attMu.Unlock()
	a.mu.Lock()
	fams := a.fams
	a.fams = nil
	a.mu.Unlock()
	var links []link.Link
	for _, af := range fams {
		links = append(links, af.links...)
	}
	CloseLinks(links)
	for _, f := range m.families {
		if f.Entries != nil {
			f.Entries.ProcessDetached(a.PID)
		}
	}
	for _, af := range fams {
		af.f.forget(a.PID)
	}
	pid := uint32(a.PID)
	// Events already in the rings still name this PID: let the readers
	// attribute them before forgetting it.
	time.AfterFunc(4*m.opts.DrainInterval+100*time.Millisecond, func() {
		m.targets.set(pid, 0, false)
	})
}

// release detaches one family from one process (whose other families
// stay attached).
func (m *Manager) release(pid int, af attachedFamily) {
	CloseLinks(af.links)
	af.f.forget(pid)
}

// forget drops what the family keeps about a process it no longer probes.
func (f *loadedFamily) forget(pid int) {
	if f.Detached != nil {
		f.Detached(pid)
	}
	if f.config != nil {
		f.config.Delete(uint32(pid))
	}
	f.dropStarts(func(tgid uint32, _ uint64) bool { return tgid == uint32(pid) })
}

// GoroutineKey is struct goroutine_key of bpf/common.h, the key of every
// family's map of calls in flight, as bpf2go generates it (probes/gen.go);
// each family's tests compare it with their own generated key and with
// each object's BTF.
type GoroutineKey = sharedGoroutineKey

// dropStarts deletes the family's calls in flight that match, from every
// map of them.
func (f *loadedFamily) dropStarts(match func(tgid uint32, startNs uint64) bool) {
	for _, sm := range f.starts {
		DropStarts(sm, func(k GoroutineKey, start uint64) bool { return match(k.Tgid, start) })
	}
}

// DropStarts deletes the calls in flight of a start map (nil: none) that
// match. Every start map's value begins with the call's start time, a u64
// (checked against the objects' BTF by each family's tests,
// bpfcheck.CheckObjects).
func DropStarts(starts *ebpf.Map, match func(k GoroutineKey, startNs uint64) bool) {
	if starts == nil {
		return
	}
	var (
		key  GoroutineKey
		val  []byte
		dead []GoroutineKey
	)
	val = make([]byte, starts.ValueSize())
	it := starts.Iterate()
	for it.Next(&key, &val) {
		start := binary.LittleEndian.Uint64(val)
		if match(key, start) {
			dead = append(dead, key)
		}
	}
	for _, k := range dead {
		starts.Delete(k)
	}
}

// sweep expires calls in flight whose end never came (a goroutine that
// never returned, a process that died mid-call).
func (m *Manager) sweep(ctx context.Context) {
	defer m.wg.Done()
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cutoff := uint64(monotonicNow().Nanoseconds()) - uint64(m.opts.InFlightTTL.Nanoseconds())
		for _, f := range m.families {
			f.dropStarts(func(_ uint32, start uint64) bool { return start < cutoff })
		}
	}
}

// Stats are the manager's own counters, per family.
type Stats struct {
	Events map[string]uint64
	Lost   map[string]uint64
	// Invalid events were refused for an implausible value: by family,
	// then reason (status, method, utf8, path, port, duration; every
	// reason a family can report is present).
	Invalid map[string]map[string]uint64
	// Unattributed events named a PID no longer (or not yet) attached.
	Unattributed uint64
	// Malformed events could not be decoded.
	Malformed uint64
}

// Stats reads the manager's counters.
func (m *Manager) Stats() Stats {
	s := Stats{Events: map[string]uint64{}, Lost: map[string]uint64{}, Invalid: map[string]map[string]uint64{}}
	for _, f := range m.families {
		if f.coll == nil {
			continue // a sampler: no events
		}
		kind := f.Kind
		s.Events[f.Name] = m.readers.sum(func(c *readerCounts) uint64 { return c.events[kind].Load() })
		s.Lost[f.Name] = m.rings.lostEvents(f.Kind)
		s.Invalid[f.Name] = m.readers.invalid(f.Family)
	}
	s.Unattributed = m.readers.sum(func(c *readerCounts) uint64 { return c.unknown.Load() })
	s.Malformed = m.readers.sum(func(c *readerCounts) uint64 { return c.malformed.Load() })
	return s
}

// Close detaches nothing by itself (Detach each Attachment first), stops
// the readers and unloads the BPF programs and maps.
func (m *Manager) Close() {
	if m.cancel != nil {
		m.cancel()
	}
	if m.readers != nil {
		m.readers.stop()
	}
	m.wg.Wait()
	for _, f := range m.families {
		if f.coll != nil {
			f.coll.Close()
		}
	}
	m.rings.close()
}

// Handle is what the manager lends a family that attaches its own probes
// (Entries): its loaded collection, its maps, and the manager's way of
// attaching sites and attributing events.
type Handle struct {
	m *Manager
	f *loadedFamily
}

// Program returns a program of the family's collection (nil if absent).
func (h *Handle) Program(name string) *ebpf.Program { return h.f.coll.Programs[name] }

// ConfigMap is the family's map named Family.ConfigMap.
func (h *Handle) ConfigMap() *ebpf.Map { return h.f.config }

// DropStarts deletes the family's calls in flight that match.
func (h *Handle) DropStarts(match func(k GoroutineKey, startNs uint64) bool) {
	for _, sm := range h.f.starts {
		DropStarts(sm, match)
	}
}

// Attribute makes the readers attribute the events of pid to t (Attach
// forgets a process to which no family applied).
func (h *Handle) Attribute(pid int, t aggregator.TargetID) {
	h.m.targets.set(uint32(pid), t, true)
}

// AttachSites attaches prog at the given file offsets of one process once
// each site holds the instruction decoded there, every site with the BPF
// cookie: one uprobe_multi link where the kernel has them, else one uprobe
// per site. Close the links returned even with an error.
func (h *Handle) AttachSites(ex *link.Executable, bin *symbols.Binary, prog *ebpf.Program, pid int, offs []uint64, cookie uint64) ([]link.Link, error) {
	return h.f.attachSites(ex, bin, prog, pid, offs, cookie)
}
