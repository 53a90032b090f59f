package aggregator

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is what a metric's series hold.
type Kind uint8

const (
	// Histogram series count observations into fixed buckets.
	Histogram Kind = iota
	// Counter series add up increments (or hold a total read from the
	// program, see Shard.SetTotal).
	Counter
	// Gauge series hold the last value set.
	Gauge
)

// MaxLabels is the most labels a metric may have besides the target's own.
const MaxLabels = 6

// DurationBuckets are the OpenTelemetry HTTP duration advice, in seconds.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// Metric describes one metric about observed programs. Register it before
// events for it arrive.
type Metric struct {
	// Name as Prometheus shows it, e.g. "http_server_request_duration_seconds".
	Name string
	// OTelName is the OpenTelemetry instrument name, e.g. "http.server.request.duration".
	OTelName string
	// Help is the one-line description.
	Help string
	// Unit in UCUM, as OpenTelemetry wants it ("s", "By", "{request}").
	Unit string
	// Kind of series.
	Kind Kind
	// Labels are the metric's own label names, in the order Observe gets them.
	Labels []string
	// Buckets are the histogram's upper bounds (Histogram only).
	Buckets []float64
	// Limit bounds the number of series of this metric; 0 takes the
	// aggregator's default.
	Limit int
	// PerInstance metrics describe one process (its goroutines, its
	// memory): they carry service_instance_id and are never summed over the
	// replicas of a service.
	PerInstance bool

	id int
}

// Value is an interned label value. The zero Value is the empty string.
type Value uint32

// overflowValue marks the labels of a metric's overflow series.
const overflowValue Value = 1

// Labels are a series' label values, in the order of Metric.Labels.
type Labels [MaxLabels]Value

// TargetID names one observed process for its whole life (PIDs are reused).
type TargetID uint32

// Target is what the aggregator knows about an observed process.
type Target struct {
	ID        TargetID
	PID       int
	Service   string
	Namespace string
	Exe       string
	GoVersion string
	// Start is when the process started; Exited is zero while it runs.
	Start, Exited time.Time
}

// Options tune an Aggregator. The zero value of a field takes its default.
type Options struct {
	// Shards is the number of shards, one per ring buffer (default 1).
	Shards int
	// SeriesLimit bounds the series of each metric (default 2000).
	SeriesLimit int
	// RouteLimit bounds the distinct http_route values per service (default 200).
	RouteLimit int
	// Templates are user route templates tried before path folding.
	Templates *Templates
	// Grace is how long an exited program's series stay (default 5 minutes).
	Grace time.Duration
}

// Aggregator holds the shards and what they share on their slow paths.
type Aggregator struct {
	opts    Options
	metrics []*Metric
	shards  []*Shard
	extra   []*Shard // samplers' shards, guarded by mu

	strMu sync.RWMutex
	strID map[string]Value
	strs  []string

	mu        sync.Mutex // admission, routes, targets
	admitted  map[seriesKey]struct{}
	perMetric map[int]int
	rejected  map[seriesKey]struct{}
	routes    map[string]map[string]Value // service → route → value
	targets   map[TargetID]*Target
	nextID    TargetID

	overflow []atomic.Uint64 // per metric id
}

type seriesKey struct {
	metric int
	target TargetID
	labels Labels
}

// New returns an Aggregator for the given metrics.
func New(metrics []*Metric, opts Options) *Aggregator {
	if opts.Shards <= 0 {
		opts.Shards = 1
	}
	if opts.SeriesLimit <= 0 {
		opts.SeriesLimit = 2000
	}
	if opts.RouteLimit <= 0 {
		opts.RouteLimit = 200
	}
	if opts.Grace <= 0 {
		opts.Grace = 5 * time.Minute
	}
	a := &Aggregator{
		opts:      opts,
		metrics:   metrics,
		strID:     map[string]Value{"": 0, "\x00overflow": overflowValue},
		strs:      []string{"", "\x00overflow"},
		admitted:  map[seriesKey]struct{}{},
		perMetric: map[int]int{},
		rejected:  map[seriesKey]struct{}{},
		routes:    map[string]map[string]Value{},
		targets:   map[TargetID]*Target{},
		overflow:  make([]atomic.Uint64, len(metrics)),
	}
	for i, m := range metrics {
		m.id = i
		if m.Limit <= 0 {
			m.Limit = opts.SeriesLimit
		}
	}
	for i := 0; i < opts.Shards; i++ {
		a.shards = append(a.shards, newShard(a))
	}
	return a
}

// NewShard adds a shard for a writer that is not a ring reader, such as a
// sampler that reads program state on a timer. Each writer owns its shard.
func (a *Aggregator) NewShard() *Shard {
	s := newShard(a)
	a.mu.Lock()
	a.extra = append(a.extra, s)
	a.mu.Unlock()
	return s
}

func (a *Aggregator) allShards() []*Shard {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append(append([]*Shard{}, a.shards...), a.extra...)
}

// Shard returns shard i; each is to be written by one goroutine.
func (a *Aggregator) Shard(i int) *Shard { return a.shards[i] }

// Shards returns how many shards there are.
func (a *Aggregator) Shards() int { return len(a.shards) }

// Metrics returns the registered metrics.
func (a *Aggregator) Metrics() []*Metric { return a.metrics }

// Intern returns the Value of s, adding it on first sight.
func (a *Aggregator) Intern(s string) Value {
	a.strMu.RLock()
	v, ok := a.strID[s]
	a.strMu.RUnlock()
	if ok {
		return v
	}
	a.strMu.Lock()
	defer a.strMu.Unlock()
	if v, ok := a.strID[s]; ok {
		return v
	}
	v = Value(len(a.strs))
	a.strs = append(a.strs, s)
	a.strID[s] = v
	return v
}

