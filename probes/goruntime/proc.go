package goruntime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v4/process"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes/procmem"
	"github.com/blindspot-dev/blindspot/symbols"
)

// Goroutine states (runtime2.go, unchanged from Go 1.19 to 1.27 but for
// the additions at the end).
const (
	gIdle       = 0
	gDead       = 6
	gDeadExtra  = 11 // Go 1.26+: the g of a cgo extra M
	gMaxStatus  = 11
	gScan       = 0x1000
	maxFnsCache = 1 << 16
	// maxAllglen is the agent's budget for one program's goroutines: its
	// g pointers are read and sorted (16 bytes each, 16 MiB at the bound),
	// the same order as Options.MaxTracked's. A program with more is not
	// sampled rather than sampled in part (a partial count is a wrong one).
	maxAllglen = 1 << 20
	// checkAllglen is the allglen above which it is checked against the
	// program's memory before its g pointers are read.
	checkAllglen = 10_000
	// mergeGap is the most unwanted bytes read to join the windows of two
	// gs into one range; batchBytes bounds the bytes read per batch.
	mergeGap   = 1024
	batchBytes = 1 << 20
)

// The runtime globals each part needs.
var (
	goroutineGlobals = []string{"runtime.allglen", "runtime.allgptr"}
	gcGlobals        = []string{"runtime.memstats", "runtime.gcController", "runtime.gomaxprocs"}
)

// proc is one observed program and what is known about its runtime.
type proc struct {
	pid  int
	t    aggregator.TargetID
	bin  *symbols.Binary
	opts Options
	mem  memReader

	biasKnown bool
	bias      uint64
	globals   map[string]uint64 // link-time addresses

	// goroutines
	gErr        error // why goroutines cannot be read (permanent unless errNotStarted)
	gValidated  bool
	runtimeMain uint64 // link-time entry of runtime.main
	gWinLo      uint64 // the window of a g that holds its fields
	gWinLen     uint64
	gStatus     uint64 // field offsets in the window
	gGoid       uint64
	gStartpc    uint64
	gptrs       []uint64
	gOffs       []int // countGoroutines: each g's window in recBuf
	ptrBuf      []byte
	recBuf      []byte
	spans       []span
	firstSeen   map[uint64]seen
	gen         uint32
	fns         map[uint64]fnInfo // by run-time pc
	names       *startNames       // shared by the programs running bin
	labels      []string          // the label values set at the last sample
	counts      map[string]*fnAgg
	refusedBy   map[string]uint64 // samples refused, by reason

	// GC and runtime settings
	gcErr     error
	msNumgc   uint64
	msPause   uint64
	msEnable  uint64
	gcPercent uint64
	gcGoal    uint64
	gcMapped  uint64
	gcBuf     []byte
	lastNumgc uint32
	gcStarted bool

	ps *process.Process

	mu     sync.Mutex // stats and errors, for Stats
	stats  Stats
	logged map[string]bool
}

type seen struct {
	first int64
	gen   uint32
}
type fnInfo struct {
	name   string
	system bool
}
type fnAgg struct {
	count  int
	oldest int64 // unix nanoseconds; 0 = none tracked
}

func newProc(pid int, bin *symbols.Binary, t aggregator.TargetID, opts Options) (*proc, error) {
	p := &proc{pid: pid, t: t, bin: bin, opts: opts, mem: memReader{pid: pid}, names: &startNames{bin: bin},
		firstSeen: map[uint64]seen{}, fns: map[uint64]fnInfo{}, counts: map[string]*fnAgg{}, refusedBy: map[string]uint64{}, logged: map[string]bool{}}
	p.ps, _ = process.NewProcess(int32(pid))
	p.globals, _ = bin.GlobalAddrs(append(append([]string{}, goroutineGlobals...), gcGlobals...)...)

	// Goroutines: allglen, allgptr and three fields of runtime.g.
	p.gErr = p.setupGoroutines()
	p.gcErr = p.setupGC()
	var errs []error
	if p.gErr != nil {
		errs = append(errs, fmt.Errorf("goroutines: %w", p.gErr))
	}
	if p.gcErr != nil {
		errs = append(errs, fmt.Errorf("gc: %w", p.gcErr))
	}
	return p, errors.Join(errs...)
}

