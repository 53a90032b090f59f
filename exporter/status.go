package exporter

import (
	"html/template"
	"net/http"
	"sort"
	"strings"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// The status page is plain server-rendered HTML: no script, no external
// resource, no build step. The Content-Security-Policy below forbids
// anything else, so a browser reports any mistake as a console error.
var statusTemplate = template.Must(template.New("status").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>blindspot</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.err{color:#b00}td.n{text-align:right;font-variant-numeric:tabular-nums}
</style></head><body>
<h1>blindspot</h1>
<p>Zero-instrumentation metrics for the Go programs on this host (version {{.Version}}).</p>
<nav><a href="{{.MetricsLink}}">{{.TelemetryPath}}</a> · <a href="targets">/targets</a> · <a href="targets?state=skipped">skipped programs</a> · <a href="healthz">/healthz</a></nav>
{{with .Kubernetes}}<h2>Kubernetes</h2>
<p id="kubernetes" data-state="{{.State}}">Node {{.Node}}: {{if eq .State "connected"}}{{.Pods}} pods watched since {{.Since.Format "2006-01-02 15:04:05 MST"}}; series carry their pod's labels.{{else if eq .State "unreachable"}}<span class="err">the Kubernetes API is unreachable since {{.Since.Format "2006-01-02 15:04:05 MST"}}: {{.Error}}. Metrics go on without pod labels{{if .Pods}} for programs started since ({{.Pods}} pods known from before){{end}}.</span>{{else}}listing the node's pods (since {{.Since.Format "2006-01-02 15:04:05 MST"}}).{{end}}</p>
{{end}}<h2>Instrumented programs ({{len .Targets}})</h2>
<table id="targets"><tr><th>PID</th><th>Service</th><th>Executable</th><th>Go</th><th>Probes</th></tr>
{{range .Targets}}<tr class="target" data-pid="{{.PID}}"><td>{{.PID}}</td><td>{{.ServiceName}}{{with .Kubernetes}}<div>{{.k8s_namespace_name}}/{{.k8s_pod_name}}{{with .k8s_container_name}} ({{.}}){{end}}</div>{{end}}</td><td>{{.Exe}}</td><td>{{.GoVersion}}</td><td>
{{range .Probes}}<div>{{.Family}}{{if .Error}} <span class="err">error: {{.Error}}</span>{{else}}: <details><summary>{{len .Sites}} functions</summary>{{range .Sites}}<div>{{.}}</div>{{end}}</details>{{end}}{{range .Left}}<div class="err">left out: {{.}}</div>{{end}}</div>{{else}}none{{end}}</td></tr>
{{else}}<tr><td colspan="5">No Go program instrumented yet.</td></tr>
{{end}}</table>
<h2>Skipped programs ({{len .Skipped}})</h2>
<table id="skipped"><tr><th>PID</th><th>Executable</th><th>Reason</th></tr>
{{range .Skipped}}<tr><td>{{.PID}}</td><td>{{.Exe}}</td><td class="err">{{.Reason}}</td></tr>{{end}}
</table>
<h2>Errors</h2>
<table id="errors"><tr><th>Probe</th><th>Reason</th><th>Count</th></tr>
{{range .Errors}}<tr><td>{{.Probe}}</td><td>{{.Reason}}</td><td class="n">{{.Count}}</td></tr>{{else}}<tr><td colspan="3">None.</td></tr>{{end}}
</table>
<h2>Events and drops</h2>
<table id="events"><tr><th>Probe</th><th>Read</th><th>Lost (ring buffer full)</th><th>Invalid (not exported)</th></tr>
{{range .Events}}<tr><td>{{.Name}}</td><td class="n">{{.Read}}</td><td class="n">{{.Lost}}</td><td class="n{{if .Invalid}} err{{end}}">{{.Invalid}}{{range .InvalidBy}} <span>{{.Reason}}: {{.Count}}</span>{{end}}</td></tr>{{end}}
<tr><td>events naming no instrumented process</td><td></td><td class="n">{{.Unattributed}}</td><td></td></tr>
<tr><td>malformed events</td><td></td><td class="n">{{.Malformed}}</td><td></td></tr>
</table>
<h2>Series limits</h2>
<table id="overflow"><tr><th>Metric</th><th>Limit</th><th>Label sets folded into the overflow series</th></tr>
{{range .Overflow}}<tr><td>{{.Name}}</td><td class="n">{{.Limit}}</td><td class="n">{{.Count}}</td></tr>{{end}}
</table>
</body></html>
`))

type eventRow struct {
	Name                string
	Read, Lost, Invalid uint64
	InvalidBy           []reasonCount // the reasons with a count
}

type reasonCount struct {
	Reason string
	Count  uint64
}

type errorRow struct {
	Probe, Reason string
	Count         uint64
}

type overflowRow struct {
	Name         string
	Limit, Count uint64
}

func statusPage(state State, agg *aggregator.Aggregator, telemetryPath string, kubernetes func() KubernetesStatus) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		st := state.ProbeStats()
		var kube *KubernetesStatus
		if kubernetes != nil {
			k := kubernetes()
			kube = &k
		}
		var rows []eventRow
		for name, n := range st.Events {
			row := eventRow{Name: name, Read: n, Lost: st.Lost[name]}
			for reason, k := range st.Invalid[name] {
				if k != 0 {
					row.Invalid += k
					row.InvalidBy = append(row.InvalidBy, reasonCount{reason, k})
				}
			}
			sort.Slice(row.InvalidBy, func(i, j int) bool { return row.InvalidBy[i].Reason < row.InvalidBy[j].Reason })
			rows = append(rows, row)
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
		var errs []errorRow
		for k, n := range state.ProbeErrors() {
			errs = append(errs, errorRow{k.Probe, k.Reason, n})
		}
		sort.Slice(errs, func(i, j int) bool {
			return errs[i].Probe+"\x00"+errs[i].Reason < errs[j].Probe+"\x00"+errs[j].Reason
		})
		var over []overflowRow
		counts := agg.Overflows()
		for _, m := range agg.Metrics() {
			over = append(over, overflowRow{m.Name, uint64(m.Limit), counts[m.Name]})
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		statusTemplate.Execute(w, struct {
			Version                 string
			TelemetryPath           string
			MetricsLink             string // relative, so that a proxy may serve the agent under a prefix
			Targets                 []Target
			Skipped                 []Skipped
			Errors                  []errorRow
			Events                  []eventRow
			Unattributed, Malformed uint64
			Overflow                []overflowRow
			Kubernetes              *KubernetesStatus
		}{Version, telemetryPath, strings.TrimPrefix(telemetryPath, "/"), state.Targets(), state.Skipped(), errs, rows, st.Unattributed, st.Malformed, over, kube})
	})
}
