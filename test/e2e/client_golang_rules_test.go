package e2e

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const clientGolangRules = "deploy/client-golang-rules.yaml"

// TestClientGolangRulesPromtool runs promtool check rules on
// deploy/client-golang-rules.yaml and promtool test rules on its unit
// tests, and checks that every series the rules select is one of the
// metric contract (docs/metrics.md): a renamed metric must take the rules
// along.
func TestClientGolangRulesPromtool(t *testing.T) {
	promtool := requireTool(t, promtoolPath, "prometheus")
	for _, args := range [][]string{
		{"check", "rules", clientGolangRules},
		{"test", "rules", "deploy/tests/client_golang_rules_test.yaml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = env.repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	contract := contractMetrics(t)
	rf := loadRuleFile(t, clientGolangRules)
	rec := rf.recorded()
	for _, want := range []string{"go_goroutines", "go_gc_duration_seconds", "go_gc_duration_seconds_sum", "go_gc_duration_seconds_count",
		"go_memstats_next_gc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"} {
		if !rec[want] {
			t.Errorf("%s records no %s", clientGolangRules, want)
		}
	}
	for _, e := range rf.exprs() {
		for _, n := range metricNames(e) {
			if !inSet(n, contract) && n != "blindspot_target_info" {
				t.Errorf("%s selects %s, which docs/metrics.md does not declare", clientGolangRules, n)
			}
		}
	}
}

func loadRuleFile(t *testing.T, path string) ruleFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.repoRoot, path))
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	return rf
}