func (p *proc) missing(names []string) error {
	var miss []string
	for _, n := range names {
		if p.globals[n] == 0 {
			miss = append(miss, n)
		}
	}
	if len(miss) > 0 {
		return fmt.Errorf("%w: %s", symbols.ErrGlobalNotFound, strings.Join(miss, ", "))
	}
	return nil
}

func (p *proc) setupGoroutines() error {
	if err := p.missing(goroutineGlobals); err != nil {
		return err
	}
	offs, _, err := p.bin.StructFields("runtime.g", "goid", "atomicstatus", "startpc")
	if err != nil {
		return err
	}
	f, err := p.bin.LookupFunc("runtime.main")
	if err != nil {
		return err
	}
	p.runtimeMain = f.Entry
	// One window of each g holds the three fields.
	lo := min(offs["atomicstatus"], offs["goid"], offs["startpc"])
	hi := max(offs["atomicstatus"]+4, offs["goid"]+8, offs["startpc"]+8)
	if hi-lo > 4096 {
		return fmt.Errorf("runtime.g fields implausibly far apart: %v", offs)
	}
	p.gWinLo, p.gWinLen = lo, hi-lo
	p.gStatus, p.gGoid, p.gStartpc = offs["atomicstatus"]-lo, offs["goid"]-lo, offs["startpc"]-lo
	return nil
}

func (p *proc) setupGC() error {
	if err := p.missing(gcGlobals); err != nil {
		return err
	}
	ms, _, err := p.bin.StructFields("runtime.mstats", "numgc", "pause_ns", "enablegc")
	if err != nil {
		return err
	}
	gc, _, err := p.bin.StructFields("runtime.gcControllerState", "gcPercent", "gcPercentHeapGoal", "mappedReady")
	if err != nil {
		return err
	}
	p.msNumgc, p.msPause, p.msEnable = ms["numgc"], ms["pause_ns"], ms["enablegc"]
	p.gcPercent, p.gcGoal, p.gcMapped = gc["gcPercent"], gc["gcPercentHeapGoal"], gc["mappedReady"]
	return nil
}

// resolveBias finds where a PIE program was loaded, once.
func (p *proc) resolveBias() error {
	if p.biasKnown {
		return nil
	}
	if p.bin.PIE {
		start, err := procmem.ExeMapStart(p.pid)
		if err != nil {
			return err
		}
		p.bias = p.bin.LoadBias(start)
	}
	p.biasKnown = true
	return nil
}

func (p *proc) logOnce(key string, err error) {
	if p.logged[key] {
		return
	}
	p.logged[key] = true
	p.opts.Logger.Warn("runtime metrics unavailable", "pid", p.pid, "part", key, "err", err)
}

func (p *proc) sample(sh *aggregator.Shard, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sampleProcess(sh, now)
	if err := p.resolveBias(); err != nil {
		return
	}
	if p.gErr == nil || errors.Is(p.gErr, errNotStarted) || errors.Is(p.gErr, errRefused) {
		start := time.Now()
		p.gErr = p.sampleGoroutines(sh, now)
		p.stats.GoroutineTime = time.Since(start)
		if errors.Is(p.gErr, errRefused) {
			p.withdrawGoroutines(sh)
		}
		if p.gErr != nil && !errors.Is(p.gErr, errNotStarted) && !isGone(p.gErr) {
			p.logOnce("goroutines", p.gErr)
		}
		if isGone(p.gErr) {
			p.gErr = nil
		}
	}
	if p.gcErr == nil || errors.Is(p.gcErr, errNotStarted) {
		p.gcErr = p.sampleGC(sh)
		if p.gcErr != nil && !errors.Is(p.gcErr, errNotStarted) && !isGone(p.gcErr) {
			p.logOnce("gc", p.gcErr)
		}
		if isGone(p.gcErr) {
			p.gcErr = nil
		}
	}
}

