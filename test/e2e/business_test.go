package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// businessConfig measures every function of test/targets/business. The
// signatures are given so that stripped builds work; with DWARF they are
// checked against it.
const businessConfig = `
functions:
  - metric: order_process_duration_seconds
    kind: duration
    function: main.(*Shop).ProcessOrder
    signature: "func(ctx context.Context, orderType string, qty int) error"
    labels: {order_type: orderType}
    outcome: status
  - metric: payment_retry_total
    kind: count
    function: main.(*Gateway).Retry
    signature: "func(gateway string, attempt int) bool"
    labels: {gateway: gateway}
    outcome: status
  - metric: payment_attempt_total
    kind: count
    function: main.(*Gateway).Retry
    signature: "func(gateway string, attempt int) bool"
    labels: {gateway: gateway, attempt: attempt}
  - metric: mixed_duration_seconds
    function: main.Mixed
    signature: "func(note string, items []string, meta any, region string, priority int, vip bool) error"
    labels: {region: region, priority: priority, vip: vip}
  - metric: spill_calls_total
    kind: count
    function: main.Spill
    signature: "func(a, b, c, d, e, f, g, h, i, j int, k string, code int8) int"
    labels: {j: j, k: k, code: code}
  - metric: charge_duration_seconds
    function: main.Charge
    signature: "func(o *struct{ID int64; Type string; Qty int32; Customer *struct{Name string; Tier int}}) error"
    labels: {order_type: o.Type, tier: o.Customer.Tier, qty: "o.Qty@24:int32"}
    outcome: status
  - metric: ship_calls_total
    kind: count
    function: main.Ship
    signature: "func(w uint16, fast bool)"
    labels: {weight: w, fast: fast}
  - metric: explode_duration_seconds
    function: main.Explode
    signature: "func(n int) error"
    outcome: status
  - metric: walk_duration_seconds
    function: main.Walk
    signature: "func(depth int) int"
  - metric: tag_calls_total
    kind: count
    function: main.Tag
    signature: "func(id int)"
    labels: {id: id}
    series_limit: 5
`

type bizExpect struct {
	metric string
	labels []string
	want   map[string]float64
}

// businessExpected is what one /run of the business target produces.
var businessExpected = []bizExpect{
	{"order_process_duration_seconds", []string{"order_type", "status"}, map[string]float64{
		"order_type=retail,status=success": 5, "order_type=wholesale,status=success": 3, "order_type=retail,status=error": 2}},
	{"payment_retry_total", []string{"gateway", "status"}, map[string]float64{
		"gateway=stripe,status=success": 2, "gateway=stripe,status=error": 2, "gateway=paypal,status=error": 1}},
	{"payment_attempt_total", []string{"gateway", "attempt"}, map[string]float64{
		"gateway=stripe,attempt=1": 1, "gateway=stripe,attempt=2": 1, "gateway=stripe,attempt=3": 1, "gateway=stripe,attempt=4": 1, "gateway=paypal,attempt=1": 1}},
	{"mixed_duration_seconds", []string{"region", "priority", "vip"}, map[string]float64{
		"region=eu,priority=7,vip=true": 3, "region=us,priority=-2,vip=false": 1}},
	{"spill_calls_total", []string{"j", "k", "code"}, map[string]float64{
		"j=10,k=kilo,code=-3": 2, "j=10,k=x,code=5": 1}},
	{"charge_duration_seconds", []string{"order_type", "tier", "qty", "status"}, map[string]float64{
		"order_type=express,tier=3,qty=1,status=success": 2, "order_type=standard,tier=1,qty=0,status=error": 1}},
	{"ship_calls_total", []string{"weight", "fast"}, map[string]float64{
		"weight=65535,fast=true": 1, "weight=7,fast=false": 2}},
	// n = 1, 3, 5 panic (recovered by the caller): not counted.
	{"explode_duration_seconds", []string{"status"}, map[string]float64{"status=success": 2, "status=error": 1}},
	// Walk(3) and Walk(5): recursive inner calls are not counted.
	{"walk_duration_seconds", nil, map[string]float64{"": 2}},
	// 8 distinct ids, 5 series allowed: 3 in the overflow series.
	{"tag_calls_total", []string{"id", "otel_metric_overflow"}, map[string]float64{
		"id=0,otel_metric_overflow=": 1, "id=1,otel_metric_overflow=": 1, "id=2,otel_metric_overflow=": 1, "id=3,otel_metric_overflow=": 1,
		"id=4,otel_metric_overflow=": 1, "id=,otel_metric_overflow=true": 3}},
}

