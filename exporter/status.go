package exporter

import (
	"html/template"
	"net/http"
	"sort"
)

var statusTemplate = template.Must(template.New("status").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>blindspot</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.err{color:#b00}
</style></head><body>
<h1>blindspot</h1>
<p>Zero-instrumentation metrics for the Go programs on this host.
<a href="metrics">/metrics</a> · <a href="targets">/targets</a> · <a href="targets?state=skipped">skipped programs</a> · <a href="healthz">/healthz</a></p>
<h2>Instrumented programs ({{len .Targets}})</h2>
<table id="targets"><tr><th>PID</th><th>Service</th><th>Executable</th><th>Go</th><th>Probes</th></tr>
{{range .Targets}}<tr><td>{{.PID}}</td><td>{{.ServiceName}}</td><td>{{.Exe}}</td><td>{{.GoVersion}}</td><td>
{{range .Probes}}<div>{{.Family}}{{if .Error}} <span class="err">error: {{.Error}}</span>{{else}}: {{len .Sites}} functions{{end}}</div>{{end}}</td></tr>
{{end}}</table>
<h2>Skipped programs ({{len .Skipped}})</h2>
<table id="skipped"><tr><th>PID</th><th>Executable</th><th>Reason</th></tr>
{{range .Skipped}}<tr><td>{{.PID}}</td><td>{{.Exe}}</td><td class="err">{{.Reason}}</td></tr>{{end}}
</table>
<h2>Events</h2>
<table id="events"><tr><th>Probe</th><th>Read</th><th>Lost</th></tr>
{{range .Events}}<tr><td>{{.Name}}</td><td>{{.Read}}</td><td>{{.Lost}}</td></tr>{{end}}
</table>
</body></html>
`))

type eventRow struct {
	Name       string
	Read, Lost uint64
}

func statusPage(state State) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		st := state.ProbeStats()
		var rows []eventRow
		for name, n := range st.Events {
			rows = append(rows, eventRow{Name: name, Read: n, Lost: st.Lost[name]})
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		statusTemplate.Execute(w, struct {
			Targets []Target
			Skipped []Skipped
			Events  []eventRow
		}{state.Targets(), state.Skipped(), rows})
	})
}