// TestClientGolangRulesAgainstTheProgram runs the rules in a real
// Prometheus that scrapes both the agent and, directly, a program that
// exports client_golang's own metrics (the Prometheus Pushgateway as Debian
// sid ships it): the recorded series must say what the program says.
func TestClientGolangRulesAgainstTheProgram(t *testing.T) {
	requireBPF(t)
	prom := requireTool(t, "/usr/bin/prometheus", "prometheus")
	fetchCorpus(t)
	a := startAgent(t, "runtime:\n  interval: 200ms\n")
	p := corpusProgramsByPkg["prometheus-pushgateway"]
	p.suite, p.pkg = "sid", "prometheus-pushgateway"
	cp, bi := startCorpusProgram(t, a, p)
	rules := filepath.Join(env.repoRoot, clientGolangRules)
	ps := startPrometheus(t, prom, fmt.Sprintf(`  - job_name: blindspot
    static_configs: [{targets: [%q]}]
  - job_name: direct
    static_configs: [{targets: [%q]}]
rule_files: [%q]
`, a.addr, cp.addr, rules))
	job := fmt.Sprintf(`job=%q`, cp.service)

	// Exact: set by the test's environment (GOMAXPROCS=3, GOGC=150) and
	// the binary.
	ps.waitQuery(t, `go_sched_gomaxprocs_threads{`+job+`}`, 20*time.Second, func(v float64) bool { return v == 3 })
	ps.waitQuery(t, `go_gc_gogc_percent{`+job+`}`, 10*time.Second, func(v float64) bool { return v == 150 })
	for _, name := range []string{"go_sched_gomaxprocs_threads", "go_gc_gogc_percent"} {
		v := ps.waitQuery(t, name+`{`+job+`} == on() `+name+`{job="direct"}`, 10*time.Second, func(float64) bool { return true })
		t.Logf("%s: %v recorded, the same as the program's own", name, v)
	}
	ps.waitQuery(t, fmt.Sprintf(`count(go_info{%s,version=%q})`, job, bi.GoVersion), 10*time.Second, func(v float64) bool { return v == 1 })
	ps.waitQuery(t, fmt.Sprintf(`count(go_info{job="direct",version=%q})`, bi.GoVersion), 10*time.Second, func(v float64) bool { return v == 1 })
	if v, _, _ := ps.query(fmt.Sprintf(`count(go_info{%s,instance=~".+:%d"})`, job, cp.pid)); v != 1 {
		t.Errorf("go_info of the process: instance is not host:%d", cp.pid)
	}

	// Close: sampled at other moments than the program's own scrape.
	type near struct {
		name string
		ok   func(recorded, direct float64) bool
		why  string
	}
	for _, c := range []near{
		{"go_goroutines", func(r, d float64) bool { return math.Abs(r-d) <= 10+0.25*d }, "within 10 + 25%"},
		{"process_open_fds", func(r, d float64) bool { return math.Abs(r-d) <= 10 }, "within 10"},
		{"process_resident_memory_bytes", func(r, d float64) bool { return r > 0.75*d && r < 1.25*d }, "within 25%"},
		{"process_virtual_memory_bytes", func(r, d float64) bool { return r > 0.9*d && r < 1.1*d }, "within 10%"},
		{"process_cpu_seconds_total", func(r, d float64) bool { return math.Abs(r-d) <= 1.5 }, "within 1.5 s"},
		{"go_memstats_next_gc_bytes", func(r, d float64) bool { return r > 0.75*d && r < 1.25*d }, "within 25% (no GOMEMLIMIT)"},
	} {
		var r, d float64
		var rok, dok bool
		good := waitFor(15*time.Second, func() bool {
			r, rok, _ = ps.query(c.name + `{` + job + `}`)
			d, dok, _ = ps.query(c.name + `{job="direct"}`)
			return rok && dok && c.ok(r, d)
		})
		if !good {
			t.Errorf("%s: recorded %v (present %v), the program's own %v (present %v); want them %s", c.name, r, rok, d, dok, c.why)
		} else {
			t.Logf("%s: recorded %v, the program's own %v", c.name, r, d)
		}
	}
	// Quantiles exist once the 5m window holds a GC cycle: push enough
	// metrics to the Pushgateway (≈1.5 MB each) to make it collect.
	var body strings.Builder
	for i := 0; i < 40000; i++ {
		fmt.Fprintf(&body, "e2e_gc_push{n=\"%d\"} %d\n", i, i)
	}
	before, _, _ := ps.query(`go_gc_duration_seconds_count{job="direct"}`)
	for i := 0; i < 20; i++ {
		if code, _, err := cp.doBody(corpusRequest{method: "PUT", path: fmt.Sprintf("/metrics/job/gc%d", i%2), body: body.String()}); err != nil || code/100 != 2 {
			t.Fatalf("push: %d %v", code, err)
		}
		if n, ok, _ := ps.query(`go_gc_duration_seconds_count{job="direct"}`); ok && n >= before+2 {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	var qs []float64
	for _, q := range []string{"0.25", "0.5", "0.75", "1"} {
		qs = append(qs, ps.waitQuery(t, fmt.Sprintf(`go_gc_duration_seconds{%s,quantile=%q}`, job, q), 20*time.Second, func(v float64) bool { return v > 0 }))
	}
	for i := 1; i < len(qs); i++ {
		if qs[i] < qs[i-1] {
			t.Errorf("go_gc_duration_seconds quantiles decrease: %v", qs)
		}
	}
	// Once both have scraped after the last cycle, count and sum are the
	// program's own exactly: both come from the runtime's pause ring
	// (client_golang through debug.ReadGCStats).
	var rc, dc, rs, ds float64
	same := waitFor(20*time.Second, func() bool {
		rc, _, _ = ps.query(`go_gc_duration_seconds_count{` + job + `}`)
		dc, _, _ = ps.query(`go_gc_duration_seconds_count{job="direct"}`)
		rs, _, _ = ps.query(`go_gc_duration_seconds_sum{` + job + `}`)
		ds, _, _ = ps.query(`go_gc_duration_seconds_sum{job="direct"}`)
		return rc == dc && rc > 0 && math.Abs(rs-ds) < 1e-9
	})
	if !same {
		t.Errorf("go_gc_duration_seconds count/sum: recorded %v / %v, the program's own %v / %v", rc, rs, dc, ds)
	}
	// For scale only: the program's summary covers its last 256 cycles
	// (start-up included), the recorded quantiles the last 5 minutes.
	own, _, _ := ps.query(`go_gc_duration_seconds{job="direct",quantile="1"}`)
	t.Logf("go_gc_duration_seconds: %v cycles, %v s in all, the same as the program's; quantiles 0.25..1 recorded %v, the program's own maximum %v", rc, rs, qs, own)
}