func scaled(m map[string]float64, k float64) map[string]float64 {
	out := map[string]float64{}
	for key, v := range m {
		out[key] = v * k
	}
	return out
}

func dumpCounts(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  {%s} %v\n", k, m[k])
	}
	return b.String()
}

// waitBusiness waits until every expected metric of service has its
// expected total, then checks every series exactly.
func waitBusiness(t *testing.T, a *agentProc, service string, exp []bizExpect, times float64) {
	t.Helper()
	var s *scrape
	ok := waitFor(15*time.Second, func() bool {
		var err error
		if s, err = a.scrape(); err != nil {
			return false
		}
		for _, e := range exp {
			if sumCounts(s.counts(e.metric, service, e.labels...)) < sumCounts(e.want)*times {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond) // anything extra would show now
	s = a.mustScrape(t)
	for _, e := range exp {
		got := s.counts(e.metric, service, e.labels...)
		want := scaled(e.want, times)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s of %s (waited: %v):\n got\n%s want\n%s", e.metric, service, ok, dumpCounts(got), dumpCounts(want))
		}
	}
}

// waitUserProbes waits until pid's business probes are all attached
// without error and returns them.
func waitUserProbes(t *testing.T, a *agentProc, pid int, want int) []string {
	t.Helper()
	var sites, errs []string
	ok := waitFor(15*time.Second, func() bool {
		ts := a.findTarget(pid)
		if ts == nil {
			return false
		}
		sites, errs = nil, nil
		for _, p := range ts.Probes {
			if !strings.HasPrefix(p.Family, "userfunc:") {
				continue
			}
			if p.Error != "" {
				errs = append(errs, p.Family+": "+p.Error)
			} else {
				sites = append(sites, p.Family)
			}
		}
		return len(sites)+len(errs) >= want
	})
	if !ok || len(errs) > 0 || len(sites) != want {
		t.Fatalf("business probes of %d: %d attached %v, errors %v (want %d)", pid, len(sites), sites, errs, want)
	}
	return sites
}

func TestBusinessExactCounts(t *testing.T) {
	requireBPF(t)
	vs := businessVariants(t)
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			a := startAgent(t, businessConfig)
			svc := uniqueService("biz", v)
			tp := startTarget(t, v.exe, svc)
			a.waitTargeted(t, tp.pid, 15*time.Second)
			waitUserProbes(t, a, tp.pid, len(businessExpected))
			if code, body, err := tp.do("GET", "/run"); err != nil || code != 200 {
				t.Fatalf("/run: %d %s %v", code, body, err)
			}
			waitBusiness(t, a, svc, businessExpected, 1)
			s := a.mustScrape(t)
			if n, _ := s.value("blindspot_series_overflow_total", map[string]string{"metric": "tag_calls_total"}); n != 3 {
				t.Errorf("blindspot_series_overflow_total{metric=tag_calls_total} = %v, want 3", n)
			}
			// A second run: the panics left nothing behind that corrupts
			// later calls on the same goroutines.
			if code, body, err := tp.do("GET", "/run"); err != nil || code != 200 {
				t.Fatalf("/run: %d %s %v", code, body, err)
			}
			exp := businessExpected[:len(businessExpected)-1] // tag: overflow differs
			waitBusiness(t, a, svc, exp, 2)
		})
	}
}

