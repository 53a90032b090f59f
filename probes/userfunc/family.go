package userfunc

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/label"
	"github.com/blindspot-dev/blindspot/symbols"
)

// Func is one business function from the configuration and the metric it
// feeds. Keep the same Func across reloads for an unchanged entry: its
// series then keep counting.
type Func struct {
	Entry  *Entry
	Metric *aggregator.Metric
}

// NewFunc makes the metric of a checked entry.
func NewFunc(e *Entry) *Func {
	m := &aggregator.Metric{
		Name:   e.Metric,
		Help:   e.Help,
		Labels: e.LabelNames(),
		Limit:  e.SeriesLimit, // 0: the agent's series_limit (aggregator.AddMetric)
	}
	if e.Outcome != "" {
		m.Labels = append(m.Labels, e.Outcome)
	}
	if e.IsDuration() {
		m.Kind, m.Unit = aggregator.Histogram, "s"
		m.Buckets = e.Buckets
		if len(m.Buckets) == 0 {
			m.Buckets = aggregator.DurationBuckets
		}
	} else {
		m.Kind, m.Unit = aggregator.Counter, "{call}"
	}
	if m.Help == "" {
		m.Help = "Calls of " + e.Function + "."
		if e.IsDuration() {
			m.Help = "Duration of " + e.Function + "."
		}
	}
	return &Func{Entry: e, Metric: m}
}

// FamilyName labels the business probes' self-metrics and statuses.
const FamilyName = "userfunc"

// kindUserFunc is the family's event kind: FAMILY_USER_FUNC of
// bpf/common.h (compared with it by TestContract).
const kindUserFunc = 6

// Probes attaches the configured business functions to processes and
// follows reloads: a family of configured entries (probes.Entries). Its
// BPF programs are generic: each uprobe's cookie names a spec (one per
// entry and binary) in uf_specs.
type Probes struct {
	mu     sync.Mutex
	h      *probes.Handle   // set when the manager has loaded the family
	funcs  map[string]*Func // by Entry.Key()
	specs  map[specKey]*userSpec
	procs  map[int]*userProc
	nextID uint32

	// byID maps spec ids to what the reader needs; replaced whole.
	byID atomic.Pointer[map[uint32]*userDecode]
}

type specKey struct {
	key string
	bin *symbols.Binary
}

type userSpec struct {
	id     uint32
	plan   *Plan
	err    error
	skip   bool   // the program does not link the function's package
	left   string // why a main.* function is not in the program
	entry  []uint64
	exits  []uint64
	loaded bool // stored in uf_specs
}

type userDecode struct {
	metric   *aggregator.Metric
	types    [MaxLabels]LabelType
	maxLen   [MaxLabels]int // of string labels: a value this long may have been cut
	n        int
	outcome  bool
	duration bool
}

type userProc struct {
	pid      int
	exe      string // path the kernel can open (/proc/PID/exe)
	exeName  string // real path, for matching
	service  string
	bin      *symbols.Binary
	links    map[string][]link.Link // by entry key
	statuses map[string]probes.ProbeStatus
}

// New returns the business functions' probes, none configured yet; hand
// Family to probes.New.
func New() *Probes {
	u := &Probes{
		funcs: map[string]*Func{},
		specs: map[specKey]*userSpec{},
		procs: map[int]*userProc{},
	}
	empty := map[uint32]*userDecode{}
	u.byID.Store(&empty)
	return u
}

// Family is the business functions' family for probes.New. Its start map
// keeps the size bpf/userfunc.c gives it.
func (u *Probes) Family() *probes.Family {
	return &probes.Family{
		Name: FamilyName, Kind: kindUserFunc, Spec: loadBpf,
		ConfigMap: "uf_specs", StartMap: "uf_starts", StartMapFixed: true,
		Decode: u.decode, Invalid: []string{"utf8", "duration"},
		Entries: u,
	}
}

// Loaded implements probes.Entries.
func (u *Probes) Loaded(h *probes.Handle) {
	u.mu.Lock()
	u.h = h
	u.mu.Unlock()
}

// Entry implements probes.Entries: an event's entry is its spec id.
func (u *Probes) Entry(raw []byte) uint32 {
	off := unsafe.Offsetof(bpfUfEvent{}.Id)
	return uint32(raw[off]) | uint32(raw[off+1])<<8 | uint32(raw[off+2])<<16 | uint32(raw[off+3])<<24
}

