//go:build linux

package main

import (
	"encoding/binary"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf/rlimit"

	"github.com/blindspot-dev/blindspot/probes/httpserver"
)

// ceilDiv counts the runs r in [0, x) with r % n == i: the events of
// template i among the first x runs.
func TestCeilDiv(t *testing.T) {
	for _, n := range []uint64{1, 3, 16} {
		for x := uint64(0); x < 50; x++ {
			for i := uint64(0); i < n; i++ {
				var want uint64
				for r := uint64(0); r < x; r++ {
					if r%n == i {
						want++
					}
				}
				if got := ceilDiv(x, n, i); got != want {
					t.Fatalf("ceilDiv(%d, %d, %d) = %d, want %d", x, n, i, got, want)
				}
			}
		}
	}
}

// The producer's events are laid out by the family's own BTF: fields land
// at their offsets, char arrays with their lengths, and a value or text
// that does not fit is an error, not a truncation.
func TestBTFEvent(t *testing.T) {
	spec, err := httpserver.Family().Spec()
	if err != nil {
		t.Fatal(err)
	}
	e := newBTFEvent(spec, "http_server_event")
	e.setUint("hdr.kind", 1)
	e.setUint("hdr.pid", 4242)
	e.setUint("hdr.end_ns", 1<<40)
	e.setUint("status", 503)
	e.setChars("method", "method_len", "PATCH")
	if e.err != nil {
		t.Fatal(e.err)
	}
	off := func(path string) int {
		o, _, ok := e.field(path)
		if !ok {
			t.Fatalf("no field %s: %v", path, e.err)
		}
		return o
	}
	if k := binary.LittleEndian.Uint16(e.buf[off("hdr.kind"):]); k != 1 {
		t.Errorf("kind %d", k)
	}
	if p := binary.LittleEndian.Uint32(e.buf[off("hdr.pid"):]); p != 4242 {
		t.Errorf("pid %d", p)
	}
	if n := binary.LittleEndian.Uint64(e.buf[off("hdr.end_ns"):]); n != 1<<40 {
		t.Errorf("end_ns %d", n)
	}
	if s := binary.LittleEndian.Uint16(e.buf[off("status"):]); s != 503 {
		t.Errorf("status %d", s)
	}
	if m := string(e.buf[off("method") : off("method")+5]); m != "PATCH" || e.buf[off("method_len")] != 5 {
		t.Errorf("method %q, length %d", m, e.buf[off("method_len")])
	}
	for name, f := range map[string]func(*btfEvent){
		"too large":    func(e *btfEvent) { e.setUint("status", 1<<16) },
		"too long":     func(e *btfEvent) { e.setChars("method", "method_len", "0123456789abcdefX") },
		"no field":     func(e *btfEvent) { e.setUint("hdr.nothing", 1) },
		"not struct":   func(e *btfEvent) { e.setUint("status.x", 1) },
		"no such type": func(e *btfEvent) { *e = *newBTFEvent(spec, "no_such_event") },
	} {
		e := newBTFEvent(spec, "http_server_event")
		f(e)
		if e.err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// The bench binary is also the pipeline's producer (producerMain): so is
// this test binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == producerCommand {
		os.Exit(producerMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// The agent's whole event path, from the ring to the series, at a modest
// rate: every event written is read or counted as lost, every rate that
// lost nothing leaves exactly its events in the series its labels name,
// and the steady path allocates nothing per event (the bench's own
// bookkeeping per rate aside).
func TestPipelineExactAndAllocationFree(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root in CI")
		}
		t.Skip("needs root (BPF)")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	b, err := newPipelineBench(pipelineOptions{duration: 1500 * time.Millisecond, cpu: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	if _, err := b.level(20_000); err != nil { // first sight of every label and series
		t.Fatal(err)
	}
	exact := 0
	for i := 0; i < 2; i++ {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		lv, err := b.level(200_000)
		if err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		if lv.Consumed+lv.Lost != lv.Produced || lv.Produced == 0 {
			t.Fatalf("read %d + lost %d != written %d", lv.Consumed, lv.Lost, lv.Produced)
		}
		if lv.ZeroLoss {
			if !lv.Exact {
				t.Fatalf("series not exact: %s", lv.Problem)
			}
			exact++
		}
		// One allocation per batch of 64 events would be 0.016.
		if perEvent := float64(after.Mallocs-before.Mallocs) / float64(lv.Consumed); perEvent > 0.01 {
			t.Errorf("%d allocations for %d events: %.3f per event", after.Mallocs-before.Mallocs, lv.Consumed, perEvent)
		}
		t.Logf("%d events, %d lost, %d allocations, %.0f ns of agent CPU per event", lv.Consumed, lv.Lost, after.Mallocs-before.Mallocs, lv.NsPerEvent)
	}
	if exact == 0 {
		t.Log("every rate lost events (a loaded machine): series exactness not checked")
	}
}