// TestBusinessReload changes the functions: section while the agent and
// the target run: an unchanged entry keeps counting, a removed one goes, a
// new one comes; bad entries are reported and skipped.
func TestBusinessReload(t *testing.T) {
	requireBPF(t)
	vs := businessVariants(t)
	v := vs[0]
	svc := uniqueService("bizreload", v)
	ship := `
  - metric: ship_calls_total
    kind: count
    function: main.Ship
    signature: "func(w uint16, fast bool)"
    labels: {weight: w, fast: fast}
`
	walk := `
  - metric: walk_duration_seconds
    function: main.Walk
`
	bad := fmt.Sprintf(`
  - metric: payment_retry_count
    kind: count
    function: main.(*Gateway).Retry
  - metric: shipping_duration_seconds
    service: %q
    function: main.Shipp
  - metric: ship_weight_duration_seconds
    service: %q
    function: main.Ship
    labels: {weight: weight}
`, svc, svc)
	a := startAgent(t, "functions:"+ship+walk+bad)
	tp := startTarget(t, v.exe, svc)
	a.waitTargeted(t, tp.pid, 15*time.Second)
	// Two good entries attach; the two bad ones for this service show their
	// errors in /targets.
	var errs []string
	waitFor(15*time.Second, func() bool {
		ts := a.findTarget(tp.pid)
		errs = nil
		n := 0
		if ts != nil {
			for _, p := range ts.Probes {
				if strings.HasPrefix(p.Family, "userfunc:") {
					n++
					if p.Error != "" {
						errs = append(errs, p.Error)
					}
				}
			}
		}
		return n == 4
	})
	joined := strings.Join(errs, "\n")
	if len(errs) != 2 || !strings.Contains(joined, `did you mean main.Ship`) || !strings.Contains(joined, `no parameter "weight" (parameters: w, fast)`) {
		t.Errorf("errors in /targets:\n%s", joined)
	}
	if !strings.Contains(a.stderr.String(), `functions[2] (payment_retry_count): metric \"payment_retry_count\": a counter's name ends with _total (e.g. \"payment_retry_total\")`) {
		t.Errorf("no clear error for payment_retry_count in the log:\n%s", a.stderr.String())
	}
	s := a.mustScrape(t)
	if n, _ := s.value("blindspot_probe_errors_total", map[string]string{"probe": "userfunc", "reason": "invalid_config"}); n != 1 {
		t.Errorf("blindspot_probe_errors_total{probe=userfunc,reason=invalid_config} = %v, want 1", n)
	}
	if n, _ := s.value("blindspot_probe_errors_total", map[string]string{"probe": "userfunc", "reason": "attach_failed"}); n != 2 {
		t.Errorf("blindspot_probe_errors_total{probe=userfunc,reason=attach_failed} = %v, want 2", n)
	}

	exp := map[string]bizExpect{}
	for _, e := range businessExpected {
		exp[e.metric] = e
	}
	tp.do("GET", "/run")
	waitBusiness(t, a, svc, []bizExpect{exp["ship_calls_total"], exp["walk_duration_seconds"]}, 1)

	// Remove walk, add tag (through a file change).
	tag := `
  - metric: tag_calls_total
    kind: count
    function: main.Tag
    labels: {id: id}
    signature: "func(id int)"
`
	a.rewriteConfig(t, "functions:"+ship+tag)
	if !waitFor(15*time.Second, func() bool {
		ts := a.findTarget(tp.pid)
		if ts == nil {
			return false
		}
		var fams []string
		for _, p := range ts.Probes {
			if p.Error == "" {
				fams = append(fams, p.Family)
			}
		}
		j := strings.Join(fams, ",")
		return strings.Contains(j, "userfunc:tag_calls_total") && !strings.Contains(j, "walk")
	}) {
		t.Fatalf("reload not seen in /targets: %+v", a.findTarget(tp.pid))
	}
	tp.do("GET", "/run")
	tagAll := bizExpect{"tag_calls_total", []string{"id"}, map[string]float64{}}
	for i := 0; i < 8; i++ {
		tagAll.want[fmt.Sprintf("id=%d", i)] = 1
	}
	waitBusiness(t, a, svc, []bizExpect{exp["ship_calls_total"]}, 2) // kept counting
	waitBusiness(t, a, svc, []bizExpect{tagAll}, 1)
	if s := a.mustScrape(t); len(s.histograms["walk_duration_seconds"]) != 0 {
		t.Errorf("walk_duration_seconds still exported after its entry was removed")
	}

	// SIGHUP reloads too (here: the same file, nothing changes).
	a.cmd.Process.Signal(syscall.SIGHUP)
	if !waitFor(10*time.Second, func() bool { return strings.Contains(a.stderr.String(), "why=SIGHUP") }) {
		t.Errorf("no reload on SIGHUP:\n%s", a.stderr.String())
	}
	tp.do("GET", "/run")
	waitBusiness(t, a, svc, []bizExpect{exp["ship_calls_total"]}, 3)
	waitBusiness(t, a, svc, []bizExpect{tagAll}, 2)
	if !tp.alive() {
		t.Fatalf("target died")
	}
}