// SetUserFuncs replaces the configured business functions: probes of
// entries no longer present are removed from every process, new ones
// attached, unchanged ones (same Entry.Key) left alone.
func (u *Probes) SetUserFuncs(funcs []*Func) {
	u.mu.Lock()
	defer u.mu.Unlock()
	next := map[string]*Func{}
	for _, f := range funcs {
		next[f.Entry.Key()] = f
	}
	var removed, added []string
	for k := range u.funcs {
		if _, ok := next[k]; !ok {
			removed = append(removed, k)
		}
	}
	for k := range next {
		if _, ok := u.funcs[k]; !ok {
			added = append(added, k)
		}
	}
	sort.Strings(added)
	for _, p := range u.procs {
		for _, k := range removed {
			u.detachEntry(p, k)
		}
	}
	for _, k := range removed {
		for sk, s := range u.specs {
			if sk.key == k {
				if s.loaded {
					u.h.ConfigMap().Delete(s.id)
				}
				delete(u.specs, sk)
			}
		}
	}
	u.funcs = next
	u.publish()
	for _, p := range u.procs {
		for _, k := range added {
			u.attachEntry(p, next[k])
		}
	}
}

// AttachUser attaches the business functions that select the process (by
// service name or executable path) and returns their statuses.
//
// exePath is a path the kernel can open (/proc/PID/exe), exe the
// executable's real path (matched against Entry.Service), t the process's
// target in the aggregator.
func (u *Probes) AttachUser(pid int, exePath, exe, service string, bin *symbols.Binary, t aggregator.TargetID) []probes.ProbeStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	// The readers attribute this process's events to t (Attach unsets it
	// when no built-in family applies).
	u.h.Attribute(pid, t)
	p := &userProc{pid: pid, exe: exePath, exeName: exe, service: service, bin: bin,
		links: map[string][]link.Link{}, statuses: map[string]probes.ProbeStatus{}}
	u.procs[pid] = p
	keys := make([]string, 0, len(u.funcs))
	for k := range u.funcs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		u.attachEntry(p, u.funcs[k])
	}
	return p.statusList()
}

// UserStatus returns the business probes' statuses in a process.
func (u *Probes) UserStatus(pid int) []probes.ProbeStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	if p := u.procs[pid]; p != nil {
		return p.statusList()
	}
	return nil
}

func (p *userProc) statusList() []probes.ProbeStatus {
	out := make([]probes.ProbeStatus, 0, len(p.statuses))
	for _, s := range p.statuses {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Family < out[j].Family })
	return out
}

// ProcessDetached implements probes.Entries: it removes a process's
// business probes.
func (u *Probes) ProcessDetached(pid int) {
	u.mu.Lock()
	p := u.procs[pid]
	delete(u.procs, pid)
	if p != nil {
		for k := range p.links {
			u.detachEntry(p, k)
		}
	}
	u.mu.Unlock()
}

// BinaryForgotten implements probes.Entries: it drops the specs of a
// binary no process runs any more.
func (u *Probes) BinaryForgotten(bin *symbols.Binary) {
	u.mu.Lock()
	defer u.mu.Unlock()
	changed := false
	for sk, s := range u.specs {
		if sk.bin == bin {
			if s.loaded {
				u.h.ConfigMap().Delete(s.id)
			}
			delete(u.specs, sk)
			changed = true
		}
	}
	if changed {
		u.publish()
	}
}

func (u *Probes) detachEntry(p *userProc, key string) {
	probes.CloseLinks(p.links[key])
	delete(p.links, key)
	delete(p.statuses, key)
	if s := u.specs[specKey{key, p.bin}]; s != nil && s.loaded {
		u.dropStarts(uint32(p.pid), s.id)
	}
}

// dropStarts deletes the calls in flight of one spec in one process (its
// id is the key's pad, where bpf/userfunc.c puts it).
func (u *Probes) dropStarts(pid, id uint32) {
	u.h.DropStarts(func(k probes.GoroutineKey, _ uint64) bool { return k.Tgid == pid && k.Pad == id })
}

// statusName is the family name shown in /targets for an entry.
func statusName(f *Func) string { return FamilyName + ":" + f.Entry.Metric }

