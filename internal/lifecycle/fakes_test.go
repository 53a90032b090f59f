package lifecycle

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/dbsql"
	"github.com/blindspot-dev/blindspot/probes/discover"
	"github.com/blindspot-dev/blindspot/probes/goruntime"
	"github.com/blindspot-dev/blindspot/probes/httpclient"
	"github.com/blindspot-dev/blindspot/probes/httpserver"
	"github.com/blindspot-dev/blindspot/probes/userfunc"
	"github.com/blindspot-dev/blindspot/symbols"
)

// fakeProber records what the agent asks of the probe manager.
type fakeProber struct {
	mu sync.Mutex
	// calls are "attach PID", "detach PID", "user PID SERVICE", in order.
	calls []string
	// attachErr, when set for a PID, is what Attach returns for it.
	attachErr map[int]error
	// families, when set for a PID, is how Attach says the families fared;
	// by default one family, http_server, attached.
	families map[int][]probes.ProbeStatus
	// userErr, when set for a metric, is the error of that business
	// function in every process.
	userErr    map[string]string
	funcs      []*userfunc.Func
	onDetached func(probes.Detached)
}

func newFakeProber() *fakeProber {
	return &fakeProber{attachErr: map[int]error{}, families: map[int][]probes.ProbeStatus{}, userErr: map[string]string{}}
}

func (f *fakeProber) record(format string, args ...any) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *fakeProber) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeProber) Attach(pid int, exe string, bin *symbols.Binary, t aggregator.TargetID) (*probes.Attachment, error) {
	f.record("attach %d", pid)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.attachErr[pid]; err != nil {
		if err == probes.ErrNoFamily {
			return &probes.Attachment{PID: pid}, err
		}
		return nil, err
	}
	st, ok := f.families[pid]
	if !ok {
		st = []probes.ProbeStatus{{Family: "http_server", Sites: []string{"net/http.serverHandler.ServeHTTP"}}}
	}
	return &probes.Attachment{PID: pid, Probes: slices.Clone(st)}, nil
}

func (f *fakeProber) Detach(a *probes.Attachment) { f.record("detach %d", a.PID) }

func (f *fakeProber) AttachUser(pid int, exePath, exe, service string, bin *symbols.Binary, t aggregator.TargetID) []probes.ProbeStatus {
	f.record("user %d %s", pid, service)
	return f.UserStatus(pid)
}

func (f *fakeProber) UserStatus(pid int) []probes.ProbeStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []probes.ProbeStatus
	for _, u := range f.funcs {
		st := probes.ProbeStatus{Family: "userfunc:" + u.Metric.Name, Error: f.userErr[u.Metric.Name]}
		if st.Error == "" {
			st.Sites = []string{u.Entry.Function}
		}
		out = append(out, st)
	}
	return out
}

func (f *fakeProber) SetUserFuncs(funcs []*userfunc.Func) {
	f.mu.Lock()
	f.funcs = slices.Clone(funcs)
	f.mu.Unlock()
}

func (f *fakeProber) Funcs() []*userfunc.Func {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.funcs)
}

func (f *fakeProber) OnDetached(fn func(probes.Detached)) { f.onDetached = fn }
func (f *fakeProber) Forget(*symbols.Binary)              {}
func (f *fakeProber) Stats() probes.Stats                 { return probes.Stats{} }

// fakeBinaries hands out binaries by executable path and counts
// references.
type fakeBinaries struct {
	mu   sync.Mutex
	bins map[string]*symbols.Binary
	errs map[string]error
	// read lists the executables Acquire was asked for, in order.
	read []string
	refs map[discover.FileKey]int
}

func newFakeBinaries() *fakeBinaries {
	return &fakeBinaries{bins: map[string]*symbols.Binary{}, errs: map[string]error{}, refs: map[discover.FileKey]int{}}
}

func (b *fakeBinaries) Acquire(p discover.Process) (*symbols.Binary, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.read = append(b.read, p.Exe)
	if strings.HasPrefix(p.Exe, "/sync/") {
		return nil, fmt.Errorf("read executable: %w", symbols.ErrNotGo)
	}
	if err := b.errs[p.Exe]; err != nil {
		return nil, err
	}
	bin := b.bins[p.Exe]
	if bin == nil {
		bin = &symbols.Binary{GoVersion: "go1.26.8"}
	}
	b.refs[p.File]++
	return bin, nil
}

