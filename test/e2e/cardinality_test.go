package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestUpstreamCardinality calls 1,000 distinct upstream hosts (127.0.X.Y,
// all refused at once) from one program with a series limit of 100: the
// HTTP client metric stays at 100 series plus one overflow series, every
// call is still counted, and blindspot_series_overflow_total counts the 900
// label sets that did not fit.
func TestUpstreamCardinality(t *testing.T) {
	requireBPF(t)
	httpVariants, _ := buildClientTargets(t)
	a := startAgent(t, "series_limit: 100\n")
	v := httpVariants[0]
	p := startLineProc(t, v.exe, fmt.Sprintf("e2e-fanout-%d", serviceSeq.Add(1)))
	p.waitLine(t, "upstreams ", 10*time.Second)
	a.waitTargeted(t, p.pid, 10*time.Second)
	p.send(t, "fanout 1000")
	p.waitLine(t, "fanout done", 60*time.Second)

	const metric = "http_client_request_duration_seconds"
	var series, total, overflow uint64
	waitFor(15*time.Second, func() bool {
		s, err := a.scrape()
		if err != nil {
			return false
		}
		series, total, overflow = 0, 0, 0
		for _, se := range s.histograms[metric] {
			if se.labels["service_name"] != p.service {
				continue
			}
			series++
			total += se.count
			if se.labels["otel_metric_overflow"] == "true" {
				overflow += se.count
			}
		}
		return total >= 1000
	})
	if total != 1000 {
		t.Fatalf("%d calls counted, want 1000", total)
	}
	if series != 101 {
		t.Errorf("%d series, want 100 and the overflow series", series)
	}
	if overflow != 900 {
		t.Errorf("overflow series holds %d calls, want 900", overflow)
	}
	s := a.mustScrape(t)
	if n, _ := s.value("blindspot_series_overflow_total", map[string]string{"metric": metric}); n != 900 {
		t.Errorf("blindspot_series_overflow_total{metric=%q} = %v, want 900", metric, n)
	}
}