func (u *Probes) attachEntry(p *userProc, f *Func) {
	e := f.Entry
	if !e.Selects(p.service, p.exeName) {
		return
	}
	key := e.Key()
	s := u.spec(key, f, p.bin)
	if s.skip {
		return
	}
	st := probes.ProbeStatus{Family: statusName(f)}
	if s.left != "" {
		st.Left = []string{s.left}
		p.statuses[key] = st
		return
	}
	if s.err != nil {
		st.Error = s.err.Error()
		p.statuses[key] = st
		return
	}
	ex, err := link.OpenExecutable(p.exe)
	if err != nil {
		st.Error = fmt.Sprintf("open executable: %v", err)
		p.statuses[key] = st
		return
	}
	var links []link.Link
	attach := func(prog *ebpf.Program, offs []uint64) error {
		ls, err := u.h.AttachSites(ex, p.bin, prog, p.pid, offs, uint64(s.id))
		links = append(links, ls...)
		if err != nil {
			return fmt.Errorf("attach uprobe to %s: %w", e.Function, err)
		}
		return nil
	}
	var aerr error
	if s.plan.NeedsExit() {
		aerr = attach(u.h.Program("uprobe_uf_enter"), s.entry)
		if aerr == nil {
			aerr = attach(u.h.Program("uprobe_uf_exit"), s.exits)
		}
	} else {
		aerr = attach(u.h.Program("uprobe_uf_count"), s.entry)
	}
	if aerr != nil {
		for _, l := range links {
			l.Close()
		}
		st.Error = aerr.Error()
		p.statuses[key] = st
		return
	}
	st.Sites = []string{e.Function}
	p.links[key] = links
	p.statuses[key] = st
}

// spec plans an entry for a binary once and stores its spec for the BPF
// programs.
func (u *Probes) spec(key string, f *Func, bin *symbols.Binary) *userSpec {
	sk := specKey{key, bin}
	if s := u.specs[sk]; s != nil {
		return s
	}
	s := &userSpec{}
	u.specs[sk] = s
	plan, err := Resolve(f.Entry, bin)
	if errors.Is(err, ErrNotLinked) {
		s.skip = true
		return s
	}
	if errors.Is(err, ErrNotInProgram) {
		s.left = err.Error()
		return s
	}
	if err != nil {
		s.err = err
		return s
	}
	s.plan = plan
	u.nextID++
	s.id = u.nextID
	entry := plan.Sites.Entry
	site, err := bin.CheckSite(entry)
	if err != nil {
		s.err = fmt.Errorf("locate %s: %w", f.Entry.Function, err)
		return s
	}
	s.entry = []uint64{site.Offset}
	if plan.NeedsExit() {
		if len(plan.Sites.Returns) == 0 {
			s.err = fmt.Errorf("%s has no return instruction to probe (it never returns?)", f.Entry.Function)
			return s
		}
		for _, a := range plan.Sites.Returns {
			site, err := bin.CheckSite(a)
			if err != nil {
				s.err = fmt.Errorf("locate %s: %w", f.Entry.Function, err)
				return s
			}
			s.exits = append(s.exits, site.Offset)
		}
	}
	spec, err := bpfSpec(s.id, plan)
	if err == nil {
		err = u.h.ConfigMap().Put(s.id, spec)
	}
	if err != nil {
		s.err = fmt.Errorf("store spec: %w", err)
		return s
	}
	s.loaded = true
	u.publish()
	return s
}

func bpfLoc(l Loc) bpfUfLoc {
	if l.Reg >= 0 {
		return bpfUfLoc{Reg: int32(l.Reg)}
	}
	return bpfUfLoc{Reg: -1, Stack: int32(l.Stack)}
}

func bpfSpec(id uint32, p *Plan) (*bpfUfSpec, error) {
	s := &bpfUfSpec{Id: id, Outcome: uint8(p.Outcome), Nlabels: uint8(len(p.Labels)), Result: bpfLoc(p.Result)}
	if len(p.Labels) > len(s.Labels) {
		return nil, fmt.Errorf("%d labels: at most %d", len(p.Labels), len(s.Labels))
	}
	for i, l := range p.Labels {
		bl := &s.Labels[i]
		bl.Type, bl.Size, bl.MaxLen = uint8(l.Type), uint8(l.Size), uint8(l.MaxLen)
		bl.A, bl.B = bpfLoc(l.A), bpfLoc(l.B)
		if len(l.Hops) > len(bl.Off) {
			return nil, fmt.Errorf("label %s: at most %d fields deep", l.Name, len(bl.Off))
		}
		bl.Hops = uint8(len(l.Hops))
		for h, o := range l.Hops {
			bl.Off[h] = uint32(o)
		}
	}
	return s, nil
}

