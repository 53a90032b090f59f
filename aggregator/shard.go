package aggregator

import (
	"strconv"
	"sync"
)

// pathCacheLimit bounds each target's raw-path cache in a shard; past it the
// cache starts over (templating a path again is correct, only slower).
const pathCacheLimit = 4096

// Shard is the part of the aggregation fed by one ring buffer. Its methods
// are for the single goroutine that owns it; Snapshot reads it under its
// own mutex, which no other shard shares.
type Shard struct {
	agg *Aggregator

	mu     sync.Mutex
	held   bool // mu is held for a batch of events (Hold); owner only
	series map[seriesKey]*series
	folded map[seriesKey]*series // label sets past the bound → their overflow series

	// memo maps the label-bearing bytes of events decoded before to their
	// series (ObserveMemo), under mu; gen counts the removals of series
	// from this shard, which make memoised series stale.
	memo map[string]*memoEntry
	gen  uint64

	// Caches of the slow paths, touched only by the owning goroutine.
	values   map[string]Value
	statuses [600]Value
	routes   map[TargetID]*routeCache
	services map[TargetID]string
}

// memoLimit bounds each shard's memo; past it the memo starts over.
const memoLimit = 8192

// memoEntry is one memoised label set and the series it resolved to at
// generation gen.
type memoEntry struct {
	m   *Metric
	t   TargetID
	l   Labels
	st  *series
	gen uint64
}

type routeCache struct {
	paths    map[string]Value
	patterns map[string]Value
	routers  [routeSyntaxes]map[string]Value // by RouteSyntax
}

type series struct {
	count   uint64
	sum     float64
	buckets []uint64
	exp     expHist // histograms only
}

func newShard(a *Aggregator) *Shard {
	return &Shard{
		agg:      a,
		series:   map[seriesKey]*series{},
		folded:   map[seriesKey]*series{},
		memo:     map[string]*memoEntry{},
		values:   map[string]Value{},
		routes:   map[TargetID]*routeCache{},
		services: map[TargetID]string{},
	}
}

// Hold takes the shard's lock for a batch of events: the owning
// goroutine's methods then take it no more until Release, which it must
// call before it waits for anything (Snapshot waits for it meanwhile).
func (s *Shard) Hold() {
	s.mu.Lock()
	s.held = true
}

// Release ends a batch begun by Hold.
func (s *Shard) Release() {
	s.held = false
	s.mu.Unlock()
}

// lock and unlock take the shard's lock for one event, unless a batch
// holds it already.
func (s *Shard) lock() {
	if !s.held {
		s.mu.Lock()
	}
}

func (s *Shard) unlock() {
	if !s.held {
		s.mu.Unlock()
	}
}

// Intern returns the Value of b without allocating once b has been seen.
func (s *Shard) Intern(b []byte) Value {
	if v, ok := s.values[string(b)]; ok {
		return v
	}
	str := string(b)
	v := s.agg.Intern(str)
	if len(s.values) < 1<<16 {
		s.values[str] = v
	}
	return v
}

// InternString is Intern for a string.
func (s *Shard) InternString(str string) Value {
	if v, ok := s.values[str]; ok {
		return v
	}
	v := s.agg.Intern(str)
	if len(s.values) < 1<<16 {
		s.values[str] = v
	}
	return v
}

// Status returns the Value of an HTTP status code ("" for 0).
func (s *Shard) Status(code uint16) Value {
	if code == 0 {
		return 0
	}
	if int(code) < len(s.statuses) {
		if v := s.statuses[code]; v != 0 {
			return v
		}
		v := s.agg.Intern(strconv.Itoa(int(code)))
		s.statuses[code] = v
		return v
	}
	return s.agg.Intern(strconv.Itoa(int(code)))
}

