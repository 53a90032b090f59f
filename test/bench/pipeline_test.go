//go:build linux

package main

import (
	"encoding/binary"
	"testing"

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
