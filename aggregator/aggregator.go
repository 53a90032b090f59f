package aggregator

import (
	"sort"
	"strings"
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
const MaxLabels = 7

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
	// UpDown marks a Gauge whose instrument the semantic conventions make
	// an UpDownCounter (go.goroutine.count, process.memory.usage, ...): a
	// value that adds up over its series. OTLP sends it as a
	// non-monotonic Sum, /metrics as a gauge.
	UpDown bool
	// Float marks a Counter whose total has a fraction (process.cpu.time,
	// set by Shard.SetTotalFloat): OTLP sends it as a double.
	Float bool

	id       int
	overflow atomic.Uint64 // label sets folded into the overflow series
	removed  atomic.Bool   // set by RemoveMetric: its events are dropped
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
	// Resource holds further OpenTelemetry resource attributes of the
	// process where known (k8s.pod.name, k8s.namespace.name, ...).
	Resource map[string]string
	// Labels are further labels every series of the process carries
	// (k8s_pod_name, ...): the processes of a service are summed only
	// with those whose labels are the same. Never changed in place:
	// SetPlacement replaces the map.
	Labels map[string]string
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
	opts Options
	// metricList is indexed by Metric.id; a removed metric leaves nil. It
	// is replaced whole (copy on write) under mu and read without a lock.
	metricList atomic.Pointer[[]*Metric]
	shards     []*Shard
	extra      []*Shard // samplers' shards, guarded by mu

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

	// retired holds the final counts of expired processes, per service,
	// while the service has other processes (see Retired).
	retired       map[retiredKey]*Point
	retiredMetric map[int]int
}

type retiredKey struct {
	metric int
	group  string // Target.Group
	labels Labels
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
		strID:     map[string]Value{"": 0, "\x00overflow": overflowValue},
		strs:      []string{"", "\x00overflow"},
		admitted:  map[seriesKey]struct{}{},
		perMetric: map[int]int{},
		rejected:  map[seriesKey]struct{}{},
		routes:    map[string]map[string]Value{},
		targets:   map[TargetID]*Target{},

		retired:       map[retiredKey]*Point{},
		retiredMetric: map[int]int{},
	}
	list := append([]*Metric(nil), metrics...)
	for i, m := range list {
		m.id = i
		if m.Limit <= 0 {
			m.Limit = opts.SeriesLimit
		}
	}
	a.metricList.Store(&list)
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

// Grace returns how long an exited process's series stay: Options.Grace,
// or its default.
func (a *Aggregator) Grace() time.Duration { return a.opts.Grace }

// Metrics returns the registered metrics (those added by AddMetric
// included, those removed by RemoveMetric not).
func (a *Aggregator) Metrics() []*Metric {
	all := a.metricsByID()
	out := make([]*Metric, 0, len(all))
	for _, m := range all {
		if m != nil {
			out = append(out, m)
		}
	}
	return out
}

func (a *Aggregator) metricsByID() []*Metric { return *a.metricList.Load() }

// AddMetric registers a metric after New (a business metric from a
// reloaded configuration). Its events may arrive as soon as it returns.
func (a *Aggregator) AddMetric(m *Metric) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.metricsByID()
	next := append(append(make([]*Metric, 0, len(old)+1), old...), m)
	m.id = len(old)
	if m.Limit <= 0 {
		m.Limit = a.opts.SeriesLimit
	}
	a.metricList.Store(&next)
}

// RemoveMetric unregisters a metric added by AddMetric and drops its
// series; its events still in flight are discarded.
func (a *Aggregator) RemoveMetric(m *Metric) {
	m.removed.Store(true)
	a.mu.Lock()
	old := a.metricsByID()
	if m.id >= len(old) || old[m.id] != m {
		a.mu.Unlock()
		return
	}
	next := append([]*Metric(nil), old...)
	next[m.id] = nil
	a.metricList.Store(&next)
	for k := range a.admitted {
		if k.metric == m.id {
			delete(a.admitted, k)
		}
	}
	for k := range a.rejected {
		if k.metric == m.id {
			delete(a.rejected, k)
		}
	}
	for k := range a.retired {
		if k.metric == m.id {
			delete(a.retired, k)
		}
	}
	delete(a.perMetric, m.id)
	delete(a.retiredMetric, m.id)
	a.mu.Unlock()
	for _, s := range a.allShards() {
		s.mu.Lock()
		for k := range s.series {
			if k.metric == m.id {
				delete(s.series, k)
			}
		}
		for k := range s.folded {
			if k.metric == m.id {
				delete(s.folded, k)
			}
		}
		s.gen++
		s.mu.Unlock()
	}
}

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

// Group names the series a process's points are summed into: its
// service, and its Labels.
func (t *Target) Group() string {
	var b strings.Builder
	b.WriteString(t.Service)
	b.WriteByte(0)
	b.WriteString(t.Namespace)
	keys := make([]string, 0, len(t.Labels))
	for k := range t.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteByte(0)
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(t.Labels[k])
	}
	return b.String()
}

