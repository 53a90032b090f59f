package httpserver

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/internal/testserver"
	"github.com/blindspot-dev/blindspot/symbols"
)

// The family run by the probe manager against a real server
// (probes/testdata/server): exact counts, a clean detach, every event read
// or counted as lost, and the invalid-event policy on a misread program.

func requireBPF(t *testing.T)                        { testserver.RequireBPF(t) }
func startServer(t *testing.T) (int, string, string) { return testserver.Start(t) }

func get(t *testing.T, c *http.Client, url string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func countAll(agg *aggregator.Aggregator) (n uint64, byStatus map[string]uint64) {
	byStatus = map[string]uint64{}
	for _, p := range agg.Snapshot() {
		if p.Metric != httpServerDuration {
			continue
		}
		n += p.Count
		byStatus[p.Labels[1]+" "+p.Labels[2]] += p.Count
	}
	return
}

func waitCount(agg *aggregator.Aggregator, want uint64) uint64 {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, _ := countAll(agg)
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// configMapOf returns the family's config map that holds pid, found among
// the kernel's BPF maps (the manager keeps its collections to itself; a
// PID is in the map of the one manager attached to it).
func configMapOf(t *testing.T, pid int) *ebpf.Map {
	t.Helper()
	const name = "http_server_config"
	var id ebpf.MapID
	for {
		next, err := ebpf.MapGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		id = next
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue // gone since
		}
		// The kernel keeps the first 15 bytes of a map's name.
		if info, err := m.Info(); err == nil && info.Name != "" && strings.HasPrefix(name, info.Name) &&
			m.KeySize() == 4 && m.ValueSize() == uint32(unsafe.Sizeof(bpfHttpServerOffsets{})) {
			var o bpfHttpServerOffsets
			if m.Lookup(uint32(pid), &o) == nil {
				return m
			}
		}
		m.Close()
	}
	t.Fatalf("no %s map holds pid %d", name, pid)
	return nil
}

// Attaching to a real server counts its requests exactly, and detaching
// leaves nothing behind in the BPF maps: with uprobe_multi links and with
// one uprobe per site (older kernels).
func TestAttachCountsAndDetachCleans(t *testing.T) {
	for _, single := range []bool{false, true} {
		t.Run(fmt.Sprintf("single=%v", single), func(t *testing.T) { testAttachDetach(t, single) })
	}
}

func testAttachDetach(t *testing.T, single bool) {
	requireBPF(t)
	pid, exe, base := startServer(t)
	agg := aggregator.New(Metrics(), aggregator.Options{Shards: 2})
	m, err := probes.New(agg, []*probes.Family{Family()}, &probes.Options{SingleUprobes: single})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	bin, err := symbols.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	tid := agg.AddTarget(aggregator.Target{PID: pid, Service: "server"})
	att, err := m.Attach(pid, fmt.Sprintf("/proc/%d/exe", pid), bin, tid)
	if err != nil {
		t.Fatal(err)
	}
	// net/http links its HTTP/2 server too: five functions in all.
	var hs *probes.ProbeStatus
	for i := range att.Probes {
		if att.Probes[i].Family == "http_server" {
			hs = &att.Probes[i]
		}
	}
	// One of the two copies of the HTTP/2 server is linked.
	if hs == nil || hs.Error != "" || len(hs.Sites) != len(Probes)-2 {
		t.Fatalf("probes = %+v, want http_server at %d sites", att.Probes, len(Probes)-2)
	}
	c := &http.Client{}
	for i := 0; i < 20; i++ {
		get(t, c, fmt.Sprintf("%s/ok/%d", base, i))
	}
	for i := 0; i < 5; i++ {
		get(t, c, base+"/created")
	}
	if n := waitCount(agg, 25); n != 25 {
		t.Fatalf("counted %d requests, want 25", n)
	}
	_, by := countAll(agg)
	if by["200 /ok/{id}"] != 20 || by["201 /created"] != 5 {
		t.Fatalf("by status and route: %v", by)
	}
	config := configMapOf(t, pid)
	defer config.Close()
	t0 := time.Now()
	m.Detach(att)
	t.Logf("detached in %v", time.Since(t0))
	var k uint32
	var v bpfHttpServerOffsets
	if config.Lookup(uint32(pid), &v) == nil {
		t.Error("offsets of a detached process left in the config map")
	}
	it := config.Iterate()
	for it.Next(&k, &v) {
		t.Errorf("config map still holds pid %d", k)
	}
	// Requests after detaching are not seen.
	get(t, c, base+"/created")
	time.Sleep(200 * time.Millisecond)
	if n, _ := countAll(agg); n != 25 {
		t.Fatalf("counted %d after detach, want 25", n)
	}
}

// Every event is either read or counted as lost, even when a tiny ring
// overflows.
func TestRingOverflowIsAccounted(t *testing.T) {
	requireBPF(t)
	pid, exe, base := startServer(t)
	agg := aggregator.New(Metrics(), aggregator.Options{Shards: 2})
	m, err := probes.New(agg, []*probes.Family{Family()}, &probes.Options{RingBytes: 4096, DrainInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	bin, err := symbols.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	tid := agg.AddTarget(aggregator.Target{PID: pid, Service: "server"})
	att, err := m.Attach(pid, fmt.Sprintf("/proc/%d/exe", pid), bin, tid)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Detach(att)
	const workers, each = 16, 25
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{}
			for i := 0; i < each; i++ {
				get(t, c, base+"/ok/1")
			}
		}()
	}
	wg.Wait()
	time.Sleep(time.Second) // two drain intervals
	st := m.Stats()
	read, lost := st.Events["http_server"], st.Lost["http_server"]
	t.Logf("read %d, lost %d", read, lost)
	if read+lost != workers*each {
		t.Fatalf("read %d + lost %d = %d, want %d", read, lost, read+lost, workers*each)
	}
	if n, _ := countAll(agg); n != read {
		t.Fatalf("aggregated %d, read %d", n, read)
	}
}

// A real program read at a wrong offset: its events are refused and
// counted, never exported; the invalid-event policy detaches the family
// from it, says why in its status, and its requests are no longer probed.
func TestMisreadProgramIsDetached(t *testing.T) {
	requireBPF(t)
	pid, exe, base := startServer(t)
	agg := aggregator.New(Metrics(), aggregator.Options{Shards: 2})
	m, err := probes.New(agg, []*probes.Family{Family()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	bin, err := symbols.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	detached := make(chan probes.Detached, 4)
	m.OnDetached(func(d probes.Detached) { detached <- d })
	tid := agg.AddTarget(aggregator.Target{PID: pid, Service: "server"})
	att, err := m.Attach(pid, fmt.Sprintf("/proc/%d/exe", pid), bin, tid)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Detach(att)
	// The status read where wroteHeader and its neighbours lie: 1 or 257,
	// as a misidentified struct gives.
	config := configMapOf(t, pid)
	defer config.Close()
	var o bpfHttpServerOffsets
	if err := config.Lookup(uint32(pid), &o); err != nil {
		t.Fatal(err)
	}
	o.RespStatus = o.RespWroteHeader
	if err := config.Put(uint32(pid), &o); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{}
	const requests = 30
	for i := 0; i < requests; i++ {
		get(t, c, base+"/created")
	}
	var d probes.Detached
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