func (a *Aggregator) str(v Value) string {
	a.strMu.RLock()
	defer a.strMu.RUnlock()
	if int(v) < len(a.strs) {
		return a.strs[v]
	}
	return ""
}

// AddTarget registers a process and returns its ID.
func (a *Aggregator) AddTarget(t Target) TargetID {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.nextID++
	t.ID = a.nextID
	a.targets[t.ID] = &t
	return t.ID
}

// TargetExited marks a process gone; its series stay for the grace period.
func (a *Aggregator) TargetExited(id TargetID, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t := a.targets[id]; t != nil && t.Exited.IsZero() {
		t.Exited = at
	}
}

// Expire drops the series of processes that exited more than the grace
// period before now.
func (a *Aggregator) Expire(now time.Time) {
	a.mu.Lock()
	var gone []TargetID
	for id, t := range a.targets {
		if !t.Exited.IsZero() && now.Sub(t.Exited) >= a.opts.Grace {
			gone = append(gone, id)
			delete(a.targets, id)
		}
	}
	if len(gone) == 0 {
		a.mu.Unlock()
		return
	}
	isGone := make(map[TargetID]bool, len(gone))
	for _, id := range gone {
		isGone[id] = true
	}
	for k := range a.admitted {
		if isGone[k.target] {
			delete(a.admitted, k)
			a.perMetric[k.metric]--
		}
	}
	for k := range a.rejected {
		if isGone[k.target] {
			delete(a.rejected, k)
		}
	}
	live := map[string]bool{}
	for _, t := range a.targets {
		live[t.Service] = true
	}
	for svc := range a.routes {
		if !live[svc] {
			delete(a.routes, svc)
		}
	}
	a.mu.Unlock()
	for _, s := range a.allShards() {
		s.drop(isGone)
	}
}

// Targets returns the known processes, live and in their grace period.
func (a *Aggregator) Targets() []Target {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Target, 0, len(a.targets))
	for _, t := range a.targets {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (a *Aggregator) service(id TargetID) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t := a.targets[id]; t != nil {
		return t.Service
	}
	return ""
}

// admit decides whether a new series may exist. Series past the metric's
// bound are folded into its overflow series, and counted once each.
func (a *Aggregator) admit(k seriesKey) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.admitted[k]; ok {
		return true
	}
	if _, ok := a.targets[k.target]; !ok {
		// A late event of an expired target: keep it out of the books.
		return false
	}
	m := a.metrics[k.metric]
	if a.perMetric[k.metric] < m.Limit {
		a.admitted[k] = struct{}{}
		a.perMetric[k.metric]++
		return true
	}
	if _, seen := a.rejected[k]; !seen {
		if len(a.rejected) < 100000 {
			a.rejected[k] = struct{}{}
		}
		a.overflow[k.metric].Add(1)
	}
	return false
}

// forget releases an admitted series so that its slot counts against the
// metric's bound no more.
func (a *Aggregator) forget(k seriesKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.admitted[k]; ok {
		delete(a.admitted, k)
		a.perMetric[k.metric]--
	}
}

// routeValue bounds the routes of one service.
func (a *Aggregator) routeValue(svc, route string) Value {
	a.mu.Lock()
	set := a.routes[svc]
	if set == nil {
		set = map[string]Value{}
		a.routes[svc] = set
	}
	v, ok := set[route]
	full := len(set) >= a.opts.RouteLimit
	a.mu.Unlock()
	if ok {
		return v
	}
	if full {
		return a.Intern(RouteOverflow)
	}
	v = a.Intern(route)
	a.mu.Lock()
	set[route] = v
	a.mu.Unlock()
	return v
}

// Overflows returns, per metric name, how many label sets were folded into
// the overflow series.
func (a *Aggregator) Overflows() map[string]uint64 {
	out := map[string]uint64{}
	for i, m := range a.metrics {
		out[m.Name] = a.overflow[i].Load()
	}
	return out
}

// Point is one merged series.
type Point struct {
	Metric *Metric
	Target TargetID
	// Labels hold the values of Metric.Labels.
	Labels []string
	// Overflow marks the series that holds label sets past the bound.
	Overflow bool
	Count    uint64
	Sum      float64
	// Buckets are per-bucket (not cumulative) counts, one per upper bound
	// plus one for +Inf.
	Buckets []uint64
}

// Snapshot merges the shards.
func (a *Aggregator) Snapshot() []Point {
	merged := map[seriesKey]*Point{}
	for _, s := range a.allShards() {
		s.mu.Lock()
		for k, st := range s.series {
			p := merged[k]
			if p == nil {
				m := a.metrics[k.metric]
				p = &Point{Metric: m, Target: k.target}
				if m.Kind == Histogram {
					p.Buckets = make([]uint64, len(m.Buckets)+1)
				}
				merged[k] = p
			}
			p.Count += st.count
			if m := p.Metric; m.Kind == Gauge {
				p.Sum = st.sum // gauges of one program are set in one shard
			} else {
				p.Sum += st.sum
			}
			for i, b := range st.buckets {
				p.Buckets[i] += b
			}
		}
		s.mu.Unlock()
	}
	out := make([]Point, 0, len(merged))
	for k, p := range merged {
		n := len(p.Metric.Labels)
		p.Labels = make([]string, n)
		if k.labels[0] == overflowValue {
			p.Overflow = true
		} else {
			for i := 0; i < n; i++ {
				p.Labels[i] = a.str(k.labels[i])
			}
		}
		out = append(out, *p)
	}
	return out
}