// publish rebuilds the readers' view of the specs. Called with mu held.
func (u *Probes) publish() {
	next := map[uint32]*userDecode{}
	for sk, s := range u.specs {
		f := u.funcs[sk.key]
		if f == nil || s.plan == nil || s.id == 0 {
			continue
		}
		d := &userDecode{metric: f.Metric, n: len(s.plan.Labels), outcome: s.plan.Outcome != OutcomeNone, duration: f.Entry.IsDuration()}
		for i, l := range s.plan.Labels {
			d.types[i], d.maxLen[i] = l.Type, l.MaxLen
		}
		next[s.id] = d
	}
	u.byID.Store(&next)
}

var (
	outcomeSuccess = "success"
	outcomeError   = "error"
)

// Outcomes of uf_event: UF_SUCCESS and UF_FAILURE of bpf/userfunc.c
// (compared with it by TestContract).
const (
	ufSuccess = 1
	ufFailure = 2
)

// decode folds one uf_event into a shard. String labels must be valid
// UTF-8 without control characters; integers and booleans are whatever
// the program held.
func (u *Probes) decode(sh *aggregator.Shard, t aggregator.TargetID, raw []byte) probes.Verdict {
	if len(raw) < int(unsafe.Sizeof(bpfUfEvent{})) {
		return probes.Malformed
	}
	ev := (*bpfUfEvent)(unsafe.Pointer(&raw[0]))
	d := (*u.byID.Load())[ev.Id]
	if d == nil {
		return probes.Decoded // an entry removed by a reload
	}
	if d.duration && !probes.PlausibleDuration(ev.Hdr.StartNs, ev.Hdr.EndNs) {
		return probes.InvalidDuration
	}
	var l aggregator.Labels
	var buf [24]byte
	for i := 0; i < d.n; i++ {
		switch d.types[i] {
		case LabelString:
			n := int(ev.V.Len[i])
			s, ok := label.Text(label.Chars(ev.V.Str[i][:], n), n >= d.maxLen[i] || n >= len(ev.V.Str[i]), false)
			if !ok {
				return probes.InvalidUTF8
			}
			l[i] = sh.Intern(s)
		case LabelInt:
			l[i] = sh.Intern(strconv.AppendInt(buf[:0], int64(ev.V.Num[i]), 10))
		case LabelUint:
			l[i] = sh.Intern(strconv.AppendUint(buf[:0], ev.V.Num[i], 10))
		case LabelBool:
			l[i] = sh.InternString(strconv.FormatBool(ev.V.Num[i] != 0))
		}
	}
	if d.outcome {
		switch ev.Outcome {
		case ufSuccess:
			l[d.n] = sh.InternString(outcomeSuccess)
		case ufFailure:
			l[d.n] = sh.InternString(outcomeError)
		}
	}
	if d.duration {
		sh.Observe(d.metric, t, l, float64(ev.Hdr.EndNs-ev.Hdr.StartNs)/1e9)
	} else {
		sh.Add(d.metric, t, l, 1)
	}
	return probes.Decoded
}

// DetachEntry implements probes.Entries: it detaches one configured
// business function (by spec id) from a process, leaving the reason as its
// status.
func (u *Probes) DetachEntry(pid int, id uint32, reason string) (probes.ProbeStatus, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	p := u.procs[pid]
	if p == nil {
		return probes.ProbeStatus{}, false
	}
	for sk, s := range u.specs {
		if s.id != id || sk.bin != p.bin {
			continue
		}
		f := u.funcs[sk.key]
		if _, attached := p.links[sk.key]; !attached || f == nil {
			return probes.ProbeStatus{}, false
		}
		u.detachEntry(p, sk.key)
		st := probes.ProbeStatus{Family: statusName(f), Error: reason}
		p.statuses[sk.key] = st
		return st, true
	}
	return probes.ProbeStatus{}, false
}
