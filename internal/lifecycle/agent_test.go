package lifecycle

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/exporter"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/discover"
	"github.com/blindspot-dev/blindspot/symbols"
)

func targetPIDs(ts []exporter.Target) []int {
	var out []int
	for _, t := range ts {
		out = append(out, t.PID)
	}
	return out
}

// Only the programs the include/exclude rules select are instrumented,
// and the rules are applied before the binary is read: the executables of
// the others are never opened, and they are not reported as skipped.
func TestFilter(t *testing.T) {
	sel := Selection{
		Include: []Match{{Exe: "/opt/shop/*"}, {Service: "payments"}},
		Exclude: []Match{{Service: "debug-*"}, {Exe: "/opt/shop/tools/*"}},
	}
	r := newRig(t, sel, aggregator.Options{})
	r.host.env[3] = map[string]string{"OTEL_SERVICE_NAME": "payments"}
	r.host.env[4] = map[string]string{"OTEL_SERVICE_NAME": "debug-orders"}
	r.run(t)
	r.disco.send(
		started(proc(1, "/opt/shop/orders")),        // included by exe
		started(proc(2, "/usr/bin/other")),          // not included
		started(proc(3, "/usr/local/bin/pay")),      // included by service name
		started(proc(4, "/opt/shop/orders")),        // excluded by service name
		started(proc(5, "/opt/shop/tools/migrate")), // excluded by exe
		started(proc(6, "/opt/shop/cart")),          // included by exe
	)
	eventually(t, "three targets", func() bool { return len(r.a.Targets()) == 3 })
	if got, want := targetPIDs(r.a.Targets()), []int{1, 3, 6}; !slices.Equal(got, want) {
		t.Errorf("instrumented %v, want %v", got, want)
	}
	if got, want := r.bins.Read(), []string{"/opt/shop/orders", "/usr/local/bin/pay", "/opt/shop/cart"}; !slices.Equal(got, want) {
		t.Errorf("binaries read %v, want only the selected programs' %v", got, want)
	}
	if s := r.a.Skipped(); len(s) != 0 {
		t.Errorf("programs left out by the rules reported as skipped: %+v", s)
	}
	if e := r.a.ProbeErrors(); len(e) != 0 {
		t.Errorf("programs left out by the rules counted as errors: %v", e)
	}
}

