package exporter

import (
	"encoding/json"
	"html"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// fixedState is a State that answers what it holds.
type fixedState struct {
	targets []Target
	stats   ProbeStats
	errors  map[ErrorKey]uint64
}

func (s fixedState) Targets() []Target                { return s.targets }
func (s fixedState) Skipped() []Skipped               { return nil }
func (s fixedState) ProbeStats() ProbeStats           { return s.stats }
func (s fixedState) ProbeErrors() map[ErrorKey]uint64 { return s.errors }

const detachedReason = "detached: 37 of 40 events invalid (status) — offsets for this binary are likely wrong"

func detachedState() fixedState {
	return fixedState{
		targets: []Target{{PID: 42, ServiceName: "shop", Exe: "/usr/bin/shop", GoVersion: "go1.19.8", Probes: []ProbeStatus{
			{Family: "http_server", Error: detachedReason},
			{Family: "http_client", Sites: []string{"net/http.(*Transport).roundTrip"}},
		}}},
		stats: ProbeStats{
			Events: map[string]uint64{"http_server": 40, "http_client": 9},
			Lost:   map[string]uint64{"http_server": 0, "http_client": 0},
			Invalid: map[string]map[string]uint64{
				"http_server": {"status": 37, "method": 0, "utf8": 0, "path": 2, "duration": 0},
				"http_client": {"status": 0, "method": 0, "utf8": 0, "port": 0, "duration": 0},
			},
		},
		errors: map[ErrorKey]uint64{{Probe: "http_server", Reason: "invalid_events"}: 1},
	}
}

func get(t *testing.T, s *Server, path string) string {
	t.Helper()
	w := httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	if w.Code != 200 {
		t.Fatalf("GET %s: %d", path, w.Code)
	}
	b, _ := io.ReadAll(w.Body)
	return string(b)
}

// A family detached for invalid events shows its reason in /targets and on
// the status page; the invalid events are counted by family and reason in
// /metrics and on the page, and the detach in blindspot_probe_errors_total.
func TestInvalidEventsShown(t *testing.T) {
	h, _ := testMetrics()
	agg := aggregator.New([]*aggregator.Metric{h}, aggregator.Options{})
	s, err := New(agg, detachedState(), Options{Logger: newDiscardLogger(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}

	var targets []Target
	if err := json.Unmarshal([]byte(get(t, s, "/targets")), &targets); err != nil {
		t.Fatal(err)
	}
	if len(targets) != 1 || targets[0].Probes[0].Error != detachedReason {
		t.Errorf("/targets = %+v, want http_server's error %q", targets, detachedReason)
	}

	page := get(t, s, "/")
	for _, want := range []string{
		`http_server <span class="err">error: ` + detachedReason + `</span>`,
		`<td class="n err">39 <span>path: 2</span> <span>status: 37</span></td>`,
		`<tr><td>http_server</td><td>invalid_events</td><td class="n">1</td></tr>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q:\n%s", want, page)
		}
	}

	metrics := get(t, s, "/metrics")
	for _, want := range []string{
		`blindspot_events_invalid_total{probe="http_server",reason="status"} 37`,
		`blindspot_events_invalid_total{probe="http_server",reason="path"} 2`,
		`blindspot_events_invalid_total{probe="http_client",reason="port"} 0`,
		`blindspot_probe_errors_total{probe="http_server",reason="invalid_events"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// The status page lists the functions each family probes in a program: a
// router whose routes become http_route shows there by its function.
func TestStatusListsProbedFunctions(t *testing.T) {
	h, _ := testMetrics()
	st := fixedState{targets: []Target{{PID: 7, ServiceName: "api", Exe: "/srv/api", GoVersion: "go1.26.0", Probes: []ProbeStatus{
		{Family: "http_server", Sites: []string{"net/http.serverHandler.ServeHTTP+0x6", "github.com/gin-gonic/gin.(*Engine).ServeHTTP+0x1a0"},
			Left: []string{"github.com/gorilla/mux.(*Router).ServeHTTP: gorilla/mux routes not read (http_route from the path instead): no call"}},
	}}}}
	agg := aggregator.New([]*aggregator.Metric{h}, aggregator.Options{})
	s, err := New(agg, st, Options{Logger: newDiscardLogger(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	page := html.UnescapeString(get(t, s, "/"))
	for _, want := range []string{
		"2 functions",
		"github.com/gin-gonic/gin.(*Engine).ServeHTTP+0x1a0",
		"left out: github.com/gorilla/mux.(*Router).ServeHTTP: gorilla/mux routes not read",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
}

// /targets knows two states; any other is a client error that names them,
// not an answer as if none was given.
func TestTargetsStates(t *testing.T) {
	h, _ := testMetrics()
	agg := aggregator.New([]*aggregator.Metric{h}, aggregator.Options{})
	s, err := New(agg, detachedState(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"", "?state=instrumented"} {
		var ts []Target
		if err := json.Unmarshal([]byte(get(t, s, "/targets"+q)), &ts); err != nil || len(ts) != 1 {
			t.Errorf("/targets%s: %v, %v", q, ts, err)
		}
	}
	if got := strings.TrimSpace(get(t, s, "/targets?state=skipped")); got != "[]" && got != "null" {
		t.Errorf("skipped: %s", got)
	}
	w := httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(w, httptest.NewRequest("GET", "/targets?state=bogus", nil))
	if w.Code != 400 || !strings.Contains(w.Body.String(), "state=skipped") || !strings.Contains(w.Body.String(), "state=instrumented") {
		t.Errorf("state=bogus: %d %q", w.Code, w.Body.String())
	}
}
