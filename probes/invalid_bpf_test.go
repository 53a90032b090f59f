package probes

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/symbols"
)

// A real program read at a wrong offset: its events are refused and
// counted, never exported; the invalid-event policy detaches the family
// from it, says why in its status, and its requests are no longer probed.
func TestMisreadProgramIsDetached(t *testing.T) {
	requireBPF(t)
	pid, exe, base := startServer(t)
	agg := aggregator.New(Metrics(), aggregator.Options{Shards: 2})
	m, err := New(agg, testFamilies(agg), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	bin, err := symbols.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	detached := make(chan Detached, 4)
	m.OnDetached(func(d Detached) { detached <- d })
	tid := agg.AddTarget(aggregator.Target{PID: pid, Service: "server"})
	att, err := m.Attach(pid, fmt.Sprintf("/proc/%d/exe", pid), bin, tid)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Detach(att)
	// The status read where wroteHeader and its neighbours lie: 1 or 257,
	// as a misidentified struct gives.
	f := m.families[0]
	var o httpServerHttpServerOffsets
	if err := f.config.Lookup(uint32(pid), &o); err != nil {
		t.Fatal(err)
	}
	o.RespStatus = o.RespWroteHeader
	if err := f.config.Put(uint32(pid), &o); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{}
	const requests = 30
	for i := 0; i < requests; i++ {
		get(t, c, base+"/created")
	}
	var d Detached
	select {
	case d = <-detached:
		t.Logf("http_server: %s", d.Status.Error)
	case <-time.After(10 * time.Second):
		t.Fatalf("not detached; stats %+v", m.Stats())
	}
	if d.PID != pid || d.Attachment != att || d.Status.Family != "http_server" ||
		!strings.HasPrefix(d.Status.Error, "detached: ") ||
		!strings.HasSuffix(d.Status.Error, " events invalid (status) — offsets for this binary are likely wrong") {
		t.Errorf("detached %+v", d)
	}
	for _, st := range att.Status() {
		if st.Family == "http_server" && st.Error != d.Status.Error {
			t.Errorf("status %+v, want the reason", st)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.Stats().Invalid["http_server"]["status"] < requests && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st := m.Stats()
	if st.Invalid["http_server"]["status"] != requests || st.Events["http_server"] != requests {
		t.Errorf("read %d events, %d invalid (status); want %d of %d", st.Events["http_server"], st.Invalid["http_server"]["status"], requests, requests)
	}
	if n, _ := countAll(agg); n != 0 {
		t.Errorf("%d misread requests exported", n)
	}
	// Detached: further requests are not probed.
	get(t, c, base+"/created")
	time.Sleep(300 * time.Millisecond)
	if n := m.Stats().Events["http_server"]; n != requests {
		t.Errorf("%d events after the family was detached, want %d", n, requests)
	}
	select {
	case d := <-detached:
		t.Errorf("detached twice: %+v", d)
	default:
	}
}