// Route returns the http_route of a request: the ServeMux pattern when the
// program has one, else a configured template, else the path with
// identifiers folded; bounded per service.
func (s *Shard) Route(t TargetID, path, pattern []byte) Value {
	s.lock()
	defer s.unlock()
	rc := s.routes[t]
	if rc == nil {
		rc = &routeCache{paths: map[string]Value{}, patterns: map[string]Value{}}
		s.routes[t] = rc
	}
	if len(pattern) > 0 {
		if v, ok := rc.patterns[string(pattern)]; ok {
			return v
		}
		p := string(pattern)
		v := s.agg.routeValue(s.service(t), PatternRoute(p))
		if len(rc.patterns) < pathCacheLimit {
			rc.patterns[p] = v
		}
		return v
	}
	if v, ok := rc.paths[string(path)]; ok {
		return v
	}
	p := string(path)
	route, ok := s.agg.opts.Templates.Match(p)
	if !ok {
		route = TemplatePath(p)
	}
	v := s.agg.routeValue(s.service(t), route)
	if len(rc.paths) >= pathCacheLimit {
		rc.paths = map[string]Value{}
	}
	rc.paths[p] = v
	return v
}

// RouterRoute returns the http_route value of a route template a router
// matched, written in that router's syntax (see RouterRoute).
func (s *Shard) RouterRoute(t TargetID, syntax RouteSyntax, template []byte) Value {
	if syntax <= 0 || syntax >= routeSyntaxes {
		return s.Route(t, template, nil) // unknown syntax: today's route from the text
	}
	s.lock()
	defer s.unlock()
	rc := s.routes[t]
	if rc == nil {
		rc = &routeCache{paths: map[string]Value{}, patterns: map[string]Value{}}
		s.routes[t] = rc
	}
	m := rc.routers[syntax]
	if m == nil {
		m = map[string]Value{}
		rc.routers[syntax] = m
	}
	if v, ok := m[string(template)]; ok {
		return v
	}
	p := string(template)
	v := s.agg.routeValue(s.service(t), RouterRoute(syntax, p))
	if len(m) < pathCacheLimit {
		m[p] = v
	}
	return v
}

func (s *Shard) service(t TargetID) string {
	if svc, ok := s.services[t]; ok {
		return svc
	}
	svc := s.agg.service(t)
	s.services[t] = svc
	return svc
}

// Observe adds one observation v to a histogram series.
func (s *Shard) Observe(m *Metric, t TargetID, l Labels, v float64) {
	s.lock()
	if st := s.lookup(m, t, l); st != nil {
		st.observe(m, v)
	}
	s.unlock()
}

// A decoder that memoises skips its checks and label lookups for an event
// whose label-bearing bytes it has decoded before: it keys the event by
// exactly the bytes its labels are made of (its kind and the target's ID
// among them), tries ObserveMemo, and on a miss decodes in full and calls
// ObserveAndMemo. Only events decoded in full as valid are memoised, so a
// hit stands for the same verdict and labels; what is not in the key (the
// duration) is checked on every event.

// ObserveMemo adds one observation v to the histogram series memoised
// under key for target t, and reports whether there was one.
func (s *Shard) ObserveMemo(key []byte, t TargetID, v float64) bool {
	s.lock()
	e, ok := s.memo[string(key)]
	if !ok || e.t != t {
		s.unlock()
		return false
	}
	if e.gen != s.gen {
		// Series were removed since: find the series again (a removed
		// metric or a gone target finds none).
		e.st, e.gen = s.lookup(e.m, e.t, e.l), s.gen
	}
	if e.st != nil {
		e.st.observe(e.m, v)
	}
	s.unlock()
	return true
}

// ObserveAndMemo is Observe, memoising the series under key for
// ObserveMemo.
func (s *Shard) ObserveAndMemo(key []byte, m *Metric, t TargetID, l Labels, v float64) {
	s.lock()
	st := s.lookup(m, t, l)
	if st != nil {
		st.observe(m, v)
	}
	if len(s.memo) >= memoLimit {
		clear(s.memo)
	}
	s.memo[string(key)] = &memoEntry{m: m, t: t, l: l, st: st, gen: s.gen}
	s.unlock()
}