func isGone(err error) bool { return errors.Is(err, syscall.ESRCH) }

func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

func (p *proc) sampleGoroutines(sh *aggregator.Shard, now time.Time) error {
	if err := p.readGPointers(); err != nil {
		return err
	}
	p.gen++
	for _, a := range p.counts {
		a.count, a.oldest = 0, 0
	}
	total, err := p.countGoroutines(now.UnixNano())
	if err != nil {
		return err
	}
	p.forgetStale()
	sh.Set(GoroutineCount, p.t, aggregator.Labels{}, float64(total))
	p.setTop(sh, now.UnixNano())
	return nil
}

// readGPointers reads runtime.allgs into p.gptrs, sorted by address.
func (p *proc) readGPointers() error {
	var hdr [16]byte
	lenAddr, ptrAddr := p.globals["runtime.allglen"]+p.bias, p.globals["runtime.allgptr"]+p.bias
	// allglen first, then allgptr: the runtime stores them in the other
	// order, so the array holds at least allglen entries.
	if failed, err := p.mem.read([]span{{lenAddr, 8}, {ptrAddr, 8}}, hdr[:]); err != nil {
		return err
	} else if failed > 0 {
		return fmt.Errorf("read allglen/allgptr at %#x/%#x: unmapped", lenAddr, ptrAddr)
	}
	n, arr := le64(hdr[0:]), le64(hdr[8:])
	if n == 0 || arr == 0 {
		return errNotStarted
	}
	if err := p.checkAllglen(n); err != nil {
		return err
	}
	p.ptrBuf = grow(p.ptrBuf, int(n)*8)
	if failed, err := p.mem.read([]span{{arr, int(n) * 8}}, p.ptrBuf); err != nil {
		return err
	} else if failed > 0 {
		return errNotStarted // the array moved under us; next time
	}
	if !p.gValidated {
		if err := p.validate(le64(p.ptrBuf)); err != nil {
			return err
		}
		p.gValidated = true
	}
	p.gptrs = p.gptrs[:0]
	for i := uint64(0); i < n; i++ {
		// A g is a user-space heap address (below 1<<56 on every
		// architecture Go runs on here); anything else is memory read
		// while the program changed it.
		if g := le64(p.ptrBuf[i*8:]); g != 0 && g%8 == 0 && g < maxUserAddr {
			p.gptrs = append(p.gptrs, g)
		}
	}
	p.stats.GoroutinesRead = int(n)
	// gs sit side by side in the heap: read them in address order, many
	// per range, so that a sample costs few system calls. A g listed twice
	// (allgs read while the program changed it) is counted once.
	slices.Sort(p.gptrs)
	p.gptrs = slices.Compact(p.gptrs)
	return nil
}

// errRefused says a sample's goroutines were not counted: their number is
// beyond the agent's budget or the program's memory. The next sample tries
// again.
var errRefused = errors.New("goroutines not counted")

// Reasons a sample's goroutines are refused
// (blindspot_go_goroutine_samples_refused_total).
const (
	refusedBudget      = "budget"      // more gs than maxAllglen
	refusedImplausible = "implausible" // more gs than the program's memory holds
)

// checkAllglen refuses an allglen beyond the agent's budget, or beyond
// what the program's memory can hold: the runtime never frees a g, so
// every g allgs lists occupies at least the bytes up to the last field
// read (gWinLo+gWinLen) in the program's resident or swapped memory. It
// reads nothing of the g array.
func (p *proc) checkAllglen(n uint64) error {
	if n > maxAllglen {
		return p.refuse(refusedBudget, fmt.Errorf("%w: allglen %d exceeds the bound of %d goroutines per program", errRefused, n, maxAllglen))
	}
	if n <= checkAllglen {
		return nil
	}
	mem, err := residentAndSwap(p.pid)
	if err != nil {
		return err
	}
	if gsize := p.gWinLo + p.gWinLen; n > mem/gsize {
		return p.refuse(refusedImplausible, fmt.Errorf("%w: allglen %d is implausible: %d gs of at least %d bytes do not fit the program's %d bytes of memory", errRefused, n, n, gsize, mem))
	}
	return nil
}

