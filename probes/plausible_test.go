package probes

import (
	"strings"
	"testing"
	"time"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes/label"
	"github.com/blindspot-dev/blindspot/probes/userfunc"
)

// decoderRig holds every decoder and the aggregator they fold into.
type decoderRig struct {
	agg                *aggregator.Aggregator
	sh                 *aggregator.Shard
	tid                aggregator.TargetID
	client, db         *Family
	user               *userProbes
	ufCount, ufSeconds *aggregator.Metric
}

const (
	ufCountID   = 7 // a counter with one string label
	ufSecondsID = 8 // a histogram with one string label
)

func newDecoderRig(t *testing.T) *decoderRig {
	t.Helper()
	r := &decoderRig{
		ufCount:   &aggregator.Metric{Name: "orders_total", Help: "Orders.", Unit: "{call}", Kind: aggregator.Counter, Labels: []string{"order_type"}},
		ufSeconds: &aggregator.Metric{Name: "charge_duration_seconds", Help: "Charges.", Unit: "s", Kind: aggregator.Histogram, Labels: []string{"gateway"}, Buckets: aggregator.DurationBuckets},
	}
	r.agg = aggregator.New(append(Metrics(), r.ufCount, r.ufSeconds), aggregator.Options{Shards: 1})
	r.tid = r.agg.AddTarget(aggregator.Target{PID: 42, Service: "svc"})
	r.sh = r.agg.Shard(0)
	r.client = HTTPClientFamily(r.agg)
	r.db = DBFamily(r.agg, nil)
	r.user = &userProbes{}
	specs := map[uint32]*userDecode{
		ufCountID:   {metric: r.ufCount, n: 1, types: [userfunc.MaxLabels]userfunc.LabelType{userfunc.LabelString}, maxLen: [userfunc.MaxLabels]int{64}},
		ufSecondsID: {metric: r.ufSeconds, n: 1, types: [userfunc.MaxLabels]userfunc.LabelType{userfunc.LabelString}, maxLen: [userfunc.MaxLabels]int{16}, duration: true},
	}
	r.user.byID.Store(&specs)
	return r
}

func (r *decoderRig) decoders() [maxKinds]Decoder {
	var d [maxKinds]Decoder
	d[kindHTTPServer] = decodeHTTPServer
	d[kindHTTPClient] = r.client.Decode
	d[kindDB] = r.db.Decode
	d[kindUserFunc] = r.user.decode
	return d
}

// observed counts what reached the aggregator, by metric.
func (r *decoderRig) observed() map[string]uint64 {
	out := map[string]uint64{}
	for _, p := range r.agg.Snapshot() {
		out[p.Metric.Name] += p.Count // a counter's count is its value here
	}
	return out
}

// Event builders: a plausible event of each kind, changed by f.

func serverEvent(f func(*httpServerHttpServerEvent)) []byte {
	var ev httpServerHttpServerEvent
	ev.Hdr.Kind, ev.Hdr.Flags, ev.Hdr.Pid, ev.Hdr.StartNs, ev.Hdr.EndNs = kindHTTPServer, httpFlagStatus, 42, 1000000, 3000000
	ev.Status = 200
	ev.MethodLen = setChars(ev.Method[:], "GET")
	ev.PathLen = uint16(setChars(ev.Path[:], "/items/42"))
	if f != nil {
		f(&ev)
	}
	return raw(&ev)
}

func clientEvent(f func(*httpClientHttpClientEvent)) []byte {
	var ev httpClientHttpClientEvent
	ev.Hdr.Kind, ev.Hdr.Flags, ev.Hdr.Pid, ev.Hdr.StartNs, ev.Hdr.EndNs = kindHTTPClient, httpcFlagResponse, 42, 1000000, 3000000
	ev.Status = 200
	ev.MethodLen = setChars(ev.Method[:], "GET")
	ev.SchemeLen = setChars(ev.Scheme[:], "http")
	ev.HostLen = uint16(setChars(ev.Host[:], "payments.internal:8443"))
	if f != nil {
		f(&ev)
	}
	return raw(&ev)
}

func dbEvent(f func(*dbDbEvent)) []byte {
	var ev dbDbEvent
	ev.Hdr.Kind, ev.Hdr.Pid, ev.Hdr.StartNs, ev.Hdr.EndNs = kindDB, 42, 1000000, 3000000
	ev.Op = dbOpQuery
	ev.QueryLen = uint16(setChars(ev.Query[:], "SELECT id FROM items WHERE id = $1"))
	if f != nil {
		f(&ev)
	}
	return raw(&ev)
}