func (st *series) observe(m *Metric, v float64) {
	st.count++
	st.sum += v
	st.buckets[bucketIndex(m.Buckets, v)]++
	st.exp.observe(v)
}

// bucketIndex is the first bound >= v (buckets are "le"), len(bounds) for
// +Inf, as sort.SearchFloat64s finds it (NaN included): the bounds below
// v, counted without a branch to mispredict.
func bucketIndex(bounds []float64, v float64) int {
	i := 0
	for _, b := range bounds {
		if !(b >= v) {
			i++
		}
	}
	return i
}

// Add adds n to a counter series.
func (s *Shard) Add(m *Metric, t TargetID, l Labels, n uint64) {
	s.lock()
	if st := s.lookup(m, t, l); st != nil {
		st.count += n
		st.sum += float64(n)
	}
	s.unlock()
}

// Set sets a gauge series to v.
func (s *Shard) Set(m *Metric, t TargetID, l Labels, v float64) {
	s.lock()
	if st := s.lookup(m, t, l); st != nil {
		st.count = 1
		st.sum = v
	}
	s.unlock()
}

// SetTotal sets a counter series to a total read from the program (such as
// its GC cycle count). Totals never go backwards: a smaller reading is
// ignored.
func (s *Shard) SetTotal(m *Metric, t TargetID, l Labels, total uint64) {
	s.lock()
	if st := s.lookup(m, t, l); st != nil && total > st.count {
		st.count = total
		st.sum = float64(total)
	}
	s.unlock()
}

// SetTotalFloat is SetTotal for totals that are not whole numbers, such as
// CPU seconds.
func (s *Shard) SetTotalFloat(m *Metric, t TargetID, l Labels, total float64) {
	s.lock()
	if st := s.lookup(m, t, l); st != nil && total > st.sum {
		st.sum = total
		st.count = uint64(total)
	}
	s.unlock()
}

// DeleteSeries removes this shard's series of metric m for target t, for
// gauges whose label sets come and go (the top N goroutine start functions).
func (s *Shard) DeleteSeries(m *Metric, t TargetID) {
	s.lock()
	for k := range s.series {
		if k.metric == m.id && k.target == t {
			delete(s.series, k)
			s.agg.forget(k)
			s.gen++
		}
	}
	s.unlock()
}

// lookup returns the series for a label set, creating it (or falling back to
// the overflow series) on first sight. nil means the target is unknown.
func (s *Shard) lookup(m *Metric, t TargetID, l Labels) *series {
	if m.removed.Load() {
		return nil
	}
	k := seriesKey{metric: m.id, target: t, labels: l}
	if st, ok := s.series[k]; ok {
		return st
	}
	if st, ok := s.folded[k]; ok {
		return st
	}
	if s.agg.admit(k) {
		st := newSeries(m)
		s.series[k] = st
		return st
	}
	if s.agg.service(t) == "" {
		return nil
	}
	ok := seriesKey{metric: m.id, target: t, labels: Labels{overflowValue}}
	st := s.series[ok]
	if st == nil {
		st = newSeries(m)
		s.series[ok] = st
	}
	// Remember where this label set goes, within bounds, so that the
	// overflow path does not take the aggregator's lock per event.
	if len(s.folded) < 4*m.Limit {
		s.folded[k] = st
	}
	return st
}

func newSeries(m *Metric) *series {
	st := &series{}
	if m.Kind == Histogram {
		st.buckets = make([]uint64, len(m.Buckets)+1)
		st.exp = newExpHist()
	}
	return st
}

// drop forgets the series and caches of the given targets.
func (s *Shard) drop(gone map[TargetID]bool) {
	s.mu.Lock()
	for k := range s.series {
		if gone[k.target] {
			delete(s.series, k)
		}
	}
	for k := range s.folded {
		if gone[k.target] {
			delete(s.folded, k)
		}
	}
	for t := range gone {
		delete(s.routes, t)
		delete(s.services, t)
	}
	for k, e := range s.memo {
		if gone[e.t] {
			delete(s.memo, k)
		}
	}
	s.gen++
	s.mu.Unlock()
}
