// Package userfunc is the business functions' probe family: the functions
// a user names in the configuration (`functions:`), each counted or timed
// into a metric of its own. It checks each entry (metric name, kind,
// labels, signature; config.go), reads the function's parameters from a
// binary's DWARF or from the signature given, and places every label and
// the outcome in the registers or stack slots Go's register ABI
// (ABIInternal) gives them (plan.go, signature.go). Its BPF programs
// (bpf/userfunc.c, bindings bpf_*_bpfel.go) are generic: family.go stores
// one spec per entry and binary in a map, attaches each entry with a BPF
// cookie naming its spec, and decodes the events. The manager (package
// probes) loads the family, reads its events and tells it of detached
// processes and forgotten binaries through probes.Entries.
package userfunc

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Kinds of business metric.
const (
	KindDuration = "duration" // a histogram of the call's duration
	KindCount    = "count"    // a counter of calls
)

// Limits of what one entry may ask for: UF_MAX_LABELS, UF_MAX_HOPS and
// UF_STR_MAX of bpf/userfunc.c (compared with it and with the objects by
// TestContract).
const (
	// MaxLabels is the most parameter labels per entry (the outcome label
	// comes on top).
	MaxLabels = 4
	// MaxHops is the most fields a label path may follow.
	MaxHops = 4
	// MaxString is the most bytes of a string label value.
	MaxString = 64
)

// Entry is one business function in the configuration's functions list.
type Entry struct {
	// Metric is the Prometheus name (snake_case; "_seconds" for duration,
	// "_total" for count).
	Metric string `yaml:"metric"`
	// Help is the metric's description.
	Help string `yaml:"help"`
	// Kind is "duration" (default) or "count".
	Kind string `yaml:"kind"`
	// Service selects programs by service name or executable path (glob);
	// empty selects every program that has the function.
	Service string `yaml:"service"`
	// Function is the function's name as Go prints it.
	Function string `yaml:"function"`
	// Signature is the function's type ("func(a string, n int) error"),
	// needed only for binaries without DWARF, and there only when a label
	// or the outcome reads a parameter or result; checked against DWARF
	// when both are present. A method's receiver is implicit for pointer
	// receivers ((*T).m); a value receiver (T.m) is written as the first
	// parameter.
	Signature string `yaml:"signature"`
	// Labels maps a label name to a parameter ("orderType"), a field
	// reached through pointers ("order.Type"), or a field at a given
	// offset with an optional type ("order.Type@16", "order.Qty@24:int").
	Labels map[string]string `yaml:"labels"`
	// Outcome, when set, names a label holding "success" or "error" from
	// the function's last error result (nil is success) or its bool
	// result (true is success).
	Outcome string `yaml:"outcome"`
	// Buckets are the histogram bounds in seconds (duration only; default
	// the OpenTelemetry duration advice).
	Buckets []float64 `yaml:"buckets"`
	// SeriesLimit bounds the metric's series (default: the agent's
	// series_limit, like every metric); past it new label sets go to one
	// overflow series.
	SeriesLimit int `yaml:"series_limit"`
	// MaxLength bounds string label values in bytes (default and at most 64).
	MaxLength int `yaml:"max_length"`
}

// Key identifies an entry's content: equal keys mean an unchanged entry
// across reloads.
func (e *Entry) Key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%v\x00%d\x00%d", e.Metric, e.Help, e.kind(), e.Service,
		e.Function, e.Signature, e.Outcome, e.Buckets, e.SeriesLimit, e.MaxLength)
	for _, n := range e.LabelNames() {
		fmt.Fprintf(&b, "\x00%s=%s", n, e.Labels[n])
	}
	h := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(h[:8])
}

func (e *Entry) kind() string {
	if e.Kind == "" {
		return KindDuration
	}
	return e.Kind
}

// IsDuration reports a duration (histogram) entry.
func (e *Entry) IsDuration() bool { return e.kind() == KindDuration }