func userEvent(id uint32, label string, f func(*userFuncUfEvent)) []byte {
	var ev userFuncUfEvent
	ev.Hdr.Kind, ev.Hdr.Pid, ev.Hdr.StartNs, ev.Hdr.EndNs = kindUserFunc, 42, 1000000, 3000000
	ev.Id = id
	ev.V.Len[0] = setChars(ev.V.Str[0][:], label)
	if f != nil {
		f(&ev)
	}
	return raw(&ev)
}

// Crafted events with an implausible value, as a misread program yields
// them, are refused by their decoder under the right reason, and nothing
// of them reaches the shard.
func TestDecodersRefuseImplausibleEvents(t *testing.T) {
	r := newDecoderRig(t)
	dec := r.decoders()
	longBadPath := "/" + strings.Repeat("a", 60) + "\xff" + strings.Repeat("b", 239) // 300 bytes
	cases := []struct {
		name   string
		raw    []byte
		want   Verdict
		reason string
	}{
		// HTTP server.
		{"server status 257", serverEvent(func(e *httpServerHttpServerEvent) { e.Status = 257 }), InvalidStatus, "status"},
		{"server status 12240", serverEvent(func(e *httpServerHttpServerEvent) { e.Status = 12240 }), InvalidStatus, "status"},
		{"server status 0x7fff", serverEvent(func(e *httpServerHttpServerEvent) { e.Status = 0x7fff }), InvalidStatus, "status"},
		{"server status 0 written", serverEvent(func(e *httpServerHttpServerEvent) { e.Status = 0 }), InvalidStatus, "status"},
		{"server status 999", serverEvent(func(e *httpServerHttpServerEvent) { e.Status = 999 }), InvalidStatus, "status"},
		{"server method NUL", serverEvent(func(e *httpServerHttpServerEvent) { e.MethodLen = setChars(e.Method[:], "G\x00T") }), InvalidMethod, "method"},
		{"server method empty", serverEvent(func(e *httpServerHttpServerEvent) { e.MethodLen = 0 }), InvalidMethod, "method"},
		{"server method space", serverEvent(func(e *httpServerHttpServerEvent) { e.MethodLen = setChars(e.Method[:], "G T") }), InvalidMethod, "method"},
		{"server HTTP/2 method space", serverEvent(func(e *httpServerHttpServerEvent) {
			e.Hdr.Flags |= httpFlagHTTP2
			e.MethodLen = setChars(e.Method[:], "G T")
		}), InvalidPeerMethod, "method"},
		{"server 300-byte path, invalid UTF-8", serverEvent(func(e *httpServerHttpServerEvent) {
			setChars(e.Path[:], longBadPath)
			e.PathLen = uint16(len(longBadPath))
		}), InvalidPath, "path"},
		{"server path with newline", serverEvent(func(e *httpServerHttpServerEvent) { e.PathLen = uint16(setChars(e.Path[:], "/a\nb")) }), InvalidPath, "path"},
		{"server pattern invalid UTF-8", serverEvent(func(e *httpServerHttpServerEvent) {
			e.PatternLen = uint16(setChars(e.Pattern[:], "GET /\xc3\x28"))
		}), InvalidUTF8, "utf8"},
		{"server end before start", serverEvent(func(e *httpServerHttpServerEvent) { e.Hdr.StartNs, e.Hdr.EndNs = 3000000, 1000000 }), InvalidDuration, "duration"},
		{"server a day long", serverEvent(func(e *httpServerHttpServerEvent) { e.Hdr.EndNs = e.Hdr.StartNs + uint64(25*time.Hour) }), InvalidDuration, "duration"},
		// HTTP client.
		{"client status 257", clientEvent(func(e *httpClientHttpClientEvent) { e.Status = 257 }), InvalidPeerStatus, "status"},
		{"client status 999", clientEvent(func(e *httpClientHttpClientEvent) { e.Status = 999 }), InvalidPeerStatus, "status"},
		{"client status 12240", clientEvent(func(e *httpClientHttpClientEvent) { e.Status = 12240 }), InvalidStatus, "status"},
		{"client status 0x7fff", clientEvent(func(e *httpClientHttpClientEvent) { e.Status = 0x7fff }), InvalidStatus, "status"},
		{"client status 0 with a response", clientEvent(func(e *httpClientHttpClientEvent) { e.Status = 0 }), InvalidStatus, "status"},
		{"client method NUL", clientEvent(func(e *httpClientHttpClientEvent) { e.MethodLen = setChars(e.Method[:], "G\x00T") }), InvalidMethod, "method"},
		{"client host invalid UTF-8", clientEvent(func(e *httpClientHttpClientEvent) { e.HostLen = uint16(setChars(e.Host[:], "pay\xffments:80")) }), InvalidUTF8, "utf8"},
		{"client host with control", clientEvent(func(e *httpClientHttpClientEvent) { e.HostLen = uint16(setChars(e.Host[:], "pay\x01ments")) }), InvalidUTF8, "utf8"},
		{"client scheme garbage", clientEvent(func(e *httpClientHttpClientEvent) { e.SchemeLen = setChars(e.Scheme[:], "h\xfe") }), InvalidUTF8, "utf8"},
		{"client host cut by the probe", clientEvent(func(e *httpClientHttpClientEvent) {
			e.HostLen = uint16(setChars(e.Host[:], strings.Repeat("a", len(e.Host))))
			e.HostLen = uint16(len(e.Host) + 6) // the Go string was longer than the buffer
		}), InvalidHost, "host"},
		{"client port 0", clientEvent(func(e *httpClientHttpClientEvent) { e.HostLen = uint16(setChars(e.Host[:], "payments.internal:0")) }), InvalidPort, "port"},
		{"client port 65536", clientEvent(func(e *httpClientHttpClientEvent) { e.HostLen = uint16(setChars(e.Host[:], "payments.internal:65536")) }), InvalidPort, "port"},
		{"client port not a number", clientEvent(func(e *httpClientHttpClientEvent) { e.HostLen = uint16(setChars(e.Host[:], "[::1]:http")) }), InvalidPort, "port"},
		{"client end before start", clientEvent(func(e *httpClientHttpClientEvent) { e.Hdr.StartNs, e.Hdr.EndNs = 3000000, 1000000 }), InvalidDuration, "duration"},
		// database/sql.
		{"db query invalid UTF-8", dbEvent(func(e *dbDbEvent) { e.QueryLen = uint16(setChars(e.Query[:], "SELECT \xff FROM items")) }), InvalidUTF8, "utf8"},
		{"db query NUL", dbEvent(func(e *dbDbEvent) { e.QueryLen = uint16(setChars(e.Query[:], "SELECT 1\x00\x00")) }), InvalidUTF8, "utf8"},
		{"db end before start", dbEvent(func(e *dbDbEvent) { e.Hdr.StartNs, e.Hdr.EndNs = 3000000, 1000000 }), InvalidDuration, "duration"},
		{"db wait end before start", dbEvent(func(e *dbDbEvent) { e.Op, e.Hdr.StartNs, e.Hdr.EndNs = dbOpWait, 3000000, 1000000 }), InvalidDuration, "duration"},
		// Business functions.
		{"business label invalid UTF-8", userEvent(ufCountID, "re\xc3\x28tail", nil), InvalidUTF8, "utf8"},
		{"business label NUL", userEvent(ufCountID, "retail\x00", nil), InvalidUTF8, "utf8"},
		{"business end before start", userEvent(ufSecondsID, "stripe", func(e *userFuncUfEvent) { e.Hdr.StartNs, e.Hdr.EndNs = 3000000, 1000000 }), InvalidDuration, "duration"},
	}
	for _, c := range cases {
		kind := uint16(c.raw[0]) | uint16(c.raw[1])<<8
		v := dec[kind](r.sh, r.tid, c.raw)
		if v != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, v, c.want)
			continue
		}
		if got := invalidReasons[v]; got != c.reason {
			t.Errorf("%s: reason %q, want %q", c.name, got, c.reason)
		}
	}
	if got := r.observed(); len(got) != 0 {
		t.Errorf("implausible events reached the aggregator: %v", got)
	}
}