// refuse counts a refused sample (withdrawGoroutines exports the count).
func (p *proc) refuse(reason string, err error) error {
	p.stats.GoroutinesRefused++
	p.refusedBy[reason]++
	return err
}

// withdrawGoroutines exports the refusals and removes the goroutine
// series, which would otherwise keep the last counted sample's values as
// if they were current: a missing series is visible, a stale one is not.
func (p *proc) withdrawGoroutines(sh *aggregator.Shard) {
	for reason, n := range p.refusedBy {
		sh.SetTotal(GoroutineRefused, p.t, aggregator.Labels{sh.InternString(reason)}, n)
	}
	sh.DeleteSeries(GoroutineCount, p.t)
	sh.DeleteSeries(GoroutineLive, p.t)
	sh.DeleteSeries(GoroutineOldest, p.t)
	p.labels = nil
}

// maxUserAddr bounds the addresses a g may have.
const maxUserAddr = 1 << 56

// countGoroutines reads the window of every g in p.gptrs, in batches of
// merged ranges, and counts the live ones by start function.
func (p *proc) countGoroutines(nowNs int64) (int, error) {
	total := 0
	lo, win := p.gWinLo, p.gWinLen
	for i := 0; i < len(p.gptrs); {
		first := i
		p.spans = p.spans[:0]
		p.gOffs = p.gOffs[:0] // where each g's window lands in recBuf
		size := 0
		for ; i < len(p.gptrs); i++ {
			ws := p.gptrs[i] + lo
			if k := len(p.spans) - 1; k >= 0 && ws <= p.spans[k].addr+uint64(p.spans[k].n)+mergeGap {
				// gs are sorted (and below maxUserAddr): ws is at or
				// past the span's start. A span never shrinks: gs closer
				// than a window (only in memory changed under the read)
				// overlap the last one.
				grow := max(int(ws+win-p.spans[k].addr)-p.spans[k].n, 0)
				if size+grow > batchBytes {
					break
				}
				p.gOffs = append(p.gOffs, size-p.spans[k].n+int(ws-p.spans[k].addr))
				p.spans[k].n += grow
				size += grow
				continue
			}
			if len(p.spans) == maxIovecs || size+int(win) > batchBytes {
				break
			}
			p.gOffs = append(p.gOffs, size)
			p.spans = append(p.spans, span{ws, int(win)})
			size += int(win)
		}
		p.recBuf = grow(p.recBuf, size)
		failed, err := p.mem.read(p.spans, p.recBuf)
		if err != nil {
			return 0, err
		}
		if failed > 0 {
			// A range crossed unmapped memory: read these gs one by one.
			p.spans = p.spans[:0]
			p.gOffs = p.gOffs[:0]
			for j, g := range p.gptrs[first:i] {
				p.spans = append(p.spans, span{g + lo, int(win)})
				p.gOffs = append(p.gOffs, j*int(win))
			}
			p.recBuf = grow(p.recBuf, len(p.spans)*int(win))
			if _, err := p.mem.read(p.spans, p.recBuf); err != nil {
				return 0, err
			}
		}
		for _, off := range p.gOffs {
			total += p.countG(p.recBuf[off:off+int(win)], nowNs)
		}
	}
	return total, nil
}

// forgetStale drops first-seen times of goroutines gone since the last
// sample, and, when many start functions were seen, the ones with none.
func (p *proc) forgetStale() {
	for id, s := range p.firstSeen {
		if s.gen != p.gen {
			delete(p.firstSeen, id)
		}
	}
	if len(p.counts) > 4*p.opts.TopFunctions+1000 {
		for name, a := range p.counts {
			if a.count == 0 {
				delete(p.counts, name)
			}
		}
	}
}

