package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const promtoolPath = "/usr/bin/promtool"

// TestRulesPromtool runs promtool check rules on deploy/prometheus-rules.yaml
// and promtool test rules on deploy/tests/rules_test.yaml: synthetic series
// on which every alert must fire, beside series on which none may.
func TestRulesPromtool(t *testing.T) {
	promtool := requireTool(t, promtoolPath, "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "deploy/prometheus-rules.yaml"},
		{"test", "rules", "deploy/tests/rules_test.yaml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = env.repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record string `yaml:"record"`
			Alert  string `yaml:"alert"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.repoRoot, "deploy/prometheus-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	return rf
}

// recorded is the set of names the rule file records.
func (rf ruleFile) recorded() map[string]bool {
	out := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				out[r.Record] = true
			}
		}
	}
	return out
}

func (rf ruleFile) exprs() []string {
	var out []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			out = append(out, r.Expr)
		}
	}
	return out
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Editable      *bool  `json:"editable"`
	GraphTooltip  *int   `json:"graphTooltip"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *struct {
				Type string `json:"type"`
				UID  string `json:"uid"`
			} `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashPanel `json:"panels"`
}

type dashPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource *struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // of a collapsed row
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.repoRoot, "deploy/grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatal("deploy/grafana-dashboard.json is not valid JSON")
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

// dashboardExprs returns the dashboard's panel expressions and the metric
// selectors of its query variables (label_values(SELECTOR, label)).
func dashboardExprs(t *testing.T, d dashboard) (panels, variables []string) {
	t.Helper()
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				panels = append(panels, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: query: %v", v.Name, err)
		}
		inner, ok := strings.CutPrefix(q.Query, "label_values(")
		inner, ok2 := strings.CutSuffix(inner, ")")
		i := strings.LastIndex(inner, ",")
		if !ok || !ok2 || i < 0 {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q.Query)
			continue
		}
		variables = append(variables, strings.TrimSpace(inner[:i]))
	}
	return panels, variables
}

var (
	grafanaVar = regexp.MustCompile(`\$\{?\w+\}?`)
	// Parts of PromQL that hold label names, strings or durations, not
	// metric names: label matchers, grouping clauses, ranges.
	promBraces   = regexp.MustCompile(`\{[^{}]*\}`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promRange    = regexp.MustCompile(`\[[^\[\]]*\]`)
	promOffset   = regexp.MustCompile(`\boffset\s+-?[0-9][0-9a-z]*`)
	promString   = regexp.MustCompile(`"[^"]*"`)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
	promMatcher  = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*""`)
	promKeyword  = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
)

// grafanaToPromQL substitutes Grafana's variables with values PromQL parses.
func grafanaToPromQL(expr string) string {
	expr = strings.NewReplacer("$__rate_interval", "5m", "$__range", "1h", "$__interval", "1m").Replace(expr)
	return grafanaVar.ReplaceAllString(expr, "x")
}

// metricNames returns the metric names expr selects (not functions,
// keywords, labels or strings).
func metricNames(expr string) []string {
	s := promString.ReplaceAllString(expr, `""`)
	s = promBraces.ReplaceAllString(s, "{}")
	s = promRange.ReplaceAllString(s, "[]")
	s = promOffset.ReplaceAllString(s, "")
	s = promGrouping.ReplaceAllString(s, "")
	var out []string
	for _, m := range promIdent.FindAllString(s, -1) {
		if strings.HasSuffix(m, "(") || promKeyword[strings.ToLower(m)] {
			continue // a function or aggregation, or a keyword
		}
		out = append(out, m)
	}
	return out
}

// labelNames returns the label names expr matches on or groups by.
func labelNames(expr string) []string {
	s := promString.ReplaceAllString(expr, `""`)
	var out []string
	for _, m := range promMatcher.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	for _, m := range promGrouping.FindAllString(s, -1) {
		_, list, _ := strings.Cut(m, "(")
		for _, l := range strings.Split(strings.TrimSuffix(list, ")"), ",") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

// contractMetrics reads the metric names docs/metrics.md's tables declare.
func contractMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.repoRoot, "docs/metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	cell := regexp.MustCompile("`([a-z_:][a-z0-9_:]*)`")
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.SplitN(line[1:], "|", 2)[0]
		for _, m := range cell.FindAllStringSubmatch(first, -1) {
			out[m[1]] = true
		}
	}
	if len(out) < 20 {
		t.Fatalf("read only %d metric names from docs/metrics.md: %v", len(out), out)
	}
	return out
}

// baseName strips a histogram's series suffix when base is a known
// histogram; known reports whether name (or its base) is in set.
func inSet(name string, set map[string]bool) bool {
	if set[name] {
		return true
	}
	for _, suf := range []string{"_bucket", "_count", "_sum"} {
		if b, ok := strings.CutSuffix(name, suf); ok && set[b] {
			return true
		}
	}
	return false
}

// referencedMetrics returns every metric name the rules and the dashboard
// select, except the names the rule file records itself, each with where it
// is used.
func referencedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	rf := loadRules(t)
	rec := rf.recorded()
	d := loadDashboard(t)
	panels, vars := dashboardExprs(t, d)
	out := map[string][]string{}
	add := func(where, expr string) {
		for _, n := range metricNames(expr) {
			if rec[n] {
				continue
			}
			if strings.Contains(n, ":") {
				t.Errorf("%s uses %s, which no rule of deploy/prometheus-rules.yaml records", where, n)
				continue
			}
			out[n] = append(out[n], where)
		}
	}
	for _, e := range rf.exprs() {
		add("rules", e)
	}
	for _, e := range panels {
		add("dashboard", grafanaToPromQL(e))
	}
	for _, e := range vars {
		add("dashboard variable", grafanaToPromQL(e))
	}
	if len(out) < 20 {
		t.Fatalf("found only %d metric names in the rules and the dashboard: %v", len(out), out)
	}
	return out
}

// TestDashboardJSON checks deploy/grafana-dashboard.json without Grafana
// (Debian ships no Grafana package, and Grafana's dashboard schema is CUE,
// not a JSON Schema a test could load): valid JSON with the fields the
// dashboard kind requires (schemaVersion 39), every panel and target on the templated Prometheus data source,
// namespace and service variables, unique panel ids, every expression valid
// PromQL (promtool check rules on a rule file made of them), and every metric
// name it selects declared by the metric contract or recorded by the rules.
func TestDashboardJSON(t *testing.T) {
	promtool := requireTool(t, promtoolPath, "prometheus")
	// The name and label extraction the checks rely on.
	const probe = `sum by (http_route, le) (rate(a_bucket{x="y", z=~"$v"}[$__rate_interval])) / on (k) b and histogram_quantile(0.9, c) > bool 1`
	if got := metricNames(grafanaToPromQL(probe + " > d offset 5m")); strings.Join(got, " ") != "a_bucket b c d" {
		t.Fatalf("metricNames: %q", got)
	}
	if got := labelNames(grafanaToPromQL(probe)); strings.Join(got, " ") != "x z http_route le k" {
		t.Fatalf("labelNames: %q", got)
	}
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are required", d.UID, d.Title)
	}
	// Required by Grafana's dashboard kind (kinds/dashboard, CUE).
	if d.Editable == nil || d.GraphTooltip == nil || *d.GraphTooltip < 0 || *d.GraphTooltip > 2 {
		t.Errorf("editable %v, graphTooltip %v: both required, graphTooltip 0, 1 or 2", d.Editable, d.GraphTooltip)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: want >= 36 (data source references by uid)", d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s: data source %+v, want uid ${datasource}", v.Name, v.Datasource)
		}
	}
	for name, typ := range map[string]string{"datasource": "datasource", "namespace": "query", "service": "query"} {
		if vars[name] != typ {
			t.Errorf("template variable %s: type %q, want %q", name, vars[name], typ)
		}
	}
	ids := map[int]string{}
	var exprs []string
	var check func(ps []dashPanel)
	check = func(ps []dashPanel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("panel %q: id %d (also %q)", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
			}
			if p.Type == "row" {
				check(p.Panels)
				continue
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: data source %+v, want prometheus ${datasource}", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q target %s: data source %+v", p.Title, tg.RefID, tg.Datasource)
				}
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q target %s: empty expr", p.Title, tg.RefID)
				}
				exprs = append(exprs, tg.Expr)
			}
		}
	}
	check(d.Panels)
	_, varExprs := dashboardExprs(t, d)
	exprs = append(exprs, varExprs...)

	// Every expression parses: promtool checks them as recording rules.
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, e := range exprs {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:expr_%d", i), Expr: grafanaToPromQL(e)})
	}
	doc := map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard-exprs.yaml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("dashboard expressions do not parse: %v\n%s\n%s", err, out, b)
	}

	// Every metric name is the contract's (the scrape test checks them
	// against a real agent).
	contract := contractMetrics(t)
	for name, where := range referencedMetrics(t) {
		if !inSet(name, contract) {
			t.Errorf("%s (used by %v) is not in docs/metrics.md", name, where)
		}
	}
}

// contractOnly are metric families the scrape test does not produce: the
// HTTP client and database/sql families need their own targets (the
// database one a database server, the pool metrics a saturated pool), and
// blindspot_probe_errors_total has series only once a probe failed.
// TestDashboardJSON checks them against docs/metrics.md instead.
var contractOnly = []string{
	"blindspot_probe_errors_total",
	"http_client_request_duration_seconds",
	"db_client_operation_duration_seconds",
	"db_client_connection_count",
	"db_client_connection_max",
	"db_client_connection_pending_requests",
	"db_client_connection_wait_time_seconds",
}

// TestRulesMetricsScraped drives the HTTP server target (2xx, 4xx, 5xx, a
// panic and slow requests) and the goroutines target (forced GC cycles)
// under a real agent and checks that every metric name the rules and the
// dashboard select is in its /metrics, except the contractOnly families.
func TestRulesMetricsScraped(t *testing.T) {
	requireBPF(t)
	v := variantByName(t, "go126-plain")
	a := startAgent(t, "")
	tp := startTarget(t, v.exe, uniqueService("rules", v))
	a.waitTargeted(t, tp.pid, 10*time.Second)
	for i := 0; i < 20; i++ {
		for _, path := range []string{"/items/1", "/teapot", "/fail", "/panic"} {
			if _, _, err := tp.doFresh("GET", path); err != nil && path != "/panic" {
				t.Fatalf("GET %s: %v", path, err)
			}
		}
	}
	driveSlow(t, tp, 5, 600)
	// GC pauses: the goroutines target forces cycles on demand.
	gs, skipped, err := buildMatrix(env.ctx, []matrixBuild{{"goroutines", "plain", 26}})
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) > 0 {
		t.Skip(skipped)
	}
	gp := startTarget(t, gs[0].exe, uniqueService("rules-rt", gs[0]))
	a.waitTargeted(t, gp.pid, 10*time.Second)
	gp.number(t, "/gc?n=3")

	refs := referencedMetrics(t)
	skip := map[string]bool{}
	for _, n := range contractOnly {
		skip[n] = true
	}
	var missing []string
	var s *scrape
	waitFor(15*time.Second, func() bool {
		s = a.mustScrape(t)
		missing = missing[:0]
		for name := range refs {
			if inSet(name, skip) {
				continue
			}
			if !scraped(s, name) {
				missing = append(missing, name)
			}
		}
		return len(missing) == 0
	})
	if len(missing) > 0 {
		sort.Strings(missing)
		var have []string
		for n := range s.gauges {
			have = append(have, n)
		}
		for n := range s.histograms {
			have = append(have, n+" (histogram)")
		}
		sort.Strings(have)
		t.Errorf("not in a real scrape: %v\nthe scrape has: %v", missing, have)
	}
	checkLabelsScraped(t, s)
	// The service's own series are there, the 5xx among them.
	var fives uint64
	for k, se := range s.httpSeries(t, tp.service) {
		if strings.HasPrefix(k.Status, "5") {
			fives += se.count
		}
	}
	if fives == 0 {
		t.Errorf("no 5xx series for %s", tp.service)
	}
}

// scraped reports whether name, or the histogram it is a series of, is in s.
func scraped(s *scrape, name string) bool {
	if _, ok := s.gauges[name]; ok {
		return true
	}
	if _, ok := s.histograms[name]; ok {
		return true
	}
	for _, suf := range []string{"_bucket", "_count", "_sum"} {
		if b, ok := strings.CutSuffix(name, suf); ok {
			if _, ok := s.histograms[b]; ok {
				return true
			}
		}
	}
	return false
}

// checkLabelsScraped checks that every label name the rules and the
// dashboard match on or group by is on some series of s, or, for labels of
// the contractOnly families, in their rows of docs/metrics.md.
func checkLabelsScraped(t *testing.T, s *scrape) {
	t.Helper()
	// Prometheus's own target labels, and the contract's resource labels
	// that exist only where known (service_namespace: Kubernetes) or asked
	// for (service_instance_id).
	ok := map[string]bool{"job": true, "instance": true, "__name__": true, "service_namespace": true, "service_instance_id": true}
	// The business rules' outcome label, on entries a user declares (none
	// in this scrape): TestScenarios scrapes it and sees those alerts fire.
	ok["status"] = true
	for _, fam := range []map[string][]series{s.gauges, s.histograms} {
		for _, ss := range fam {
			for _, se := range ss {
				for l := range se.labels {
					ok[l] = true
				}
			}
		}
	}
	ok["le"] = len(s.histograms) > 0 // the text parser folds le into buckets
	doc, err := os.ReadFile(filepath.Join(env.repoRoot, "docs/metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	token := regexp.MustCompile("`([a-z_]+)`")
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		for _, n := range contractOnly {
			if strings.Contains(line, "`"+n+"`") {
				for _, m := range token.FindAllStringSubmatch(line, -1) {
					ok[m[1]] = true
				}
			}
		}
	}
	rf := loadRules(t)
	panels, vars := dashboardExprs(t, loadDashboard(t))
	exprs := append(rf.exprs(), panels...)
	exprs = append(exprs, vars...)
	for _, e := range exprs {
		for _, l := range labelNames(grafanaToPromQL(e)) {
			if !ok[l] {
				t.Errorf("label %s (in %s) is neither in a real scrape nor on a contract-only family", l, e)
			}
		}
	}
}