// What a correctly read program sends is still decoded: unknown methods
// that are tokens, text cut by its buffer in the middle of a rune, SQL
// laid out on several lines, a business label of a counter.
func TestDecodersAcceptPlausibleEdges(t *testing.T) {
	r := newDecoderRig(t)
	dec := r.decoders()
	cut := strings.Repeat("é", 64) // 128 bytes: the path buffer, full
	for _, c := range []struct {
		name string
		raw  []byte
	}{
		{"server lower-case method", serverEvent(func(e *httpServerHttpServerEvent) { e.MethodLen = setChars(e.Method[:], "get") })},
		{"server status 0 on a hijacked connection", serverEvent(func(e *httpServerHttpServerEvent) { e.Hdr.Flags, e.Status = httpFlagHijacked, 0 })},
		{"server panic before a status", serverEvent(func(e *httpServerHttpServerEvent) { e.Hdr.Flags, e.Status = httpFlagPanic, 0 })},
		{"server path cut in a rune", serverEvent(func(e *httpServerHttpServerEvent) {
			setChars(e.Path[:], "/"+cut)
			e.PathLen = 400
		})},
		{"server bad path behind a pattern", serverEvent(func(e *httpServerHttpServerEvent) {
			e.PathLen = uint16(setChars(e.Path[:], "/\xff"))
			e.PatternLen = uint16(setChars(e.Pattern[:], "GET /{x}"))
		})},
		{"client no response", clientEvent(func(e *httpClientHttpClientEvent) { e.Hdr.Flags, e.Status = 0, 0 })},
		{"client empty method", clientEvent(func(e *httpClientHttpClientEvent) { e.MethodLen = 0 })},
		{"client host without port", clientEvent(func(e *httpClientHttpClientEvent) { e.HostLen = uint16(setChars(e.Host[:], "example.com")) })},
		{"db multi-line query", dbEvent(func(e *dbDbEvent) { e.QueryLen = uint16(setChars(e.Query[:], "SELECT id\n\tFROM items\r\n")) })},
		{"db begin", dbEvent(func(e *dbDbEvent) { e.Op, e.QueryLen = dbOpBegin, 0 })},
		{"business counter", userEvent(ufCountID, "retail", nil)},
		{"business histogram cut in a rune", userEvent(ufSecondsID, "abcdefghijklmnoé", func(e *userFuncUfEvent) { e.V.Len[0] = 16 })},
	} {
		kind := uint16(c.raw[0]) | uint16(c.raw[1])<<8
		if v := dec[kind](r.sh, r.tid, c.raw); v != Decoded {
			t.Errorf("%s: verdict %d, want decoded", c.name, v)
		}
	}
	got := r.observed()
	want := map[string]uint64{"http_server_request_duration_seconds": 5, "http_client_request_duration_seconds": 3,
		"db_client_operation_duration_seconds": 2, "orders_total": 1, "charge_duration_seconds": 1}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d observations, want %d (all: %v)", k, got[k], n, got)
		}
	}
	for _, p := range r.agg.Snapshot() {
		for _, l := range p.Labels {
			if _, ok := label.Text([]byte(l), false, false); !ok {
				t.Errorf("%s: label %q is not valid UTF-8", p.Metric.Name, l)
			}
		}
	}
}

