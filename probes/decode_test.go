package probes

import (
	"testing"
	"unsafe"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// raw views an event struct as the bytes a ring buffer would hand over.
func raw[T any](ev *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(ev)), unsafe.Sizeof(*ev))
}

func setChars(dst []int8, s string) uint8 {
	for i := 0; i < len(s) && i < len(dst); i++ {
		dst[i] = int8(s[i])
	}
	return uint8(min(len(s), len(dst)))
}

// The decoders fold an event into a shard without allocating once its
// labels have been seen, and refuse an implausible one without allocating
// either: the reader's hot path.
func TestDecodersDoNotAllocate(t *testing.T) {
	agg := aggregator.New(Metrics(), aggregator.Options{})
	tid := agg.AddTarget(aggregator.Target{PID: 42, Service: "svc"})
	sh := agg.Shard(0)

	var srv httpServerHttpServerEvent
	srv.Hdr.Kind, srv.Hdr.Flags, srv.Hdr.Pid, srv.Hdr.EndNs = kindHTTPServer, httpFlagStatus, 42, 1500000
	srv.Status = 200
	srv.MethodLen = setChars(srv.Method[:], "GET")
	srv.PathLen = uint16(setChars(srv.Path[:], "/items/42"))
	srv.PatternLen = uint16(setChars(srv.Pattern[:], "GET /items/{id}"))

	var cl httpClientHttpClientEvent
	cl.Hdr.Kind, cl.Hdr.Flags, cl.Hdr.Pid, cl.Hdr.EndNs = kindHTTPClient, httpcFlagResponse, 42, 2500000
	cl.Status = 503
	cl.MethodLen = setChars(cl.Method[:], "POST")
	cl.SchemeLen = setChars(cl.Scheme[:], "http")
	cl.HostLen = uint16(setChars(cl.Host[:], "payments.internal:8443"))
	client := HTTPClientFamily(agg)

	badSrv := srv
	badSrv.Status = 257
	badCl := cl
	badCl.HostLen = uint16(setChars(badCl.Host[:], "payments.internal:0"))

	for _, c := range []struct {
		name   string
		decode func() Verdict
		want   Verdict
	}{
		{"http_server", func() Verdict { return decodeHTTPServer(sh, tid, raw(&srv)) }, Decoded},
		{"http_client", func() Verdict { return client.Decode(sh, tid, raw(&cl)) }, Decoded},
		{"http_server invalid", func() Verdict { return decodeHTTPServer(sh, tid, raw(&badSrv)) }, InvalidStatus},
		{"http_client invalid", func() Verdict { return client.Decode(sh, tid, raw(&badCl)) }, InvalidPort},
	} {
		if v := c.decode(); v != c.want {
			t.Fatalf("%s: verdict %d, want %d", c.name, v, c.want)
		}
		if allocs := testing.AllocsPerRun(200, func() { c.decode() }); allocs != 0 {
			t.Errorf("%s: %v allocations per event, want 0", c.name, allocs)
		}
	}
	var n uint64
	for _, p := range agg.Snapshot() {
		n += p.Count
		switch p.Metric {
		case httpServerDuration:
			if p.Labels[0] != "GET" || p.Labels[1] != "200" || p.Labels[2] != "/items/{id}" {
				t.Errorf("server labels %v", p.Labels)
			}
		case httpClientDuration:
			if p.Labels[0] != "POST" || p.Labels[1] != "503" || p.Labels[2] != "payments.internal" || p.Labels[3] != "8443" {
				t.Errorf("client labels %v", p.Labels)
			}
		}
	}
	// Each valid event was decoded once, then 201 times in AllocsPerRun (a
	// warm-up and 200 measured runs); the invalid ones never.
	if want := uint64(2 * (1 + 201)); n != want {
		t.Errorf("%d observations, want %d", n, want)
	}
}
