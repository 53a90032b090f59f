package lifecycle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/exporter"
	"github.com/blindspot-dev/blindspot/probes/userfunc"
)

func countEntry(metric, function string) userfunc.Entry {
	return userfunc.Entry{Metric: metric, Kind: userfunc.KindCount, Function: function}
}

// configSource is what a test's configuration file says: its functions:
// section, or an error for a file that no longer parses.
type configSource struct {
	mu      sync.Mutex
	entries []userfunc.Entry
	err     error
	loads   int
}

func (c *configSource) set(err error, entries ...userfunc.Entry) {
	c.mu.Lock()
	c.entries, c.err = entries, err
	c.mu.Unlock()
}

func (c *configSource) load() ([]userfunc.Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loads++
	if c.err != nil {
		return nil, c.err
	}
	return slices.Clone(c.entries), nil
}

func (c *configSource) Loads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loads
}

func metricNames(fs []*userfunc.Func) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Metric.Name)
	}
	slices.Sort(out)
	return out
}

func hasMetric(agg *aggregator.Aggregator, name string) bool {
	for _, m := range agg.Metrics() {
		if m.Name == name {
			return true
		}
	}
	return false
}

func families(t exporter.Target) []string {
	var out []string
	for _, p := range t.Probes {
		out = append(out, p.Family)
	}
	return out
}