// newTestReaders returns readers over the rig's decoders with one reader's
// counts, attributing pids to the rig's target.
func newTestReaders(r *decoderRig, pids ...uint32) (*readers, *readerCounts) {
	rd := &readers{agg: r.agg, targets: &targetTable{}, decoders: r.decoders()}
	for _, pid := range pids {
		rd.targets.set(pid, r.tid, true)
	}
	c := &readerCounts{}
	rd.counts = []*readerCounts{c}
	return rd, c
}

// The reader's whole path — attribution, decoding, counting, the window of
// an open (process, family) — allocates nothing per event, valid or not,
// once the window is open.
func TestReaderPathDoesNotAllocate(t *testing.T) {
	r := newDecoderRig(t)
	rd, c := newTestReaders(r, 42)
	good := serverEvent(nil)
	bad := serverEvent(func(e *httpServerHttpServerEvent) { e.Status = 12240 })
	badPath := serverEvent(func(e *httpServerHttpServerEvent) { e.PathLen = uint16(setChars(e.Path[:], "/\xff")) })
	badClient := clientEvent(func(e *httpClientHttpClientEvent) { e.HostLen = uint16(setChars(e.Host[:], "h:0")) })
	for _, ev := range [][]byte{good, bad, badPath, badClient} {
		rd.handle(r.sh, c, ev) // opens the windows, interns the labels
	}
	for name, ev := range map[string][]byte{"valid": good, "invalid status": bad, "invalid path": badPath, "invalid port": badClient} {
		if allocs := testing.AllocsPerRun(200, func() { rd.handle(r.sh, c, ev) }); allocs != 0 {
			t.Errorf("%s event: %v allocations, want 0", name, allocs)
		}
	}
	// Without an open window, a valid event does not even look one up.
	rd2, c2 := newTestReaders(r, 42)
	if allocs := testing.AllocsPerRun(200, func() { rd2.handle(r.sh, c2, good) }); allocs != 0 {
		t.Errorf("valid event without windows: %v allocations, want 0", allocs)
	}
}
