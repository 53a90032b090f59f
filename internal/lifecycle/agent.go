// Package lifecycle follows the Go programs on a host from discovery to
// expiry: it takes discovery events in (a process started or exited),
// picks the programs to observe (include/exclude rules), reads their
// binaries, attaches the probe families and the business functions that
// apply, names the service, detaches when a process exits, and expires the
// series of exited processes on its own clock. It also keeps the
// configured business functions in force across reloads (Functions), and
// tells the exporter what it is doing (Agent implements exporter.State).
//
// The probe manager, the discovery watcher and the binary cache are
// reached through small interfaces (Prober, Discovery, Binaries), so that
// tests drive the lifecycle without BPF.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/exporter"
	"github.com/blindspot-dev/blindspot/internal/container"
	"github.com/blindspot-dev/blindspot/internal/kube"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/discover"
	"github.com/blindspot-dev/blindspot/probes/userfunc"
	"github.com/blindspot-dev/blindspot/symbols"
)

// Supported Go releases.
const (
	minGoMinor = 19
	maxGoMinor = 27
)

// Prober attaches probes to processes and detaches them: Probes.
type Prober interface {
	// Attach attaches every family that applies to the process pid.
	Attach(pid int, exe string, bin *symbols.Binary, t aggregator.TargetID) (*probes.Attachment, error)
	// Detach releases the probes of one Attach.
	Detach(a *probes.Attachment)
	// AttachUser attaches the business functions that select the process.
	AttachUser(pid int, exePath, exe, service string, bin *symbols.Binary, t aggregator.TargetID) []probes.ProbeStatus
	// UserStatus returns how the business functions fare in the process.
	UserStatus(pid int) []probes.ProbeStatus
	// SetUserFuncs puts a set of business functions in force.
	SetUserFuncs(funcs []*userfunc.Func)
	// OnDetached sets the function told of every family the invalid-event
	// policy detaches.
	OnDetached(fn func(probes.Detached))
	// Forget drops what was derived from a binary closed for good.
	Forget(bin *symbols.Binary)
	// Stats returns the probes' self-metrics.
	Stats() probes.Stats
}

// Probes is the Prober the agent runs: the probe manager, and the
// business functions' family (probes/userfunc) handed to it.
type Probes struct {
	*probes.Manager
	*userfunc.Probes
}

var _ Prober = Probes{}

// Discovery reports processes starting and exiting: *discover.Watcher.
type Discovery interface {
	// Run sends batches of events to out until ctx ends.
	Run(ctx context.Context, out chan<- []discover.Event)
	// Close releases what the watcher holds.
	Close()
}

var _ Discovery = (*discover.Watcher)(nil)

// Binaries keeps the parsed executables of the observed processes:
// *discover.Binaries.
type Binaries interface {
	// Acquire returns the parsed executable of p; the error wraps
	// symbols.ErrNotGo for programs that are not Go. Each successful
	// Acquire is paired with a Release.
	Acquire(p discover.Process) (*symbols.Binary, error)
	// Release drops one reference.
	Release(key discover.FileKey) bool
	// Expire closes the released binaries whose time is up.
	Expire(now time.Time)
}

var _ Binaries = (*discover.Binaries)(nil)

// Options configure an Agent. A nil *Options is the zero Options.
type Options struct {
	// Selection picks and names the programs to observe; the zero
	// Selection observes every Go program.
	Selection Selection
	// Logger receives the agent's log; nil discards it.
	Logger *slog.Logger
	// Binaries reads executables; nil means discover.NewBinaries, which
	// tells the Prober of every binary it closes (Forget).
	Binaries Binaries
	// Alive reports whether a process still runs; nil means
	// discover.Alive.
	Alive func(discover.Process) bool
	// Environ reads variables from a process's environment; nil means
	// discover.Environ.
	Environ func(pid int, names ...string) map[string]string
	// Placement finds the Kubernetes pod of a process; nil outside
	// Kubernetes, where nothing of the kind is attempted.
	Placement Placement
	// Container reads the container of a process; nil means
	// container.ForProcess on /proc.
	Container func(pid int) (container.Info, error)
	// OwnPages hands the agent's own executable pages back to the kernel
	// after a burst of work (start-up, programs attached); nil keeps
	// them.
	OwnPages OwnPages
}