// SetPlacement replaces what is known of where a running process runs
// (its Kubernetes pod, learnt after it started): its series labels and
// resource attributes.
func (a *Aggregator) SetPlacement(id TargetID, labels, resource map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t := a.targets[id]; t != nil {
		t.Labels, t.Resource = labels, resource
	}
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
// period before now. The counters and histograms of a dropped process are
// kept, folded per service, while other processes of its service live (see
// Retired). The agent calls Expire on its own clock; reading (Snapshot,
// Targets, Retired) never expires anything.
func (a *Aggregator) Expire(now time.Time) {
	a.mu.Lock()
	var gone []TargetID
	for id, t := range a.targets {
		if !t.Exited.IsZero() && now.Sub(t.Exited) >= a.opts.Grace {
			gone = append(gone, id)
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
	a.mu.Unlock()
	final := a.snapshot(isGone)
	a.mu.Lock()
	services := map[TargetID]*Target{}
	for _, id := range gone {
		services[id] = a.targets[id]
		delete(a.targets, id)
	}
	a.retire(final, services)
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
		live[t.Group()] = true
	}
	for svc := range a.routes {
		if !live[svc] {
			delete(a.routes, svc)
		}
	}
	for k := range a.retired {
		if !live[k.group] {
			delete(a.retired, k)
			a.retiredMetric[k.metric]--
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
	m := a.metricsByID()[k.metric]
	if m == nil || m.removed.Load() {
		return false
	}
	if a.perMetric[k.metric] < m.Limit {
		a.admitted[k] = struct{}{}
		a.perMetric[k.metric]++
		return true
	}
	if _, seen := a.rejected[k]; !seen {
		if len(a.rejected) < 100000 {
			a.rejected[k] = struct{}{}
		}
		m.overflow.Add(1)
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
	for _, m := range a.Metrics() {
		out[m.Name] = m.overflow.Load()
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
	// Exp is the same histogram in exponential buckets (Histogram only).
	Exp *ExpBuckets
	// Service, Namespace and TargetLabels name the service of a retired
	// point (Retired): Target's fields of the processes it sums.
	Service, Namespace string
	TargetLabels       map[string]string

	key Labels
}

// Snapshot merges the shards.
func (a *Aggregator) Snapshot() []Point { return a.snapshot(nil) }

// snapshot merges the shards' series of the targets in only (all if nil).
func (a *Aggregator) snapshot(only map[TargetID]bool) []Point {
	merged := map[seriesKey]*Point{}
	for _, s := range a.allShards() {
		s.mu.Lock()
		for k, st := range s.series {
			if only != nil && !only[k.target] {
				continue
			}
			p := merged[k]
			if p == nil {
				m := a.metricsByID()[k.metric]
				if m == nil {
					continue // removed while we merged
				}
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
			if p.Metric.Kind == Histogram {
				if p.Exp == nil {
					p.Exp = st.exp.snapshot()
				} else {
					e := expHistView(&st.exp)
					p.Exp.add(&e)
				}
			}
		}
		s.mu.Unlock()
	}
	out := make([]Point, 0, len(merged))
	for k, p := range merged {
		p.key = k.labels
		a.fillLabels(p, k.labels)
		out = append(out, *p)
	}
	return out
}

func (a *Aggregator) fillLabels(p *Point, l Labels) {
	n := len(p.Metric.Labels)
	p.Labels = make([]string, n)
	if l[0] == overflowValue {
		p.Overflow = true
	} else {
		for i := 0; i < n; i++ {
			p.Labels[i] = a.str(l[i])
		}
	}
}

func expHistView(h *expHist) ExpBuckets {
	return ExpBuckets{Scale: h.scale, Zero: h.zero, Offset: h.offset, Counts: h.counts}
}

// retire folds the final points of expired processes into their services'
// retired totals. Gauges and per-instance metrics describe one process and
// go with it. The retired series of a metric are bounded by its limit too:
// past it, they fold into the service's overflow series. Called with mu held.
func (a *Aggregator) retire(final []Point, targets map[TargetID]*Target) {
	for i := range final {
		p := &final[i]
		t := targets[p.Target]
		if t == nil || p.Metric.Kind == Gauge || p.Metric.PerInstance {
			continue
		}
		k := retiredKey{metric: p.Metric.id, group: t.Group(), labels: p.key}
		r := a.retired[k]
		if r == nil && a.retiredMetric[k.metric] >= p.Metric.Limit {
			k.labels = Labels{overflowValue}
			r = a.retired[k]
		}
		if r == nil {
			r = &Point{Metric: p.Metric, Service: t.Service, Namespace: t.Namespace, TargetLabels: t.Labels, key: k.labels}
			if p.Buckets != nil {
				r.Buckets = make([]uint64, len(p.Buckets))
			}
			a.retired[k] = r
			a.retiredMetric[k.metric]++
		}
		r.Count += p.Count
		r.Sum += p.Sum
		for j, b := range p.Buckets {
			r.Buckets[j] += b
		}
		if p.Exp != nil {
			r.Exp = MergeExp(r.Exp, p.Exp)
		}
	}
}

// Retired returns the final counters and histograms of the processes that
// expired while their service kept others running, summed per service and
// label set (Target is 0; Service and Namespace are set). Adding them to
// the live processes' series keeps a service's counters from going
// backwards when one of its replicas goes away. They are dropped when the
// service's last process expires.
func (a *Aggregator) Retired() []Point {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Point, 0, len(a.retired))
	for _, r := range a.retired {
		if r.Metric.removed.Load() {
			continue
		}
		p := *r
		p.Buckets = append([]uint64(nil), r.Buckets...)
		p.Exp = r.Exp.Clone()
		a.fillLabels(&p, r.key)
		out = append(out, p)
	}
	return out
}