// countG counts one g from its fields (rec starts at its window).
func (p *proc) countG(rec []byte, nowNs int64) int {
	st := le32(rec[p.gStatus:]) &^ gScan
	if st == gIdle || st == gDead || st == gDeadExtra || st > gMaxStatus {
		return 0
	}
	fn := p.fnInfo(le64(rec[p.gStartpc:]))
	if fn.system {
		return 0
	}
	a := p.counts[fn.name]
	if a == nil {
		a = &fnAgg{}
		p.counts[fn.name] = a
	}
	a.count++
	id := le64(rec[p.gGoid:])
	s, ok := p.firstSeen[id]
	if !ok {
		if len(p.firstSeen) >= p.opts.MaxTracked {
			return 1
		}
		s.first = nowNs
	}
	s.gen = p.gen
	p.firstSeen[id] = s
	if a.oldest == 0 || s.first < a.oldest {
		a.oldest = s.first
	}
	return 1
}

// validate checks the runtime.g offsets on allgs[0], the main goroutine:
// goid 1, started at runtime.main.
func (p *proc) validate(g uint64) error {
	rec := make([]byte, p.gWinLen)
	if failed, err := p.mem.read([]span{{g + p.gWinLo, int(p.gWinLen)}}, rec); err != nil {
		return err
	} else if failed > 0 {
		return errNotStarted
	}
	if id, pc := le64(rec[p.gGoid:]), le64(rec[p.gStartpc:]); id != 1 || pc != p.runtimeMain+p.bias {
		return fmt.Errorf("runtime.g offsets do not fit this %s program (main goroutine read as goid %d startpc %#x)", p.bin.GoVersion, id, pc)
	}
	return nil
}

