package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// bizBuilds are the business target's builds: every release stripped, and
// Go 1.26 and 1.19 with DWARF too.
var bizBuilds struct {
	once     sync.Once
	err      error
	variants []variant
	skipped  []string
	shop     string // the example shop service (Go 1.26)
}

// businessVariants builds test/targets/business (and test/targets/shop)
// once per package run.
func businessVariants(t *testing.T) []variant {
	t.Helper()
	bizBuilds.once.Do(func() {
		// Go 1.26 with DWARF first: single-variant tests take vs[0].
		want := []matrixBuild{{"business", "plain", 26}, {"business", "plain", 19}}
		want = append(want, perRelease("business", "stripped")...)
		bizBuilds.variants, bizBuilds.skipped, bizBuilds.err = buildMatrix(env.ctx, want)
		if bizBuilds.err != nil {
			return
		}
		shop := filepath.Join(env.dir, "shop")
		if _, err := runGo(env.ctx, goCommand(), filepath.Join(env.repoRoot, "test", "targets", "shop"), "build", "-o", shop, "."); err != nil {
			bizBuilds.err = err
			return
		}
		bizBuilds.shop = shop
	})
	if bizBuilds.err != nil {
		t.Fatalf("build business targets: %v", bizBuilds.err)
	}
	requireMatrix(t, bizBuilds.skipped)
	return bizBuilds.variants
}

// configPath is the --config file an agent was started with.
func (a *agentProc) configPath() string {
	for i, arg := range a.cmd.Args {
		if arg == "--config" && i+1 < len(a.cmd.Args) {
			return a.cmd.Args[i+1]
		}
	}
	return ""
}

// rewriteConfig replaces the agent's configuration file's extra part.
func (a *agentProc) rewriteConfig(t *testing.T, extra string) {
	t.Helper()
	p := a.configPath()
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte(agentConfig(extra)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// seriesKey renders a series' labels (without service_name) for messages
// and map keys: "a=x,b=y".
func labelKey(labels map[string]string, names ...string) string {
	var parts []string
	for _, n := range names {
		parts = append(parts, n+"="+labels[n])
	}
	return strings.Join(parts, ",")
}

// counts returns, for the metric name (histogram or counter) of one
// service, the count per label key.
func (s *scrape) counts(name, service string, names ...string) map[string]float64 {
	out := map[string]float64{}
	for _, se := range s.histograms[name] {
		if se.labels["service_name"] == service {
			out[labelKey(se.labels, names...)] += float64(se.count)
		}
	}
	for _, se := range s.gauges[name] {
		if se.labels["service_name"] == service {
			out[labelKey(se.labels, names...)] += se.sum
		}
	}
	return out
}

func sumCounts(m map[string]float64) float64 {
	var n float64
	for _, v := range m {
		n += v
	}
	return n
}