func (b *fakeBinaries) Release(key discover.FileKey) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refs[key]--
	return b.refs[key] == 0
}

func (b *fakeBinaries) Expire(time.Time) {}

func (b *fakeBinaries) Read() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.read)
}

// Held returns the references still held, by file.
func (b *fakeBinaries) Held() map[discover.FileKey]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[discover.FileKey]int{}
	for k, n := range b.refs {
		if n != 0 {
			out[k] = n
		}
	}
	return out
}

// fakeDiscovery reports the events a test sends.
type fakeDiscovery struct {
	events chan []discover.Event
	closed chan struct{}
}

func newFakeDiscovery() *fakeDiscovery {
	return &fakeDiscovery{events: make(chan []discover.Event), closed: make(chan struct{})}
}

func (d *fakeDiscovery) Run(ctx context.Context, out chan<- []discover.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case evs := <-d.events:
			select {
			case out <- evs:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (d *fakeDiscovery) Close() { close(d.closed) }

func (d *fakeDiscovery) send(evs ...discover.Event) { d.events <- evs }

func started(p discover.Process) discover.Event {
	return discover.Event{Kind: discover.Started, Process: p}
}

func exited(p discover.Process) discover.Event {
	return discover.Event{Kind: discover.Exited, Process: p}
}

// proc is a process running exe; processes running the same exe share
// its file.
func proc(pid int, exe string) discover.Process {
	key := discover.FileKey{Ino: uint64(len(exe))}
	for _, c := range exe {
		key.Dev = key.Dev*31 + uint64(c)
	}
	return discover.Process{PID: pid, StartTicks: uint64(1000 + pid), Exe: exe, ExePath: fmt.Sprintf("/proc/%d/exe", pid), File: key}
}

// host is the processes of a fake host: their environments, and which
// are alive.
type host struct {
	mu   sync.Mutex
	env  map[int]map[string]string
	dead map[int]bool
}

func (h *host) Environ(pid int, names ...string) map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]string{}
	for _, n := range names {
		if v, ok := h.env[pid][n]; ok {
			out[n] = v
		}
	}
	return out
}

func (h *host) Alive(p discover.Process) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.dead[p.PID]
}

// rig is an Agent on fakes.
type rig struct {
	a     *Agent
	agg   *aggregator.Aggregator
	pm    *fakeProber
	bins  *fakeBinaries
	host  *host
	disco *fakeDiscovery
	syncs int
}

// newRig returns a rig; each of more adjusts the Agent's Options.
func newRig(t *testing.T, sel Selection, aggOpts aggregator.Options, more ...func(*Options)) *rig {
	t.Helper()
	r := &rig{
		agg:   aggregator.New(allMetrics(), aggOpts),
		pm:    newFakeProber(),
		bins:  newFakeBinaries(),
		host:  &host{env: map[int]map[string]string{}, dead: map[int]bool{}},
		disco: newFakeDiscovery(),
	}
	opts := &Options{
		Selection: sel,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Binaries:  r.bins,
		Alive:     r.host.Alive,
		Environ:   r.host.Environ,
	}
	for _, f := range more {
		f(opts)
	}
	r.a = New(r.agg, r.pm, opts)
	return r
}

// run runs the agent until the test ends, and waits for it to detach
// everything.
func (r *rig) run(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.a.Run(ctx, r.disco)
		close(done)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// eventually fails the test unless cond becomes true within a few
// seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settle waits until the agent has handled every event sent so far: it
// sends the start of a program that is not Go, whose binary the agent
// reads after it handled the events before it.
func (r *rig) settle(t *testing.T) {
	t.Helper()
	r.syncs++
	exe := fmt.Sprintf("/sync/%d", r.syncs)
	r.disco.send(started(proc(100000+r.syncs, exe)))
	eventually(t, "the agent to settle", func() bool { return slices.Contains(r.bins.Read(), exe) })
}

// allMetrics are the families' metrics, as the agent registers them.
func allMetrics() []*aggregator.Metric {
	var out []*aggregator.Metric
	for _, m := range [][]*aggregator.Metric{
		httpserver.Metrics(), httpclient.Metrics(), dbsql.Metrics(), goruntime.Metrics(),
	} {
		out = append(out, m...)
	}
	return out
}