// setTop writes blindspot_go_goroutine_live and blindspot_go_goroutine_oldest_age_seconds for
// the top N start functions and "other".
func (p *proc) setTop(sh *aggregator.Shard, nowNs int64) {
	type row struct {
		name string
		*fnAgg
	}
	rows := make([]row, 0, len(p.counts))
	for name, a := range p.counts {
		if a.count > 0 {
			rows = append(rows, row{name, a})
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].count != rows[j].count {
			return rows[i].count > rows[j].count
		}
		return rows[i].name < rows[j].name
	})
	top := rows
	other := fnAgg{}
	if len(rows) > p.opts.TopFunctions {
		top = rows[:p.opts.TopFunctions]
		for _, r := range rows[p.opts.TopFunctions:] {
			other.count += r.count
			if r.oldest != 0 && (other.oldest == 0 || r.oldest < other.oldest) {
				other.oldest = r.oldest
			}
		}
		top = append(top, row{OtherFunction, &other})
	}
	labels := make([]string, len(top))
	for i, r := range top {
		labels[i] = r.name
	}
	sort.Strings(labels)
	if !equalStrings(labels, p.labels) {
		sh.DeleteSeries(GoroutineLive, p.t)
		sh.DeleteSeries(GoroutineOldest, p.t)
		p.labels = labels
	}
	for _, r := range top {
		l := aggregator.Labels{sh.InternString(r.name)}
		sh.Set(GoroutineLive, p.t, l, float64(r.count))
		age := 0.0
		if r.oldest != 0 {
			age = float64(nowNs-r.oldest) / 1e9
		}
		sh.Set(GoroutineOldest, p.t, l, age)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fnInfo names the start function at a (run-time) pc.
func (p *proc) fnInfo(pc uint64) fnInfo {
	if fi, ok := p.fns[pc]; ok {
		return fi
	}
	fi := fnInfo{name: "unknown"}
	if f, ok := p.bin.FuncForPC(pc - p.bias); ok {
		fi.name = f.Name
		// runtime.isSystemGoroutine: runtime functions but runtime.main
		// do not count in runtime.NumGoroutine (by the start function's
		// own name, wrapper or not).
		fi.system = strings.HasPrefix(f.Name, "runtime.") && f.Name != "runtime.main"
		// The wrapper of a go statement with arguments is named after
		// the function the statement started.
		if f.Entry == pc-p.bias {
			if callee, ok := p.names.callee(f.Entry, p.opts.Logger); ok {
				fi.name = callee
			}
		}
	}
	if len(p.fns) >= maxFnsCache {
		clear(p.fns)
	}
	p.fns[pc] = fi
	return fi
}

func (p *proc) sampleGC(sh *aggregator.Shard) error {
	ms, gc, mp := p.globals["runtime.memstats"]+p.bias, p.globals["runtime.gcController"]+p.bias, p.globals["runtime.gomaxprocs"]+p.bias
	// numgc before pause_ns: the runtime writes a pause before counting it.
	spans := []span{
		{ms + p.msNumgc, 4}, {ms + p.msPause, 256 * 8}, {ms + p.msEnable, 1},
		{gc + p.gcPercent, 4}, {gc + p.gcGoal, 8}, {gc + p.gcMapped, 8}, {mp, 4},
	}
	p.gcBuf = grow(p.gcBuf, 4+2048+1+4+8+8+4)
	b := p.gcBuf
	if failed, err := p.mem.read(spans, b); err != nil {
		return err
	} else if failed > 0 {
		return fmt.Errorf("read runtime.memstats/gcController: unmapped")
	}
	numgc := le32(b[0:])
	pause := b[4 : 4+2048]
	enable := b[2052]
	percent := int32(le32(b[2053:]))
	goal := le64(b[2057:])
	mapped := le64(b[2065:])
	procs := int32(le32(b[2073:]))
	if enable > 1 || procs < 0 || procs > 1<<20 || percent < -1 {
		return fmt.Errorf("runtime.memstats/gcController offsets do not fit this %s program", p.bin.GoVersion)
	}
	if enable == 0 || procs == 0 {
		return errNotStarted
	}
	from := p.lastNumgc
	if !p.gcStarted {
		// The pauses of cycles before the agent came, as far as the
		// runtime's ring of the last 256 still holds them.
		from = 0
		if numgc > 256 {
			from = numgc - 256
		}
		p.gcStarted = true
	}
	if numgc < from {
		from = numgc
	}
	if numgc-from > 256 {
		from = numgc - 256 // older pauses are overwritten
	}
	for c := from; c < numgc; c++ { // cycle c+1's pause is at c%256
		ns := le64(pause[(c%256)*8:])
		sh.Observe(GCPause, p.t, aggregator.Labels{}, float64(ns)/1e9)
	}
	p.lastNumgc = numgc
	sh.SetTotal(GCCycles, p.t, aggregator.Labels{}, uint64(numgc))
	sh.Set(GOGC, p.t, aggregator.Labels{}, float64(percent))
	if goal != ^uint64(0) {
		sh.Set(GCGoal, p.t, aggregator.Labels{}, float64(goal))
	}
	sh.Set(MemoryUsed, p.t, aggregator.Labels{}, float64(mapped))
	sh.Set(ProcessorLimit, p.t, aggregator.Labels{}, float64(procs))
	return nil
}

var (
	userMode   = "user"
	systemMode = "system"
)

func (p *proc) sampleProcess(sh *aggregator.Shard, now time.Time) {
	if p.ps == nil {
		return
	}
	if ts, err := p.ps.Times(); err == nil {
		sh.SetTotalFloat(ProcessCPU, p.t, aggregator.Labels{sh.InternString(userMode)}, ts.User)
		sh.SetTotalFloat(ProcessCPU, p.t, aggregator.Labels{sh.InternString(systemMode)}, ts.System)
	}
	if mi, err := p.ps.MemoryInfo(); err == nil {
		sh.Set(ProcessRSS, p.t, aggregator.Labels{}, float64(mi.RSS))
		sh.Set(ProcessVirtual, p.t, aggregator.Labels{}, float64(mi.VMS))
	}
	if n, err := p.ps.NumThreads(); err == nil {
		sh.Set(ProcessThreads, p.t, aggregator.Labels{}, float64(n))
	}
	if n, err := p.ps.NumFDs(); err == nil {
		sh.Set(ProcessFDs, p.t, aggregator.Labels{}, float64(n))
	}
	if ms, err := p.ps.CreateTime(); err == nil {
		sh.Set(ProcessUptime, p.t, aggregator.Labels{}, max(0, float64(now.UnixMilli()-ms)/1e3))
	}
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