// TestBusinessExample runs the agent with exactly deploy/business-example.yaml
// against the example shop service and checks the article's metrics.
func TestBusinessExample(t *testing.T) {
	requireBPF(t)
	businessVariants(t)
	example, err := os.ReadFile(filepath.Join(env.repoRoot, "deploy", "business-example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The example as shipped, limited to this test's program: an agent
	// without a filter would instrument every Go program on the host.
	cfg := filepath.Join(t.TempDir(), "business-example.yaml")
	example = append(example, fmt.Sprintf("\ninclude:\n  - exe: %q\n", bizBuilds.shop)...)
	if err := os.WriteFile(cfg, example, 0o644); err != nil {
		t.Fatal(err)
	}
	a := &agentProc{t: t, addr: freePort(t), stderr: &syncBuffer{}, done: make(chan struct{})}
	a.cmd = exec.Command(env.agent, "--web.listen-address", a.addr, "--config", cfg)
	a.cmd.Stdout, a.cmd.Stderr = a.stderr, a.stderr
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.err = a.cmd.Wait(); close(a.done) }()
	stopAtDeadline(a.cmd.Process, a.done)
	t.Cleanup(func() {
		a.stop(syscall.SIGTERM, 10*time.Second)
		if t.Failed() {
			t.Logf("agent output:\n%s", a.stderr.String())
		}
	})
	if !waitFor(15*time.Second, func() bool { b, err := a.get("/healthz"); return err == nil && strings.TrimSpace(string(b)) == "ok" }) {
		t.Fatalf("agent not healthy:\n%s", a.stderr.String())
	}
	tp := startTarget(t, bizBuilds.shop, "shop")
	a.waitTargeted(t, tp.pid, 20*time.Second)
	waitUserProbes(t, a, tp.pid, 5)
	for i := 0; i < 4; i++ {
		if code, body, err := tp.do("POST", fmt.Sprintf("/orders?type=retail&qty=%d", i+1)); err != nil || code != 200 {
			t.Fatalf("order: %d %s %v", code, body, err)
		}
	}
	if code, _, err := tp.do("POST", "/orders?type=wholesale&qty=0"); err != nil || code != 500 {
		t.Fatalf("bad order: %d %v", code, err)
	}
	exp := []bizExpect{
		{"order_process_duration_seconds", []string{"order_type", "status"}, map[string]float64{
			"order_type=retail,status=success": 4, "order_type=wholesale,status=error": 1}},
		// every order's payment: the stripe gateway needs 2 attempts
		{"payment_retry_total", []string{"gateway"}, map[string]float64{"gateway=stripe": 8}},
		{"risk_rule_eval_duration_seconds", []string{"rule", "status"}, map[string]float64{
			"rule=velocity,status=success": 5, "rule=amount_limit,status=success": 4, "rule=amount_limit,status=error": 1}},
		{"inventory_sync_duration_seconds", []string{"warehouse", "status"}, map[string]float64{"warehouse=eu-west,status=success": 4}},
		{"api_aggregate_upstream_latency_seconds", []string{"downstream", "status"}, map[string]float64{
			"downstream=pricing,status=success": 4, "downstream=loyalty,status=success": 4}},
	}
	waitBusiness(t, a, "shop", exp, 1)
}
