package main

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/exporter"
	"github.com/blindspot-dev/blindspot/probes"
)

// A family the invalid-event policy detached shows its reason in the
// target's status (what /targets and the status page render), a business
// function's too, and each detach is counted under invalid_events; a
// report about an attachment the agent no longer holds (the PID reused)
// changes nothing.
func TestFamilyDetachedShownInTargets(t *testing.T) {
	agg := aggregator.New(familyMetrics(), aggregator.Options{})
	a := newAgent(&Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)), agg, nil)
	att := &probes.Attachment{PID: 42, Probes: []probes.ProbeStatus{
		{Family: "http_server", Sites: []string{"net/http.serverHandler.ServeHTTP"}},
		{Family: "http_client", Sites: []string{"net/http.(*Transport).roundTrip"}},
	}}
	user := probes.ProbeStatus{Family: "userfunc:orders_total", Sites: []string{"main.placeOrder"}}
	a.targets[42] = &target{att: att, status: exporter.Target{PID: 42, ServiceName: "shop"},
		statuses: append(append([]probes.ProbeStatus(nil), att.Probes...), user)}

	const reason = "detached: 37 of 40 events invalid (status) — offsets for this binary are likely wrong"
	a.familyDetached(probes.Detached{PID: 42, Attachment: att, Status: probes.ProbeStatus{Family: "http_server", Error: reason}})
	a.familyDetached(probes.Detached{PID: 42, Status: probes.ProbeStatus{Family: "userfunc:orders_total", Error: "detached: 25 of 25 events invalid (utf8) — offsets for this binary are likely wrong"}})
	a.familyDetached(probes.Detached{PID: 42, Attachment: &probes.Attachment{PID: 42}, Status: probes.ProbeStatus{Family: "http_client", Error: "stale"}})

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