// A reload (SIGHUP) puts the new functions: section in force: an added
// entry gets its metric and its probes, a removed one loses both, and an
// unchanged one keeps its metric (and so its series). The statuses of the
// running processes follow.
func TestBusinessReloadAddsAndRemoves(t *testing.T) {
	r := newRig(t, Selection{}, aggregator.Options{})
	file := filepath.Join(t.TempDir(), "blindspot.yaml")
	os.WriteFile(file, []byte("functions: []\n"), 0o644)
	src := &configSource{}
	b := NewFunctions(r.a, file, src.load)
	orders, payments, refunds := countEntry("orders_total", "main.placeOrder"), countEntry("payments_total", "main.pay"), countEntry("refunds_total", "main.refund")
	b.Apply([]userfunc.Entry{orders, payments})
	before := r.pm.Funcs()
	if got := metricNames(before); !slices.Equal(got, []string{"orders_total", "payments_total"}) {
		t.Fatalf("in force %v", got)
	}
	if !hasMetric(r.agg, "orders_total") || !hasMetric(r.agg, "payments_total") {
		t.Fatal("business metrics not registered")
	}
	r.a.started(proc(1, "/opt/shop/orders"))
	if got := families(r.a.Targets()[0]); !slices.Equal(got, []string{"http_server", "userfunc:orders_total", "userfunc:payments_total"}) {
		t.Fatalf("statuses %v", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup := make(chan os.Signal, 1)
	go b.Watch(ctx, time.Hour, hup)
	src.set(nil, payments, refunds)
	hup <- syscall.SIGHUP
	eventually(t, "the reload", func() bool {
		return src.Loads() == 1 && slices.Contains(families(r.a.Targets()[0]), "userfunc:refunds_total")
	})

	after := r.pm.Funcs()
	if got := metricNames(after); !slices.Equal(got, []string{"payments_total", "refunds_total"}) {
		t.Errorf("in force after reload %v", got)
	}
	for _, f := range after {
		if f.Metric.Name == "payments_total" && f != before[1] {
			t.Error("unchanged entry got a new Func: its series would restart")
		}
	}
	if hasMetric(r.agg, "orders_total") || !hasMetric(r.agg, "refunds_total") || !hasMetric(r.agg, "payments_total") {
		t.Errorf("metrics after reload: orders %v payments %v refunds %v", hasMetric(r.agg, "orders_total"), hasMetric(r.agg, "payments_total"), hasMetric(r.agg, "refunds_total"))
	}
	if got := families(r.a.Targets()[0]); !slices.Equal(got, []string{"http_server", "userfunc:payments_total", "userfunc:refunds_total"}) {
		t.Errorf("statuses after reload %v", got)
	}
	if e := r.a.ProbeErrors(); len(e) != 0 {
		t.Errorf("probe errors %v", e)
	}
}

// A bad entry is reported (Errors, and counted as invalid_config) and
// skipped; the good ones stay in force. A file that no longer parses keeps
// the previous set in force, and is counted too.
func TestBusinessInvalidConfig(t *testing.T) {
	r := newRig(t, Selection{}, aggregator.Options{})
	src := &configSource{}
	b := NewFunctions(r.a, "/etc/blindspot.yaml", src.load)
	b.Apply([]userfunc.Entry{
		countEntry("orders_total", "main.placeOrder"),
		countEntry("OrdersCount", "main.placeOrder"),                             // not snake_case
		countEntry("orders_total", "main.placeOtherOrder"),                       // the same metric again
		{Metric: "http_server_request_duration_seconds", Function: "main.serve"}, // a built-in metric
		{Metric: "refunds_total", Kind: userfunc.KindCount},                      // no function
	})
	if got := metricNames(r.pm.Funcs()); !slices.Equal(got, []string{"orders_total"}) {
		t.Errorf("in force %v, want only the valid entry", got)
	}
	errs := b.Errors()
	if len(errs) != 4 {
		t.Fatalf("errors %q, want 4", errs)
	}
	for i, want := range []string{
		"config /etc/blindspot.yaml: functions[1] (OrdersCount): ",
		"config /etc/blindspot.yaml: functions[2] (orders_total): metric \"orders_total\" is already defined by functions[0]",
		"config /etc/blindspot.yaml: functions[3] (http_server_request_duration_seconds): metric \"http_server_request_duration_seconds\": clashes with blindspot's built-in metric",
		"config /etc/blindspot.yaml: functions[4] (refunds_total): function: missing",
	} {
		if !strings.HasPrefix(errs[i], want) {
			t.Errorf("error %d: %q, want it to start with %q", i, errs[i], want)
		}
	}
	key := exporter.ErrorKey{Probe: "userfunc", Reason: "invalid_config"}
	if n := r.a.ProbeErrors()[key]; n != 4 {
		t.Errorf("invalid_config counted %d times, want 4", n)
	}

	src.set(errors.New("config /etc/blindspot.yaml: yaml: line 3: did not find expected key"))
	b.reload("SIGHUP")
	if got := metricNames(r.pm.Funcs()); !slices.Equal(got, []string{"orders_total"}) {
		t.Errorf("in force after a failed reload %v, want the previous set", got)
	}
	if n := r.a.ProbeErrors()[key]; n != 5 {
		t.Errorf("invalid_config counted %d times, want 5", n)
	}
	if len(b.Errors()) != 4 {
		t.Errorf("errors after a failed reload %q, want the last load's", b.Errors())
	}

	src.set(nil, countEntry("orders_total", "main.placeOrder"))
	b.reload("SIGHUP")
	if errs := b.Errors(); len(errs) != 0 {
		t.Errorf("errors after a good reload %q", errs)
	}
}

// A business function that cannot attach to a process is counted once as
// userfunc/attach_failed and shown in the process's status; a reload
// counts only errors that are new.
func TestBusinessAttachErrors(t *testing.T) {
	r := newRig(t, Selection{}, aggregator.Options{})
	src := &configSource{}
	b := NewFunctions(r.a, "/etc/blindspot.yaml", src.load)
	r.pm.userErr["orders_total"] = "main.placeOrder: no such function"
	b.Apply([]userfunc.Entry{countEntry("orders_total", "main.placeOrder")})
	r.a.started(proc(1, "/opt/shop/orders"))
	key := exporter.ErrorKey{Probe: "userfunc", Reason: "attach_failed"}
	if n := r.a.ProbeErrors()[key]; n != 1 {
		t.Errorf("attach_failed counted %d times, want 1", n)
	}
	st := r.a.Targets()[0].Probes
	if len(st) != 2 || st[1].Error != "main.placeOrder: no such function" {
		t.Errorf("statuses %+v", st)
	}
	src.set(nil, countEntry("orders_total", "main.placeOrder"), countEntry("refunds_total", "main.refund"))
	r.pm.userErr["refunds_total"] = "main.refund: no such function"
	b.reload("file changed")
	if n := r.a.ProbeErrors()[key]; n != 2 {
		t.Errorf("attach_failed counted %d times after the reload, want 2 (one new error)", n)
	}
}

// Watch reloads when the file changes, with no signal; without a file it
// reloads nothing, whatever the signals.
func TestBusinessReloadOnFileChange(t *testing.T) {
	r := newRig(t, Selection{}, aggregator.Options{})
	file := filepath.Join(t.TempDir(), "blindspot.yaml")
	if err := os.WriteFile(file, []byte("functions: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := &configSource{}
	b := NewFunctions(r.a, file, src.load)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		b.Watch(ctx, 10*time.Millisecond, make(chan os.Signal))
		close(done)
	}()
	eventually(t, "Watch to take the file's stamp", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.stamp != (fileStamp{})
	})
	time.Sleep(50 * time.Millisecond)
	if n := src.Loads(); n != 0 {
		t.Fatalf("%d reloads of an unchanged file", n)
	}
	src.set(nil, countEntry("orders_total", "main.placeOrder"))
	// Replaced whole, as editors and ConfigMap updates do: a file
	// rewritten in place may be seen half-written, and reloaded twice.
	tmp := file + ".new"
	if err := os.WriteFile(tmp, []byte("functions:\n  - {metric: orders_total, kind: count, function: main.placeOrder}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the reload", func() bool { return slices.Equal(metricNames(r.pm.Funcs()), []string{"orders_total"}) })
	time.Sleep(50 * time.Millisecond)
	if n := src.Loads(); n != 1 {
		t.Errorf("%d reloads for one change, want 1", n)
	}
	cancel()
	<-done

	none := NewFunctions(r.a, "", src.load)
	ctx, cancel = context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	done = make(chan struct{})
	go func() {
		none.Watch(ctx, 10*time.Millisecond, hup)
		close(done)
	}()
	hup <- syscall.SIGHUP
	time.Sleep(50 * time.Millisecond)
	cancel()
	<-done
	if n := src.Loads(); n != 1 {
		t.Errorf("reloaded without a file (%d loads)", n)
	}
}