// LabelNames returns the parameter label names, sorted.
func (e *Entry) LabelNames() []string {
	out := make([]string, 0, len(e.Labels))
	for n := range e.Labels {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ReadsArguments reports whether the entry reads a parameter or a result
// (a label or the outcome), and so needs the function's signature.
func (e *Entry) ReadsArguments() bool { return len(e.Labels) > 0 || e.Outcome != "" }

// StringMax is the bound on string label values.
func (e *Entry) StringMax() int {
	if e.MaxLength <= 0 || e.MaxLength > MaxString {
		return MaxString
	}
	return e.MaxLength
}

// Selects reports whether the entry applies to a program.
func (e *Entry) Selects(service, exe string) bool {
	if e.Service == "" {
		return true
	}
	if ok, _ := path.Match(e.Service, service); ok {
		return true
	}
	ok, _ := path.Match(e.Service, exe)
	return ok
}

var (
	snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	labelName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	// pathRe is a label source: param(.field)*(@offset)?(:type)?
	pathRe = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?:@(0x[0-9a-fA-F]+|[0-9]+))?(?::([a-z0-9]+))?$`)
)

// reservedLabels are carried by every series or by the exposition format.
var reservedLabels = map[string]bool{
	"service_name": true, "service_namespace": true, "service_instance_id": true,
	"otel_metric_overflow": true, "le": true, "quantile": true, "job": true, "instance": true,
}

// Validate checks an entry without a binary. builtin holds the names of
// the metrics blindspot exports itself. The error says what to fix.
func (e *Entry) Validate(builtin map[string]bool) error {
	if e.Metric == "" {
		return fmt.Errorf("metric: missing (add metric: a_snake_case_name)")
	}
	if e.Function == "" {
		return fmt.Errorf("function: missing (add the Go function's full name, e.g. main.processOrder)")
	}
	if err := e.checkName(builtin); err != nil {
		return err
	}
	if e.Service != "" {
		if _, err := path.Match(e.Service, ""); err != nil {
			return fmt.Errorf("service: bad glob %q: %v", e.Service, err)
		}
	}
	if len(e.Labels) > MaxLabels {
		return fmt.Errorf("labels: %d labels, at most %d are supported (drop some)", len(e.Labels), MaxLabels)
	}
	for _, n := range e.LabelNames() {
		if err := checkLabelName(n); err != nil {
			return fmt.Errorf("labels: %v", err)
		}
		if _, err := ParseSource(e.Labels[n]); err != nil {
			return fmt.Errorf("labels.%s: %v", n, err)
		}
	}
	if e.Outcome != "" {
		if err := checkLabelName(e.Outcome); err != nil {
			return fmt.Errorf("outcome: %v", err)
		}
		if _, dup := e.Labels[e.Outcome]; dup {
			return fmt.Errorf("outcome: label %q is also a parameter label (rename one)", e.Outcome)
		}
	}
	if len(e.Buckets) > 0 {
		if !e.IsDuration() {
			return fmt.Errorf("buckets: only duration metrics have buckets (remove them)")
		}
		for i, b := range e.Buckets {
			if b <= 0 || (i > 0 && b <= e.Buckets[i-1]) {
				return fmt.Errorf("buckets: must be positive and increasing, got %v", e.Buckets)
			}
		}
	}
	if e.SeriesLimit < 0 {
		return fmt.Errorf("series_limit: must not be negative")
	}
	if e.MaxLength < 0 || e.MaxLength > MaxString {
		return fmt.Errorf("max_length: must be between 1 and %d", MaxString)
	}
	if e.Signature != "" {
		if _, err := ParseSignature(e.Signature); err != nil {
			return fmt.Errorf("signature: %v", err)
		}
	}
	return nil
}

func (e *Entry) checkName(builtin map[string]bool) error {
	n := e.Metric
	if !snakeCase.MatchString(n) {
		return fmt.Errorf("metric %q: not snake_case (use lower-case words joined by single underscores, e.g. %q)", n, toSnake(n))
	}
	if strings.HasPrefix(n, "blindspot_") {
		return fmt.Errorf("metric %q: the blindspot_ prefix is reserved for the agent's own metrics (choose another name)", n)
	}
	switch e.kind() {
	case KindDuration:
		if strings.HasSuffix(n, "_total") {
			return fmt.Errorf("metric %q: _total is only for counters; a duration histogram ends in _seconds (e.g. %q)", n, strings.TrimSuffix(n, "_total")+"_duration_seconds")
		}
		if !strings.HasSuffix(n, "_seconds") {
			return fmt.Errorf("metric %q: a duration histogram's name ends with its unit, _seconds (e.g. %q)", n, strings.TrimSuffix(n, "_duration")+"_duration_seconds")
		}
	case KindCount:
		if !strings.HasSuffix(n, "_total") {
			base := n
			for _, s := range []string{"_count", "_counter"} {
				base = strings.TrimSuffix(base, s)
			}
			return fmt.Errorf("metric %q: a counter's name ends with _total (e.g. %q)", n, base+"_total")
		}
	default:
		return fmt.Errorf("kind %q: use duration or count", e.Kind)
	}
	for _, suf := range []string{"_bucket", "_count", "_sum", "_created", "_info"} {
		if strings.HasSuffix(n, suf) {
			return fmt.Errorf("metric %q: the suffix %s is reserved by OpenMetrics (for a counter use _total)", n, suf)
		}
	}
	for b := range builtin {
		if n == b || strings.HasPrefix(n, b+"_") && isSuffix(strings.TrimPrefix(n, b)) || strings.HasPrefix(b, n+"_") && isSuffix(strings.TrimPrefix(b, n)) {
			return fmt.Errorf("metric %q: clashes with blindspot's built-in metric %s (choose another name)", n, b)
		}
	}
	return nil
}

func isSuffix(s string) bool {
	switch s {
	case "_bucket", "_count", "_sum", "_total", "_created":
		return true
	}
	return false
}

func checkLabelName(n string) error {
	if !labelName.MatchString(n) || strings.HasPrefix(n, "__") {
		return fmt.Errorf("label name %q: use lower-case letters, digits and underscores", n)
	}
	if reservedLabels[n] {
		return fmt.Errorf("label name %q is reserved (every series carries it): choose another", n)
	}
	return nil
}

func toSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r >= 'A' && r <= 'Z':
			if i > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r - 'A' + 'a')
		case r == '-' || r == '.' || r == ' ':
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	return strings.ReplaceAll(b.String(), "__", "_")
}

// Source is a parsed label source.
type Source struct {
	// Param is the parameter's name.
	Param string
	// Fields are the fields followed from the parameter (through pointers).
	Fields []string
	// Offset, when HasOffset, is the last field's byte offset given by the
	// user (for binaries without DWARF).
	Offset    int64
	HasOffset bool
	// Type is the last field's type given by the user ("" = from DWARF or
	// the signature; with an offset and no DWARF, string).
	Type string
}

// ParseSource parses "param", "param.Field.Sub", "param.Field@16" or
// "param.Field@16:int".
func ParseSource(s string) (Source, error) {
	m := pathRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Source{}, fmt.Errorf("%q: write a parameter name, a field path (order.Type) or a field at an offset (order.Type@16 or order.Qty@24:int)", s)
	}
	src := Source{Param: m[1], Type: m[4]}
	if m[2] != "" {
		src.Fields = strings.Split(m[2][1:], ".")
	}
	if len(src.Fields) > MaxHops {
		return Source{}, fmt.Errorf("%q: at most %d fields deep", s, MaxHops)
	}
	if m[3] != "" {
		if len(src.Fields) == 0 {
			return Source{}, fmt.Errorf("%q: an @offset needs a field (param.Field@offset)", s)
		}
		off, err := strconv.ParseInt(m[3], 0, 64)
		if err != nil || off < 0 || off > 1<<20 {
			return Source{}, fmt.Errorf("%q: bad offset", s)
		}
		src.Offset, src.HasOffset = off, true
	}
	if src.Type != "" {
		if _, ok := scalarTypes[src.Type]; !ok {
			return Source{}, fmt.Errorf("%q: type %q is not a label type (use string, bool or an integer type)", s, src.Type)
		}
	}
	return src, nil
}

// argumentReaders names what reads the arguments: "labels.a, outcome".
func (e *Entry) argumentReaders() string {
	var n []string
	for _, l := range e.LabelNames() {
		n = append(n, "labels."+l)
	}
	if e.Outcome != "" {
		n = append(n, "outcome")
	}
	return strings.Join(n, ", ")
}