// OwnPages is the agent's own executable (selfmem.Executable).
type OwnPages interface {
	PageOut() (before, after int64, err error)
	PageOutIfGrown(threshold int64) (paged bool, before, after int64, err error)
}

// After a burst of work (start-up, programs attached) has been quiet for
// ownPagesSettle, the executable pages it touched go back to the kernel;
// so do pages that grew by ownPagesGrowth between two quiet closeBins
// ticks.
var ownPagesSettle = 5 * time.Second // a variable for tests

const ownPagesGrowth = 1 << 20

// Agent connects discovery, probes and the aggregator, and tells the
// exporter what it is doing.
type Agent struct {
	sel       Selection
	log       *slog.Logger
	agg       *aggregator.Aggregator
	probes    Prober
	bins      Binaries
	alive     func(discover.Process) bool
	environ   func(pid int, names ...string) map[string]string
	place     Placement
	container func(pid int) (container.Info, error)
	ownPages  OwnPages

	mu       sync.Mutex
	targets  map[int]*target
	skipped  map[int]exporter.Skipped
	errCount map[exporter.ErrorKey]uint64
	// released counts the processes detached since the last closeBins
	// tick, read is symbols.BytesRead at that tick (Run's goroutine only).
	released int
	read     uint64
	// attached counts the programs instrumented since the last settle
	// (Run's goroutine only).
	attached    int
	settledOnce bool
	// awaitingPod holds the processes the selection turned down while
	// their pod was not known (by PID): placementChanged looks again.
	awaitingPod map[int]discover.Process
}

var _ exporter.State = (*Agent)(nil)

type target struct {
	proc discover.Process
	bin  *symbols.Binary
	id   aggregator.TargetID
	att  *probes.Attachment
	// where the process runs, as its series labels say.
	where where
	// attrs are the process's own OTEL_RESOURCE_ATTRIBUTES.
	attrs map[string]string
	// status is what /targets shows, but for Probes: Targets fills them
	// in from statuses.
	status exporter.Target
	// statuses are how each family (att.Probes, updated when the
	// invalid-event policy detaches one) and each business function fared.
	statuses []probes.ProbeStatus
}

