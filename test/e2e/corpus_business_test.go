package e2e

import (
	"strings"
	"testing"
	"time"
)

// corpusBusinessConfig declares business metrics on Prometheus' own HTTP
// API functions, as Debian builds it: stripped, so without DWARF, and
// without any signature. The entries that read no argument must attach;
// the one with a label must be refused for want of a signature.
const corpusBusinessConfig = `
runtime:
  interval: 1s
functions:
  - metric: prometheus_api_query_calls_total
    kind: count
    function: github.com/prometheus/prometheus/web/api/v1.(*API).query
  - metric: prometheus_api_query_duration_seconds
    function: github.com/prometheus/prometheus/web/api/v1.(*API).query
  - metric: prometheus_api_label_names_duration_seconds
    function: github.com/prometheus/prometheus/web/api/v1.(*API).labelNames
  - metric: prometheus_api_query_by_request_total
    kind: count
    function: github.com/prometheus/prometheus/web/api/v1.(*API).query
    labels: {method: r.Method}
`

// TestCorpusBusinessStripped runs Prometheus as bookworm (Go 1.19), trixie
// and sid ship it, sends a fixed list of API requests and checks the
// business metrics of its query and label-names handlers exactly.
func TestCorpusBusinessStripped(t *testing.T) {
	requireBPF(t)
	fetchCorpus(t)
	a := startAgent(t, corpusBusinessConfig)
	query := func(q string) corpusRequest { return corpusGet("/api/v1/query?query=" + q) }
	type step struct {
		r      corpusRequest
		times  int
		status int
		query  bool // served by (*API).query
		labels bool // served by (*API).labelNames
	}
	steps := []step{
		{query("up"), 5, 200, true, false},
		{query("up("), 2, 400, true, false},
		{corpusRequest{method: "POST", path: "/api/v1/query", body: "query=1", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 1, 200, true, false},
		{corpusGet("/api/v1/labels"), 3, 200, false, true},
		{corpusGet("/api/v1/status/buildinfo"), 2, 200, false, false},
	}
	for _, suite := range []string{"bookworm", "trixie", "sid"} {
		t.Run(suite, func(t *testing.T) {
			p := corpusProgramsByPkg["prometheus"]
			p.suite, p.pkg = suite, "prometheus"
			cp, bi := startCorpusProgram(t, a, p)
			t.Logf("prometheus from %s, built by %s", suite, bi.GoVersion)

			// Three entries attach; the labelled one is refused.
			var attached []string
			var errs []string
			waitFor(15*time.Second, func() bool {
				ts := a.findTarget(cp.pid)
				if ts == nil {
					return false
				}
				attached, errs = nil, nil
				for _, pr := range ts.Probes {
					if m, ok := strings.CutPrefix(pr.Family, "userfunc:"); ok {
						if pr.Error != "" {
							errs = append(errs, m+": "+pr.Error)
						} else {
							attached = append(attached, m)
						}
					}
				}
				return len(attached)+len(errs) == 4
			})
			if len(attached) != 3 || len(errs) != 1 || !strings.HasPrefix(errs[0], "prometheus_api_query_by_request_total: ") ||
				!strings.Contains(errs[0], "no DWARF") || !strings.Contains(errs[0], "labels.method") {
				t.Fatalf("attached %v, refused %v; want 3 attached and prometheus_api_query_by_request_total refused (no DWARF, labels.method needs a signature)", attached, errs)
			}

			if !waitFor(30*time.Second, func() bool {
				code, err := cp.do(corpusGet(p.ready))
				return err == nil && code/100 == 2
			}) {
				t.Fatalf("GET %s not 2xx within 30s", p.ready)
			}
			var queries, labels float64
			for _, s := range steps {
				for i := 0; i < s.times; i++ {
					code, body, err := cp.doBody(s.r)
					if err != nil || code != s.status {
						t.Fatalf("%s %s: %d %v, want %d: %.200s", s.r.method, s.r.path, code, err, s.status, body)
					}
				}
				if s.query {
					queries += float64(s.times)
				}
				if s.labels {
					labels += float64(s.times)
				}
			}
			want := []bizExpect{
				{"prometheus_api_query_calls_total", nil, map[string]float64{"": queries}},
				{"prometheus_api_query_duration_seconds", nil, map[string]float64{"": queries}},
				{"prometheus_api_label_names_duration_seconds", nil, map[string]float64{"": labels}},
			}
			waitBusiness(t, a, cp.service, want, 1)
			if !t.Failed() {
				t.Logf("exact: %v calls of (*API).query counted and timed, %v of (*API).labelNames timed", queries, labels)
			}
		})
	}
}