// A program's service is a configured services: rule, else
// OTEL_SERVICE_NAME, else service.name in OTEL_RESOURCE_ATTRIBUTES, else
// the executable's base name; its namespace is the rule's or
// service.namespace. The name reaches the aggregator, /targets and the
// business probes (which select by service).
func TestServiceNaming(t *testing.T) {
	sel := Selection{Services: []ServiceRule{{Exe: "/opt/shop/orders", Name: "order-svc", Namespace: "shop"}}}
	r := newRig(t, sel, aggregator.Options{})
	env := map[int]map[string]string{
		1: {"OTEL_SERVICE_NAME": "ignored-for-a-rule", "OTEL_RESOURCE_ATTRIBUTES": "service.version=3"},
		2: {"OTEL_SERVICE_NAME": "cart", "OTEL_RESOURCE_ATTRIBUTES": "service.name=cart-attr, service.namespace=shop"},
		3: {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=prod, service.name=pay,service.namespace=money,service.version=2.1%2Crc1, novalue"},
		4: {},
		5: {"OTEL_SERVICE_NAME": ""},
	}
	r.host.env = env
	procs := []discover.Process{
		proc(1, "/opt/shop/orders"),
		proc(2, "/opt/shop/cart"),
		proc(3, "/opt/pay/server"),
		proc(4, "/usr/local/bin/inventory"),
		proc(5, "/srv/shipping (v2)/ship"),
	}
	want := []struct {
		service, namespace string
		resource           map[string]string // the rest of OTEL_RESOURCE_ATTRIBUTES
	}{
		{"order-svc", "shop", map[string]string{"service.version": "3"}},
		{"cart", "shop", nil},
		{"pay", "money", map[string]string{"deployment.environment.name": "prod", "service.version": "2.1,rc1"}},
		{"inventory", "", nil},
		{"ship", "", nil},
	}
	r.run(t)
	for _, p := range procs {
		r.disco.send(started(p))
	}
	r.settle(t)
	ts := r.a.Targets()
	aggTargets := r.agg.Targets()
	for i, w := range want {
		if ts[i].ServiceName != w.service {
			t.Errorf("pid %d (%s): service %q, want %q", ts[i].PID, ts[i].Exe, ts[i].ServiceName, w.service)
		}
		if at := aggTargets[i]; at.PID != ts[i].PID || at.Service != w.service || at.Namespace != w.namespace {
			t.Errorf("aggregator target %+v, want service %q namespace %q", at, w.service, w.namespace)
		}
		if at := aggTargets[i]; !maps.Equal(at.Resource, w.resource) {
			t.Errorf("pid %d: resource %v, want %v", at.PID, at.Resource, w.resource)
		}
		if c := fmt.Sprintf("user %d %s", procs[i].PID, w.service); !slices.Contains(r.pm.Calls(), c) {
			t.Errorf("no %q in %v", c, r.pm.Calls())
		}
	}
}

// Each reason a wanted program is not instrumented is shown on /targets
// (Skipped) and counted under blindspot_probe_errors_total{probe="process"};
// a program that is not Go, or that exited before it could be read or
// attached, is no failure and is not reported. A skipped program holds no
// binary and leaves no live target in the aggregator.
func TestSkipReasons(t *testing.T) {
	r := newRig(t, Selection{}, aggregator.Options{})
	r.bins.bins["/old/go118"] = &symbols.Binary{GoVersion: "go1.18.10"}
	r.bins.bins["/future/go2"] = &symbols.Binary{GoVersion: "go2.0.0"}
	r.bins.bins["/devel/go"] = &symbols.Binary{GoVersion: "devel +abcdef"}
	r.bins.errs["/usr/bin/sh"] = fmt.Errorf("read executable: %w", symbols.ErrNotGo)
	r.bins.errs["/tmp/gone"] = fmt.Errorf("read executable: %w", fs.ErrNotExist)
	r.bins.errs["/opt/corrupt"] = errors.New("read executable /opt/corrupt: bad .gopclntab")
	r.pm.attachErr[7] = errors.New("open executable: permission denied")
	r.pm.attachErr[8] = fmt.Errorf("open executable: %w", fs.ErrNotExist)
	r.pm.attachErr[9] = probes.ErrNoFamily
	r.run(t)
	r.disco.send(
		started(proc(1, "/old/go118")),
		started(proc(2, "/future/go2")),
		started(proc(3, "/devel/go")),
		started(proc(4, "/usr/bin/sh")),
		started(proc(5, "/tmp/gone")),
		started(proc(6, "/opt/corrupt")),
		started(proc(7, "/opt/denied")),
		started(proc(8, "/opt/exited")),
		started(proc(9, "/opt/no-http")),
	)
	r.settle(t)

	skipped := map[int]string{}
	for _, s := range r.a.Skipped() {
		skipped[s.PID] = s.Reason
	}
	wantSkipped := map[int]string{
		1: "unsupported Go version go1.18.10: blindspot supports Go 1.19 through 1.27",
		2: "unsupported Go version go2.0.0: blindspot supports Go 1.19 through 1.27",
		3: "unsupported Go version devel +abcdef: blindspot supports Go 1.19 through 1.27",
		6: "read executable /opt/corrupt: bad .gopclntab",
		7: "open executable: permission denied",
	}
	for pid, want := range wantSkipped {
		if skipped[pid] != want {
			t.Errorf("pid %d: skipped for %q, want %q", pid, skipped[pid], want)
		}
	}
	for pid := range skipped {
		if _, ok := wantSkipped[pid]; !ok {
			t.Errorf("pid %d skipped (%q); want it silent", pid, skipped[pid])
		}
	}
	wantErrs := map[exporter.ErrorKey]uint64{
		{Probe: "process", Reason: "unsupported_go_version"}: 3,
		{Probe: "process", Reason: "unreadable_binary"}:      1,
		{Probe: "process", Reason: "attach_failed"}:          1,
	}
	if got := r.a.ProbeErrors(); !maps.Equal(got, wantErrs) {
		t.Errorf("probe errors %v, want %v", got, wantErrs)
	}
	// A program no family applies to is instrumented all the same (its
	// business functions and /targets entry stand).
	if got := targetPIDs(r.a.Targets()); !slices.Equal(got, []int{9}) {
		t.Errorf("instrumented %v, want [9]", got)
	}
	if held := r.bins.Held(); len(held) != 1 || held[proc(9, "/opt/no-http").File] != 1 {
		t.Errorf("binaries held %v, want only pid 9's", held)
	}
	for _, at := range r.agg.Targets() {
		if at.PID != 9 && at.Exited.IsZero() {
			t.Errorf("aggregator target of pid %d left live: %+v", at.PID, at)
		}
	}
}

// A family that fails to attach to a live program is counted and shown
// in its status while the others stay; when the program exited during the
// attach, nothing failed: its probes are detached and it is not
// registered.
func TestFamilyAttachErrors(t *testing.T) {
	r := newRig(t, Selection{}, aggregator.Options{})
	fams := []probes.ProbeStatus{
		{Family: "http_server", Sites: []string{"net/http.serverHandler.ServeHTTP"}},
		{Family: "db", Error: "database/sql.(*DB).conn: no RET site"},
	}
	r.pm.families[1] = fams
	r.pm.families[2] = fams
	r.host.dead[2] = true
	r.a.started(proc(1, "/opt/shop/orders"))
	r.a.started(proc(2, "/opt/shop/orders"))

	ts := r.a.Targets()
	if len(ts) != 1 || ts[0].PID != 1 {
		t.Fatalf("targets %+v, want pid 1 only", ts)
	}
	if len(ts[0].Probes) != 2 || ts[0].Probes[1].Error != fams[1].Error {
		t.Errorf("statuses %+v", ts[0].Probes)
	}
	if got := r.a.ProbeErrors(); !maps.Equal(got, map[exporter.ErrorKey]uint64{{Probe: "db", Reason: "attach_failed"}: 1}) {
		t.Errorf("probe errors %v", got)
	}
	if !slices.Contains(r.pm.Calls(), "detach 2") || slices.Contains(r.pm.Calls(), "detach 1") {
		t.Errorf("calls %v, want pid 2 detached and pid 1 not", r.pm.Calls())
	}
	if held := r.bins.Held(); held[proc(1, "/opt/shop/orders").File] != 1 {
		t.Errorf("binaries held %v, want one reference (pid 1)", held)
	}
	if s := r.a.Skipped(); len(s) != 0 {
		t.Errorf("skipped %+v", s)
	}
}

// An exit event detaches the process's probes, releases its binary and
// marks its aggregator target exited (its series stay for the grace
// period); the exit of a process the agent does not hold, or of an older
// process whose PID was reused, changes nothing. A skipped process's
// entry goes with it.
func TestDetachOnExit(t *testing.T) {
	r := newRig(t, Selection{}, aggregator.Options{})
	r.bins.bins["/old/go118"] = &symbols.Binary{GoVersion: "go1.18.10"}
	r.run(t)
	orders, cart, old := proc(1, "/opt/shop/orders"), proc(2, "/opt/shop/cart"), proc(3, "/old/go118")
	r.disco.send(started(orders), started(cart), started(old))
	r.settle(t)
	if len(r.a.Targets()) != 2 || len(r.a.Skipped()) != 1 {
		t.Fatalf("skipped %+v", r.a.Skipped())
	}

	reused := cart
	reused.StartTicks++ // a new process with pid 2: not the one attached
	r.disco.send(exited(reused), exited(proc(99, "/usr/bin/unknown")), exited(orders), exited(old))
	r.settle(t)
	if got := targetPIDs(r.a.Targets()); !slices.Equal(got, []int{2}) {
		t.Errorf("targets %v, want [2]", got)
	}
	if n := len(r.a.Skipped()); n != 0 {
		t.Errorf("exited process still skipped: %+v", r.a.Skipped())
	}
	detaches := 0
	for _, c := range r.pm.Calls() {
		if strings.HasPrefix(c, "detach ") {
			detaches++
			if c != "detach 1" {
				t.Errorf("%s: want only pid 1 detached", c)
			}
		}
	}
	if detaches != 1 {
		t.Errorf("calls %v: want one detach", r.pm.Calls())
	}
	if held := r.bins.Held(); len(held) != 1 || held[cart.File] != 1 {
		t.Errorf("binaries held %v, want only pid 2's", held)
	}
	for _, at := range r.agg.Targets() {
		if exitedNow := !at.Exited.IsZero(); exitedNow != (at.PID == 1) {
			t.Errorf("aggregator target %d: exited at %v", at.PID, at.Exited)
		}
	}
}

// When its context ends the agent detaches every process, releases every
// binary and closes discovery before Run returns.
func TestShutdownDetachesAll(t *testing.T) {
	r := newRig(t, Selection{}, aggregator.Options{})
	stop := r.run(t)
	for pid := 1; pid <= 20; pid++ {
		r.disco.send(started(proc(pid, fmt.Sprintf("/opt/svc%d", pid%3))))
	}
	eventually(t, "20 targets", func() bool { return len(r.a.Targets()) == 20 })
	stop()
	var detached []string
	for _, c := range r.pm.Calls() {
		if strings.HasPrefix(c, "detach ") {
			detached = append(detached, c)
		}
	}
	if len(detached) != 20 {
		t.Errorf("%d detaches, want 20: %v", len(detached), detached)
	}
	if len(r.a.Targets()) != 0 {
		t.Errorf("targets left: %+v", r.a.Targets())
	}
	if held := r.bins.Held(); len(held) != 0 {
		t.Errorf("binaries held after shutdown: %v", held)
	}
	select {
	case <-r.disco.closed:
	default:
		t.Error("discovery not closed")
	}
}

// An exited process's series expire on the agent's clock, soon after its
// grace period; reading the aggregator (a scrape, an OTLP export) expires
// nothing.
func TestExpiryOnAgentClock(t *testing.T) {
	const grace = 200 * time.Millisecond
	r := newRig(t, Selection{}, aggregator.Options{Grace: grace})
	p := proc(1, "/opt/shop/orders")
	r.a.started(p)
	r.a.exited(p)
	time.Sleep(2 * grace)
	r.agg.Snapshot()
	r.agg.Retired()
	if ts := r.agg.Targets(); len(ts) != 1 || ts[0].Exited.IsZero() {
		t.Fatalf("before the agent runs, targets %+v, want pid 1 exited and kept", ts)
	}
	r.run(t)
	// The ticker fires every expiryInterval(grace) = 100ms.
	eventually(t, "the exited target expired", func() bool { return len(r.agg.Targets()) == 0 })

	// A live process never expires.
	q := proc(2, "/opt/shop/cart")
	r.disco.send(started(q))
	eventually(t, "pid 2 instrumented", func() bool { return len(r.a.Targets()) == 1 })
	time.Sleep(3 * grace)
	if ts := r.agg.Targets(); len(ts) != 1 || ts[0].PID != 2 {
		t.Errorf("targets %+v, want live pid 2", ts)
	}
}

// Series expire on the agent's clock, often enough that none outlives its
// grace period by more than a tenth of it (or 5s): the end-to-end tests run
// with a 3s grace and expect the series gone soon after it.
func TestExpiryInterval(t *testing.T) {
	for _, c := range []struct{ grace, want time.Duration }{
		{3 * time.Second, 300 * time.Millisecond},
		{time.Minute, 5 * time.Second},
		{5 * time.Minute, 5 * time.Second}, // the default grace
		{10 * time.Millisecond, 100 * time.Millisecond},
	} {
		if got := expiryInterval(c.grace); got != c.want {
			t.Errorf("expiryInterval(%v) = %v, want %v", c.grace, got, c.want)
		}
	}
	if g := aggregator.New(nil, aggregator.Options{}).Grace(); expiryInterval(g) != 5*time.Second {
		t.Errorf("default grace %v: interval %v, want 5s", g, expiryInterval(g))
	}
}

// A family the invalid-event policy detached shows its reason in the
// target's status (what /targets and the status page render), a business
// function's too, and each detach is counted under invalid_events; a
// report about an attachment the agent no longer holds (the PID reused)
// changes nothing.
func TestFamilyDetachedShownInTargets(t *testing.T) {
	agg := aggregator.New(allMetrics(), aggregator.Options{})
	pm := newFakeProber()
	a := New(agg, pm, &Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	att := &probes.Attachment{PID: 42, Probes: []probes.ProbeStatus{
		{Family: "http_server", Sites: []string{"net/http.serverHandler.ServeHTTP"}},
		{Family: "http_client", Sites: []string{"net/http.(*Transport).roundTrip"}},
	}}
	user := probes.ProbeStatus{Family: "userfunc:orders_total", Sites: []string{"main.placeOrder"}}
	a.targets[42] = &target{att: att, status: exporter.Target{PID: 42, ServiceName: "shop"},
		statuses: append(append([]probes.ProbeStatus(nil), att.Probes...), user)}

	// Through the function the agent gave the probe manager.
	const reason = "detached: 37 of 40 events invalid (status) — offsets for this binary are likely wrong"
	pm.onDetached(probes.Detached{PID: 42, Attachment: att, Status: probes.ProbeStatus{Family: "http_server", Error: reason}})
	pm.onDetached(probes.Detached{PID: 42, Status: probes.ProbeStatus{Family: "userfunc:orders_total", Error: "detached: 25 of 25 events invalid (utf8) — offsets for this binary are likely wrong"}})
	pm.onDetached(probes.Detached{PID: 42, Attachment: &probes.Attachment{PID: 42}, Status: probes.ProbeStatus{Family: "http_client", Error: "stale"}})

	ts := a.Targets()
	if len(ts) != 1 || len(ts[0].Probes) != 3 {
		t.Fatalf("targets %+v", ts)
	}
	got := map[string]exporter.ProbeStatus{}
	for _, p := range ts[0].Probes {
		got[p.Family] = p
	}
	if p := got["http_server"]; p.Error != reason || len(p.Sites) != 0 {
		t.Errorf("http_server: %+v, want detached: %q", p, reason)
	}
	if p := got["http_client"]; p.Error != "" || len(p.Sites) != 1 {
		t.Errorf("http_client: %+v, want attached", p)
	}
	if p := got["userfunc:orders_total"]; p.Error == "" {
		t.Errorf("business function: %+v, want detached", p)
	}
	// What a configuration reload rebuilds the statuses from.
	if att.Probes[0].Error != reason {
		t.Errorf("attachment statuses %+v", att.Probes)
	}
	errs := a.ProbeErrors()
	if errs[exporter.ErrorKey{Probe: "http_server", Reason: "invalid_events"}] != 1 ||
		errs[exporter.ErrorKey{Probe: "userfunc", Reason: "invalid_events"}] != 1 {
		t.Errorf("probe errors %v", errs)
	}
}

// Without fakes for them, the agent reads a process's environment and
// liveness from /proc: a real child's OTEL_SERVICE_NAME names it.
func TestNamingFromProc(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.Env = append(os.Environ(), "OTEL_SERVICE_NAME=from-environ", "OTEL_RESOURCE_ATTRIBUTES=service.namespace=shop")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep to run: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	agg := aggregator.New(allMetrics(), aggregator.Options{})
	a := New(agg, newFakeProber(), &Options{Binaries: newFakeBinaries()})
	a.started(proc(cmd.Process.Pid, "/usr/bin/sleep"))
	ts := a.Targets()
	if len(ts) != 1 || ts[0].ServiceName != "from-environ" {
		t.Fatalf("targets %+v, want service from-environ", ts)
	}
	if at := agg.Targets(); len(at) != 1 || at[0].Namespace != "shop" {
		t.Errorf("aggregator targets %+v, want namespace shop", at)
	}
}

// fakePages counts the page-outs the agent asks for.
type fakePages struct {
	mu              sync.Mutex
	always, ifGrown int
}

func (f *fakePages) PageOut() (int64, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.always++
	return 2, 1, nil
}

func (f *fakePages) PageOutIfGrown(int64) (bool, int64, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ifGrown++
	return false, 1, 1, nil
}

func (f *fakePages) pagedOut() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.always
}

// The agent hands its executable pages back once start-up is over and
// once each burst of attaches is, not when programs it does not
// instrument start.
func TestOwnPagesHandedBackAfterBursts(t *testing.T) {
	defer func(d time.Duration) { ownPagesSettle = d }(ownPagesSettle)
	ownPagesSettle = 50 * time.Millisecond
	pages := &fakePages{}
	r := newRig(t, Selection{}, aggregator.Options{}, func(o *Options) { o.OwnPages = pages })
	r.bins.bins["/old/go118"] = &symbols.Binary{GoVersion: "go1.18.10"}
	r.run(t)
	eventually(t, "the page-out after start-up", func() bool { return pages.pagedOut() == 1 })
	r.disco.send(started(proc(3, "/old/go118"))) // skipped: nothing attached
	r.settle(t)
	time.Sleep(10 * ownPagesSettle)
	if n := pages.pagedOut(); n != 1 {
		t.Fatalf("%d page-outs after a program was skipped, want still 1", n)
	}
	r.disco.send(started(proc(1, "/opt/shop/orders")), started(proc(2, "/opt/shop/cart")))
	eventually(t, "the page-out after the attaches", func() bool { return pages.pagedOut() == 2 })
	time.Sleep(10 * ownPagesSettle)
	if n := pages.pagedOut(); n != 2 {
		t.Errorf("%d page-outs after one burst, want 2", n)
	}
}
