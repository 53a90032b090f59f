// Package goruntime samples the runtime state of observed Go programs on a
// timer: goroutines by start function (from runtime.allgs), GC cycles and
// pauses (runtime.memstats), heap goal, memory in use, GOGC (runtime.
// gcController), GOMAXPROCS, and the process's resources (gopsutil). It
// reads the programs' memory with process_vm_readv and never writes to it;
// no probe fires inside the program.
package goruntime

import (
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/symbols"
)

// Options tune a Sampler. The zero value of a field takes its default.
type Options struct {
	// Interval is how often every program is sampled (default 1 s).
	Interval time.Duration
	// TopFunctions is how many start functions get their own series;
	// the rest are folded into "other" (default 20).
	TopFunctions int
	// MaxTracked bounds, per program, the goroutines whose first-seen time
	// is kept for blindspot_go_goroutine_oldest_age_seconds (default 1 M, about
	// 40 MB at the bound); goroutines past it are counted but not aged.
	MaxTracked int
	// Logger receives one line per program whose runtime state cannot be
	// read (default: discard).
	Logger *slog.Logger
}

// OtherFunction labels the goroutines of the start functions past the top N.
const OtherFunction = "other"

// Sampler samples every attached program from one goroutine into its own
// aggregator shard.
type Sampler struct {
	opts  Options
	shard *aggregator.Shard

	mu     sync.Mutex
	procs  map[int]*proc
	names  map[*symbols.Binary]*startNames
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

// New returns a Sampler writing into a new shard of agg. Its goroutine runs
// while at least one program is attached.
func New(agg *aggregator.Aggregator, opts *Options) *Sampler {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.TopFunctions <= 0 {
		o.TopFunctions = 20
	}
	if o.MaxTracked <= 0 {
		o.MaxTracked = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sampler{opts: o, shard: agg.NewShard(), procs: map[int]*proc{}, names: map[*symbols.Binary]*startNames{}}
}

// Attach starts sampling the process pid running bin. It locates what it
// needs in bin at once; the program's memory is first read at the next
// tick (the runtime may not have started yet).
func (s *Sampler) Attach(pid int, bin *symbols.Binary, t aggregator.TargetID) error {
	p, err := newProc(pid, bin, t, s.opts)
	if err != nil && p == nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("sampler closed")
	}
	if old := s.procs[pid]; old != nil {
		s.release(old)
	}
	n := s.names[bin]
	if n == nil {
		n = p.names
		s.names[bin] = n
	}
	n.refs++
	p.names = n
	s.procs[pid] = p
	if s.stop == nil {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.run(s.stop, s.done)
	}
	return err
}

// Detach stops sampling pid. The last detach stops the goroutine.
func (s *Sampler) Detach(pid int) {
	s.mu.Lock()
	if p := s.procs[pid]; p != nil {
		s.release(p)
	}
	delete(s.procs, pid)
	var done chan struct{}
	if len(s.procs) == 0 && s.stop != nil {
		close(s.stop)
		done = s.done
		s.stop, s.done = nil, nil
	}
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// Close stops the sampler.
func (s *Sampler) Close() {
	s.mu.Lock()
	s.closed = true
	s.procs = map[int]*proc{}
	s.names = map[*symbols.Binary]*startNames{}
	stop, done := s.stop, s.done
	s.stop, s.done = nil, nil
	s.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// release drops p's reference to the start function names of its
// binary (s.mu held).
func (s *Sampler) release(p *proc) {
	n := s.names[p.bin]
	if n == nil || n != p.names {
		return
	}
	if n.refs--; n.refs <= 0 {
		delete(s.names, p.bin)
	}
}

// startNames knows, for one binary, which functions are the wrappers go
// statements with arguments compile to and which function each starts.
// It is worked out once per binary (symbols.GoWrappers), at the first
// goroutine whose start function must be named, and shared by every
// program running that binary.
type startNames struct {
	bin      *symbols.Binary
	refs     int // programs using it (Sampler.mu)
	once     sync.Once
	wrappers map[uint64]string // wrapper entry → callee name
}

// callee returns the function the wrapper at entry (link-time) starts.
func (n *startNames) callee(entry uint64, log *slog.Logger) (string, bool) {
	n.once.Do(func() {
		start := time.Now()
		var err error
		n.wrappers, err = n.bin.GoWrappers()
		if log == nil {
			return
		}
		log.Debug("go statement wrappers", "exe", n.bin.Path, "wrappers", len(n.wrappers), "took", time.Since(start), "err", err)
	})
	c, ok := n.wrappers[entry]
	return c, ok
}

func (s *Sampler) run(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	s.SampleOnce()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.SampleOnce()
	}
}

// SampleOnce samples every attached program now.
func (s *Sampler) SampleOnce() {
	s.mu.Lock()
	procs := make([]*proc, 0, len(s.procs))
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	sort.Slice(procs, func(i, j int) bool { return procs[i].pid < procs[j].pid })
	now := time.Now()
	for _, p := range procs {
		p.sample(s.shard, now)
	}
}

// Stats are one program's sampling costs and state, for benchmarks and
// status pages.
type Stats struct {
	// Goroutines read in the last sample (live or not), and how long the
	// goroutine part of that sample took.
	GoroutinesRead int
	GoroutineTime  time.Duration
	// GoroutinesRefused counts the samples whose goroutines were not
	// counted (too many, or more than the program's memory holds).
	GoroutinesRefused uint64
	// Tracked is how many goroutines have a first-seen time.
	Tracked int
	// Errors say which parts cannot be read ("" when they can).
	GoroutineError, GCError string
}

// Stats returns the sampling state of pid.
func (s *Sampler) Stats(pid int) (Stats, bool) {
	s.mu.Lock()
	p := s.procs[pid]
	s.mu.Unlock()
	if p == nil {
		return Stats{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stats
	st.Tracked = len(p.firstSeen)
	if p.gErr != nil {
		st.GoroutineError = p.gErr.Error()
	}
	if p.gcErr != nil {
		st.GCError = p.gcErr.Error()
	}
	return st, true
}

// errNotStarted says the program's runtime has not initialised yet.
var errNotStarted = errors.New("runtime not started yet")
