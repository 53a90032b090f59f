package userfunc

import (
	"strings"
	"testing"
)

var builtin = map[string]bool{"http_server_request_duration_seconds": true, "go_goroutine_count": true}

func good() Entry {
	return Entry{
		Metric:    "order_process_duration_seconds",
		Kind:      "duration",
		Function:  "main.processOrder",
		Signature: "func(ctx context.Context, orderType string, qty int) error",
		Labels:    map[string]string{"order_type": "orderType"},
		Outcome:   "status",
	}
}

func TestValidateGood(t *testing.T) {
	e := good()
	if err := e.Validate(builtin); err != nil {
		t.Fatal(err)
	}
	c := Entry{Metric: "payment_retry_total", Kind: "count", Function: "p.(*G).retry", Labels: map[string]string{"gateway": "gateway", "t": "o.Type@16", "q": "o.Qty@0x18:int32"}}
	if err := c.Validate(builtin); err != nil {
		t.Fatal(err)
	}
}

// TestValidateErrors covers every error an entry can have without a binary;
// each message names the problem and the fix.
func TestValidateErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Entry)
		want string
	}{
		{"no metric", func(e *Entry) { e.Metric = "" }, "metric: missing"},
		{"no function", func(e *Entry) { e.Function = "" }, "function: missing"},
		{"camel case", func(e *Entry) { e.Metric = "orderProcessDurationSeconds" }, `not snake_case (use lower-case words joined by single underscores, e.g. "order_process_duration_seconds")`},
		{"double underscore", func(e *Entry) { e.Metric = "order__seconds" }, "not snake_case"},
		{"duration without unit", func(e *Entry) { e.Metric = "order_process_duration" }, `ends with its unit, _seconds (e.g. "order_process_duration_seconds")`},
		{"duration with total", func(e *Entry) { e.Metric = "order_process_total" }, "_total is only for counters"},
		{"counter without total", func(e *Entry) { e.Kind = "count"; e.Metric = "payment_retry_count" }, `a counter's name ends with _total (e.g. "payment_retry_total")`},
		{"reserved prefix", func(e *Entry) { e.Metric = "blindspot_orders_seconds" }, "blindspot_ prefix is reserved"},
		{"clash", func(e *Entry) { e.Metric = "http_server_request_duration_seconds" }, "clashes with blindspot's built-in metric http_server_request_duration_seconds"},
		{"clash with series", func(e *Entry) { e.Kind = "count"; e.Metric = "go_goroutine_count_total" }, "clashes with blindspot's built-in metric go_goroutine_count"},
		{"bad kind", func(e *Entry) { e.Kind = "gauge" }, `kind "gauge": use duration or count`},
		{"bad glob", func(e *Entry) { e.Service = "[" }, "service: bad glob"},
		{"too many labels", func(e *Entry) {
			e.Labels = map[string]string{"a": "a", "b": "b", "c": "c", "d": "d", "e": "e"}
		}, "at most 4 are supported"},
		{"bad label name", func(e *Entry) { e.Labels = map[string]string{"Order-Type": "orderType"} }, `label name "Order-Type"`},
		{"reserved label", func(e *Entry) { e.Labels = map[string]string{"service_name": "orderType"} }, "is reserved"},
		{"bad source", func(e *Entry) { e.Labels = map[string]string{"t": "order..Type"} }, "write a parameter name"},
		{"offset without field", func(e *Entry) { e.Labels = map[string]string{"t": "order@16"} }, "an @offset needs a field"},
		{"bad source type", func(e *Entry) { e.Labels = map[string]string{"t": "order.Type@16:float64"} }, `type "float64" is not a label type`},
		{"outcome clash", func(e *Entry) { e.Outcome = "order_type" }, "also a parameter label"},
		{"bad outcome name", func(e *Entry) { e.Outcome = "Status" }, `label name "Status"`},
		{"counter buckets", func(e *Entry) { e.Kind = "count"; e.Metric = "orders_total"; e.Buckets = []float64{1} }, "only duration metrics have buckets"},
		{"bad buckets", func(e *Entry) { e.Buckets = []float64{1, 0.5} }, "positive and increasing"},
		{"negative limit", func(e *Entry) { e.SeriesLimit = -1 }, "series_limit"},
		{"max length", func(e *Entry) { e.MaxLength = 65 }, "max_length"},
		{"signature syntax", func(e *Entry) { e.Signature = "func(ctx context.Context, orderType string" }, "does not parse as a Go func type"},
		{"signature not func", func(e *Entry) { e.Signature = "map[string]int" }, "is not a func type"},
		{"signature unknown type", func(e *Entry) { e.Signature = "func(o Order) error" }, "type Order: unknown here; write its underlying type"},
		{"signature unknown qualified", func(e *Entry) { e.Signature = "func(o shop.Order) error" }, "a pointer *shop.Order may stay named"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := good()
			tc.edit(&e)
			err := e.Validate(builtin)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestKeyStable(t *testing.T) {
	a, b := good(), good()
	if a.Key() != b.Key() {
		t.Fatal("equal entries, different keys")
	}
	b.Labels = map[string]string{"order_type": "orderType", "q": "qty"}
	if a.Key() == b.Key() {
		t.Fatal("different entries, equal keys")
	}
}

func TestSelects(t *testing.T) {
	e := Entry{Service: "order-*"}
	if !e.Selects("order-svc", "/x") || e.Selects("pay", "/opt/order-svc") == false && false {
		t.Fatal("service glob")
	}
	e.Service = "/opt/shop/*"
	if !e.Selects("x", "/opt/shop/orders") || e.Selects("x", "/usr/bin/orders") {
		t.Fatal("exe glob")
	}
}

func TestReadsArguments(t *testing.T) {
	for _, tc := range []struct {
		e       Entry
		reads   bool
		readers string
	}{
		{Entry{Kind: "count"}, false, ""},
		{Entry{Kind: "duration"}, false, ""},
		{Entry{Kind: "count", Outcome: "status"}, true, "outcome"},
		{Entry{Labels: map[string]string{"b": "x", "a": "y"}, Outcome: "status"}, true, "labels.a, labels.b, outcome"},
	} {
		if got := tc.e.ReadsArguments(); got != tc.reads {
			t.Errorf("%+v: ReadsArguments %v, want %v", tc.e, got, tc.reads)
		}
		if got := tc.e.argumentReaders(); got != tc.readers {
			t.Errorf("%+v: argumentReaders %q, want %q", tc.e, got, tc.readers)
		}
	}
}
