package probes

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
	"github.com/blindspot-dev/blindspot/probes/label"
	"github.com/blindspot-dev/blindspot/probes/userfunc"
	"github.com/blindspot-dev/blindspot/symbols"
)

// UserFunc is one business function from the configuration and the metric
// it feeds. Keep the same UserFunc across reloads for an unchanged entry:
// its series then keep counting.
type UserFunc struct {
	Entry  *userfunc.Entry
	Metric *aggregator.Metric
}

// NewUserFunc makes the metric of a checked entry.
func NewUserFunc(e *userfunc.Entry) *UserFunc {
	m := &aggregator.Metric{
		Name:   e.Metric,
		Help:   e.Help,
		Labels: e.LabelNames(),
		Limit:  e.SeriesLimit,
	}
	if m.Limit == 0 {
		m.Limit = userfunc.DefaultSeriesLimit
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
	return &UserFunc{Entry: e, Metric: m}
}

// userFamilyName labels the business probes' self-metrics and statuses.
const userFamilyName = "userfunc"

// userProbes attaches the configured business functions to processes and
// follows reloads. Its BPF programs are generic: each uprobe's cookie names
// a spec (one per entry and binary) in uf_specs.
type userProbes struct {
	lf *loadedFamily

	mu     sync.Mutex
	funcs  map[string]*UserFunc // by Entry.Key()
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
	plan   *userfunc.Plan
	err    error
	skip   bool // the program does not link the function's package
	entry  []uint64
	exits  []uint64
	loaded bool // stored in uf_specs
}

type userDecode struct {
	metric   *aggregator.Metric
	types    [userfunc.MaxLabels]userfunc.LabelType
	maxLen   [userfunc.MaxLabels]int // of string labels: a value this long may have been cut
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
	statuses map[string]ProbeStatus
}

func (m *Manager) loadUserFuncs() error {
	lf, err := m.load(&Family{Name: userFamilyName, Kind: kindUserFunc, Spec: loadUserFunc, ConfigMap: "uf_specs",
		Invalid: []string{"utf8", "duration"}})
	if err != nil {
		return err
	}
	lf.starts = lf.coll.Maps["uf_starts"]
	m.families = append(m.families, lf)
	m.user = &userProbes{
		lf:    lf,
		funcs: map[string]*UserFunc{},
		specs: map[specKey]*userSpec{},
		procs: map[int]*userProc{},
	}
	empty := map[uint32]*userDecode{}
	m.user.byID.Store(&empty)
	m.readers.decoders[kindUserFunc] = m.user.decode
	return nil
}

// SetUserFuncs replaces the configured business functions: probes of
// entries no longer present are removed from every process, new ones
// attached, unchanged ones (same Entry.Key) left alone.
func (m *Manager) SetUserFuncs(funcs []*UserFunc) {
	u := m.user
	u.mu.Lock()
	defer u.mu.Unlock()
	next := map[string]*UserFunc{}
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
					u.lf.config.Delete(s.id)
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
func (m *Manager) AttachUser(pid int, exePath, exe, service string, bin *symbols.Binary, t aggregator.TargetID) []ProbeStatus {
	u := m.user
	u.mu.Lock()
	defer u.mu.Unlock()
	// The readers attribute this process's events to t (Attach unsets it
	// when no built-in family applies).
	m.targets.set(uint32(pid), t, true)
	p := &userProc{pid: pid, exe: exePath, exeName: exe, service: service, bin: bin,
		links: map[string][]link.Link{}, statuses: map[string]ProbeStatus{}}
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
func (m *Manager) UserStatus(pid int) []ProbeStatus {
	u := m.user
	u.mu.Lock()
	defer u.mu.Unlock()
	if p := u.procs[pid]; p != nil {
		return p.statusList()
	}
	return nil
}

func (p *userProc) statusList() []ProbeStatus {
	out := make([]ProbeStatus, 0, len(p.statuses))
	for _, s := range p.statuses {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Family < out[j].Family })
	return out
}

// detachUser removes a process's business probes.
func (u *userProbes) detach(pid int) {
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

// forget drops the specs of a binary no process runs any more.
func (u *userProbes) forget(bin *symbols.Binary) {
	u.mu.Lock()
	defer u.mu.Unlock()
	changed := false
	for sk, s := range u.specs {
		if sk.bin == bin {
			if s.loaded {
				u.lf.config.Delete(s.id)
			}
			delete(u.specs, sk)
			changed = true
		}
	}
	if changed {
		u.publish()
	}
}

func (u *userProbes) detachEntry(p *userProc, key string) {
	closeLinks(p.links[key])
	delete(p.links, key)
	delete(p.statuses, key)
	if s := u.specs[specKey{key, p.bin}]; s != nil && s.loaded {
		u.dropStarts(uint32(p.pid), s.id)
	}
}

// dropStarts deletes the calls in flight of one spec in one process.
func (u *userProbes) dropStarts(pid, id uint32) {
	m := u.lf.starts
	if m == nil {
		return
	}
	var (
		key  userFuncGoroutineKey
		dead []userFuncGoroutineKey
	)
	val := make([]byte, m.ValueSize())
	it := m.Iterate()
	for it.Next(&key, &val) {
		if key.Tgid == pid && key.Pad == id {
			dead = append(dead, key)
		}
	}
	for _, k := range dead {
		m.Delete(k)
	}
}

// statusName is the family name shown in /targets for an entry.
func statusName(f *UserFunc) string { return userFamilyName + ":" + f.Entry.Metric }

func (u *userProbes) attachEntry(p *userProc, f *UserFunc) {
	e := f.Entry
	if !e.Selects(p.service, p.exeName) {
		return
	}
	key := e.Key()
	s := u.spec(key, f, p.bin)
	if s.skip {
		return
	}
	st := ProbeStatus{Family: statusName(f)}
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
		ls, err := u.lf.attachSites(ex, p.bin, prog, p.pid, offs, uint64(s.id))
		links = append(links, ls...)
		if err != nil {
			return fmt.Errorf("attach uprobe to %s: %w", e.Function, err)
		}
		return nil
	}
	progs := u.lf.coll.Programs
	var aerr error
	if s.plan.NeedsExit() {
		aerr = attach(progs["uprobe_uf_enter"], s.entry)
		if aerr == nil {
			aerr = attach(progs["uprobe_uf_exit"], s.exits)
		}
	} else {
		aerr = attach(progs["uprobe_uf_count"], s.entry)
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
func (u *userProbes) spec(key string, f *UserFunc, bin *symbols.Binary) *userSpec {
	sk := specKey{key, bin}
	if s := u.specs[sk]; s != nil {
		return s
	}
	s := &userSpec{}
	u.specs[sk] = s
	plan, err := userfunc.Resolve(f.Entry, bin)
	if errors.Is(err, userfunc.ErrNotLinked) {
		s.skip = true
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
		err = u.lf.config.Put(s.id, spec)
	}
	if err != nil {
		s.err = fmt.Errorf("store spec: %w", err)
		return s
	}
	s.loaded = true
	u.publish()
	return s
}

func bpfLoc(l userfunc.Loc) userFuncUfLoc {
	if l.Reg >= 0 {
		return userFuncUfLoc{Reg: int32(l.Reg)}
	}
	return userFuncUfLoc{Reg: -1, Stack: int32(l.Stack)}
}

func bpfSpec(id uint32, p *userfunc.Plan) (*userFuncUfSpec, error) {
	s := &userFuncUfSpec{Id: id, Outcome: uint8(p.Outcome), Nlabels: uint8(len(p.Labels)), Result: bpfLoc(p.Result)}
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
func (u *userProbes) publish() {
	next := map[uint32]*userDecode{}
	for sk, s := range u.specs {
		f := u.funcs[sk.key]
		if f == nil || s.plan == nil || s.id == 0 {
			continue
		}
		d := &userDecode{metric: f.Metric, n: len(s.plan.Labels), outcome: s.plan.Outcome != userfunc.OutcomeNone, duration: f.Entry.IsDuration()}
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
// (compared with it by TestUserFuncContract).
const (
	ufSuccess = 1
	ufFailure = 2
)

// decode folds one uf_event into a shard. String labels must be valid
// UTF-8 without control characters; integers and booleans are whatever
// the program held.
func (u *userProbes) decode(sh *aggregator.Shard, t aggregator.TargetID, raw []byte) Verdict {
	if len(raw) < int(unsafe.Sizeof(userFuncUfEvent{})) {
		return Malformed
	}
	ev := (*userFuncUfEvent)(unsafe.Pointer(&raw[0]))
	d := (*u.byID.Load())[ev.Id]
	if d == nil {
		return Decoded // an entry removed by a reload
	}
	if d.duration && !PlausibleDuration(ev.Hdr.StartNs, ev.Hdr.EndNs) {
		return InvalidDuration
	}
	var l aggregator.Labels
	var buf [24]byte
	for i := 0; i < d.n; i++ {
		switch d.types[i] {
		case userfunc.LabelString:
			n := int(ev.V.Len[i])
			s, ok := label.Text(label.Chars(ev.V.Str[i][:], n), n >= d.maxLen[i] || n >= len(ev.V.Str[i]), false)
			if !ok {
				return InvalidUTF8
			}
			l[i] = sh.Intern(s)
		case userfunc.LabelInt:
			l[i] = sh.Intern(strconv.AppendInt(buf[:0], int64(ev.V.Num[i]), 10))
		case userfunc.LabelUint:
			l[i] = sh.Intern(strconv.AppendUint(buf[:0], ev.V.Num[i], 10))
		case userfunc.LabelBool:
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
	return Decoded
}