// New returns an Agent that registers the processes it observes in agg
// and attaches probes to them through p.
func New(agg *aggregator.Aggregator, p Prober, opts *Options) *Agent {
	if opts == nil {
		opts = &Options{}
	}
	a := &Agent{
		sel:         opts.Selection,
		log:         opts.Logger,
		agg:         agg,
		probes:      p,
		bins:        opts.Binaries,
		alive:       opts.Alive,
		environ:     opts.Environ,
		place:       opts.Placement,
		container:   opts.Container,
		ownPages:    opts.OwnPages,
		awaitingPod: map[int]discover.Process{},
		targets:     map[int]*target{},
		skipped:     map[int]exporter.Skipped{},
		errCount:    map[exporter.ErrorKey]uint64{},
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.bins == nil {
		a.bins = discover.NewBinaries(p.Forget)
	}
	if a.alive == nil {
		a.alive = discover.Alive
	}
	if a.environ == nil {
		a.environ = discover.Environ
	}
	if a.container == nil {
		a.container = func(pid int) (container.Info, error) { return container.ForProcess("/proc", pid) }
	}
	p.OnDetached(a.familyDetached)
	return a
}

// Run follows the processes d reports until ctx ends, then detaches
// everything and closes d.
func (a *Agent) Run(ctx context.Context, d Discovery) {
	defer d.Close()
	events := make(chan []discover.Event, 16)
	go d.Run(ctx, events)
	// Series expire on this clock only: reading /metrics or exporting
	// OTLP changes nothing.
	expire := time.NewTicker(expiryInterval(a.agg.Grace()))
	defer expire.Stop()
	closeBins := time.NewTicker(10 * time.Second)
	defer closeBins.Stop()
	settled := time.NewTimer(ownPagesSettle)
	defer settled.Stop()
	var podsChanged <-chan struct{} // nil outside Kubernetes: never ready
	if a.place != nil {
		podsChanged = a.place.Changed()
	}
	for {
		select {
		case <-ctx.Done():
			a.detachAll()
			return
		case evs := <-events:
			parsed, attached := a.binariesRead(), a.attached
			for _, ev := range evs {
				switch ev.Kind {
				case discover.Started:
					a.started(ev.Process)
				case discover.Exited:
					a.exited(ev.Process)
				}
			}
			if a.binariesRead() > parsed || a.attached > attached {
				// Programs were attached: settle once the burst is over
				// (other programs starting, which a host does all the
				// time, do not count).
				settled.Reset(ownPagesSettle)
			}
			if a.binariesRead() > parsed {
				// Reading a binary leaves several times what it keeps as
				// garbage (decompressed DWARF, section copies): give it
				// back now rather than hold it as heap headroom. A few ms,
				// against the tens a new binary took to read.
				debug.FreeOSMemory()
			}
		case now := <-expire.C:
			a.agg.Expire(now)
		case <-settled.C:
			a.settle(true)
		case now := <-closeBins.C:
			a.bins.Expire(now)
			if symbols.BytesRead() == a.read {
				a.settle(false) // nothing read since the last tick: quiet
			}
			if read := symbols.BytesRead(); a.released > 0 || read != a.read {
				// Programs went since the last tick: what their probes,
				// statuses and reads held is garbage now. Give it back
				// rather than keep it as heap headroom, so that a node's
				// churn does not ratchet the agent's RSS up; at most once
				// per tick, a few ms. Likewise after binaries were read
				// (parsed, or read again after attach, as the runtime
				// sampler does for go-statement wrappers): what the reads
				// left is garbage by then, and the heap's headroom would
				// otherwise keep it resident.
				a.released, a.read = 0, read
				debug.FreeOSMemory()
			}
		case <-podsChanged:
			a.placementChanged()
		}
	}
}

// settle lets go what a burst of attaches left behind once it is over:
// the function tables of the observed executables (built again from the
// file if asked for: a new kind of goroutine for the runtime sampler, a
// new database pool, business functions reconfigured) and the pages of
// the agent's own executable the burst touched. burst says the agent has
// been quiet for ownPagesSettle after programs started: the pages go back
// at start-up and when programs were attached since the last time, else
// (and at quiet ticks) only when they grew by ownPagesGrowth.
func (a *Agent) settle(burst bool) {
	released := false
	a.mu.Lock()
	for _, t := range a.targets {
		released = t.bin.ReleaseFuncs() || released
	}
	a.mu.Unlock()
	if released {
		debug.FreeOSMemory() // the tables, rather than heap headroom
	}
	a.pageOut(burst && (a.attached > 0 || !a.settledOnce))
	a.attached, a.settledOnce = 0, true
}

// pageOut hands the agent's executable pages back to the kernel,
// unconditionally or when they grew (selfmem).
func (a *Agent) pageOut(always bool) {
	if a.ownPages == nil {
		return
	}
	var paged bool
	var before, after int64
	var err error
	if always {
		before, after, err = a.ownPages.PageOut()
		paged = err == nil
	} else {
		paged, before, after, err = a.ownPages.PageOutIfGrown(ownPagesGrowth)
	}
	switch {
	case err != nil:
		a.log.Warn("own executable pages kept resident", "err", err)
		a.ownPages = nil
	case paged:
		a.log.Debug("own executable pages handed back", "resident_before", before, "resident_after", after)
	}
}

// binariesRead is how many binaries the cache holds parsed (0 when it does
// not say).
func (a *Agent) binariesRead() int {
	if l, ok := a.bins.(interface{ Len() int }); ok {
		return l.Len()
	}
	return 0
}

// expiryInterval is how often the agent drops the series of processes past
// their grace period: a tenth of it, at most 5s (and at least 100ms), so
// that no series outlives its grace period by much.
func expiryInterval(grace time.Duration) time.Duration {
	return min(max(grace/10, 100*time.Millisecond), 5*time.Second)
}

func (a *Agent) started(p discover.Process) {
	// The filter comes first: reading a binary is the dearest step, and a
	// busy host starts many programs nobody asked to observe.
	w := a.locate(p)
	svc, ns, attrs := a.serviceName(p, w)
	if !a.sel.Wanted(w.subject(p.Exe, svc)) {
		if w.maybePod() && a.sel.usesKubernetes() {
			a.mu.Lock()
			a.awaitingPod[p.PID] = p
			a.mu.Unlock()
		}
		return
	}
	bin, err := a.bins.Acquire(p)
	if err != nil {
		if !errors.Is(err, symbols.ErrNotGo) && !errors.Is(err, fs.ErrNotExist) {
			a.skip(p, "unreadable_binary", err.Error())
		}
		return
	}
	release := true
	defer func() {
		if release {
			a.bins.Release(p.File)
		}
	}()
	if major, minor, ok := bin.Version(); !ok || major != 1 || minor < minGoMinor || minor > maxGoMinor {
		a.skip(p, "unsupported_go_version", fmt.Sprintf("unsupported Go version %s: blindspot supports Go 1.%d through 1.%d", bin.GoVersion, minGoMinor, maxGoMinor))
		return
	}
	id := a.agg.AddTarget(aggregator.Target{
		PID: p.PID, Service: svc, Namespace: ns, Exe: p.Exe, GoVersion: bin.GoVersion, Start: time.Now(),
		Labels: w.labels(), Resource: w.resource(attrs),
	})
	att, err := a.probes.Attach(p.PID, p.ExePath, bin, id)
	if err != nil && !errors.Is(err, probes.ErrNoFamily) {
		a.agg.TargetExited(id, time.Now())
		if errors.Is(err, fs.ErrNotExist) {
			return // it exited while we looked
		}
		a.skip(p, "attach_failed", err.Error())
		return
	}
	for _, ps := range att.Probes {
		if ps.Error == "" {
			continue
		}
		if !a.alive(p) {
			// It exited while we attached: nothing failed.
			a.probes.Detach(att)
			a.agg.TargetExited(id, time.Now())
			return
		}
		a.countError(ps.Family, "attach_failed")
		a.log.Warn("probe family not attached", "pid", p.PID, "exe", p.Exe, "probe", ps.Family, "err", ps.Error)
	}
	release = false
	user := a.attachUser(p, svc, bin, id)
	// What attaching needed from the DWARF and the type data is cached in
	// bin; their decompressed sections and copies would stay for as long
	// as the program runs.
	bin.ReleaseDWARF()
	bin.ReleaseTypeData()
	a.mu.Lock()
	// A family the invalid-event policy detached since Attach returned
	// (familyDetached found no target then) shows in Status.
	att.Probes = att.Status()
	t := &target{proc: p, bin: bin, id: id, att: att, where: w, attrs: attrs, status: exporter.Target{
		PID: p.PID, ServiceName: svc, Exe: p.Exe, GoVersion: bin.GoVersion, Attached: time.Now(),
		Kubernetes: w.labels(),
	}, statuses: append(append([]probes.ProbeStatus(nil), att.Probes...), user...)}
	a.targets[p.PID] = t
	a.attached++
	delete(a.skipped, p.PID)
	a.mu.Unlock()
	a.log.Info("instrumented", "pid", p.PID, "service", svc, "exe", p.Exe, "go", bin.GoVersion, "probes", len(att.Probes))
}

func (a *Agent) exited(p discover.Process) {
	a.mu.Lock()
	t := a.targets[p.PID]
	if t != nil && t.proc.StartTicks == p.StartTicks {
		delete(a.targets, p.PID)
	} else {
		t = nil
	}
	delete(a.skipped, p.PID)
	delete(a.awaitingPod, p.PID)
	a.mu.Unlock()
	if t == nil {
		return
	}
	a.release(t)
	a.released++
	a.log.Info("released", "pid", p.PID, "exe", p.Exe)
}

func (a *Agent) release(t *target) {
	a.probes.Detach(t.att)
	a.agg.TargetExited(t.id, time.Now())
	a.bins.Release(t.proc.File)
}

func (a *Agent) detachAll() {
	a.mu.Lock()
	ts := make([]*target, 0, len(a.targets))
	for pid, t := range a.targets {
		ts = append(ts, t)
		delete(a.targets, pid)
	}
	a.mu.Unlock()
	// Concurrently: each detach waits for kernel grace periods.
	var wg sync.WaitGroup
	for _, t := range ts {
		wg.Add(1)
		go func(t *target) {
			defer wg.Done()
			a.release(t)
		}(t)
	}
	wg.Wait()
}

func (a *Agent) skip(p discover.Process, reason, msg string) {
	a.log.Warn("not instrumented", "pid", p.PID, "exe", p.Exe, "reason", msg)
	a.countError("process", reason)
	a.mu.Lock()
	a.skipped[p.PID] = exporter.Skipped{PID: p.PID, Exe: p.Exe, Reason: msg}
	a.mu.Unlock()
}

// familyDetached records a family the invalid-event policy detached from
// a process: its status (in /targets and on the status page) says why, and
// blindspot_probe_errors_total{probe,reason="invalid_events"} counts it.
func (a *Agent) familyDetached(d probes.Detached) {
	probe := d.Status.Family
	if strings.HasPrefix(probe, "userfunc:") {
		probe = "userfunc" // as its attach errors are counted
	}
	a.countError(probe, "invalid_events")
	a.log.Warn("probe family detached: its events were implausible", "pid", d.PID, "probe", d.Status.Family, "reason", d.Status.Error)
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.targets[d.PID]
	if t == nil || d.Attachment != nil && t.att != d.Attachment {
		return // not registered yet (started reads Status) or gone
	}
	if d.Attachment != nil {
		// The statuses a configuration reload rebuilds /targets from.
		t.att.Probes = withStatus(t.att.Probes, d.Status)
	}
	t.statuses = withStatus(t.statuses, d.Status)
}

// withStatus returns a copy of ps with the status of st's family replaced
// by st (or added).
func withStatus(ps []probes.ProbeStatus, st probes.ProbeStatus) []probes.ProbeStatus {
	out := make([]probes.ProbeStatus, 0, len(ps)+1)
	found := false
	for _, p := range ps {
		if p.Family == st.Family {
			p, found = st, true
		}
		out = append(out, p)
	}
	if !found {
		out = append(out, st)
	}
	return out
}

func (a *Agent) countError(probe, reason string) {
	a.mu.Lock()
	a.errCount[exporter.ErrorKey{Probe: probe, Reason: reason}]++
	a.mu.Unlock()
}

// serviceName picks a program's service: a configured rule, else
// OTEL_SERVICE_NAME or service.name in OTEL_RESOURCE_ATTRIBUTES, else its
// pod's app.kubernetes.io/name label, else its workload's name, else the
// executable's base name. res holds the program's other
// OTEL_RESOURCE_ATTRIBUTES (service.version, deployment.environment.name,
// ...) for its OTLP resource; service.name and service.namespace are
// carried by name and namespace alone.
func (a *Agent) serviceName(p discover.Process, w where) (name, namespace string, res map[string]string) {
	env := a.environ(p.PID, "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES")
	attrs := exporter.ParseResourceAttributes(env["OTEL_RESOURCE_ATTRIBUTES"])
	name, namespace = attrs["service.name"], attrs["service.namespace"]
	delete(attrs, "service.name")
	delete(attrs, "service.namespace")
	if len(attrs) > 0 {
		res = attrs
	}
	if r, ok := a.sel.ServiceFor(p.Exe); ok {
		return r.Name, r.Namespace, res
	}
	if s := env["OTEL_SERVICE_NAME"]; s != "" {
		name = s
	}
	if name == "" && w.inPod {
		name = w.pod.Labels[kube.AppNameLabel]
		if name == "" {
			name = w.pod.Owners.Workload
		}
	}
	if name == "" {
		name = filepath.Base(p.Exe)
	}
	return name, namespace, res
}

// Targets implements exporter.State.
func (a *Agent) Targets() []exporter.Target {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]exporter.Target, 0, len(a.targets))
	for _, t := range a.targets {
		st := t.status
		st.Probes = make([]exporter.ProbeStatus, len(t.statuses))
		for i, s := range t.statuses {
			st.Probes[i] = exporter.ProbeStatus(s) // the same fields
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// Skipped implements exporter.State.
func (a *Agent) Skipped() []exporter.Skipped {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]exporter.Skipped, 0, len(a.skipped))
	for _, s := range a.skipped {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// ProbeStats implements exporter.State.
func (a *Agent) ProbeStats() exporter.ProbeStats {
	return exporter.ProbeStats(a.probes.Stats()) // the same fields
}

// ProbeErrors implements exporter.State.
func (a *Agent) ProbeErrors() map[exporter.ErrorKey]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[exporter.ErrorKey]uint64, len(a.errCount))
	for k, v := range a.errCount {
		out[k] = v
	}
	return out
}
