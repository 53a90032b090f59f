package httpserver

import (
	"testing"

	"github.com/blindspot-dev/blindspot/symbols"
)

// For a real server, every field the programs take from a window lies
// inside it, and every window fits the event's room: one read each for the
// response's status, the request's fields and the HTTP/2 state's status.
func TestWindowsHoldTheFields(t *testing.T) {
	_, exe, _ := startServer(t)
	bin, err := symbols.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	v, err := httpServerOffsets(bin)
	if err != nil {
		t.Fatal(err)
	}
	o := v.(*bpfHttpServerOffsets)
	if o.PatternKind != 1 {
		t.Fatalf("pattern kind %d, want 1 (Request.Pattern) for this Go release", o.PatternKind)
	}
	type field struct {
		name      string
		off, size uint64
	}
	for _, w := range []struct {
		name     string
		off, len uint64
		fields   []field
	}{
		{"response", o.RespWinOff, o.RespWinLen, []field{{"wroteHeader", o.RespWroteHeader, 1}, {"status", o.RespStatus, 8}}},
		{"request", o.ReqWinOff, o.ReqWinLen, []field{
			{"Method", o.ReqMethod, 16}, {"URL", o.ReqUrl, 8}, {"ProtoMajor", o.ReqProtoMajor, 8},
			{"ProtoMinor", o.ReqProtoMinor, 8}, {"TLS", o.ReqTls, 8}, {"Pattern", o.ReqPattern, 16},
		}},
		{"HTTP/2 state", o.H2WinOff, o.H2WinLen, []field{{"wroteHeader", o.H2WroteHeader, 1}, {"status", o.H2Status, 8}}},
	} {
		if w.len == 0 || w.len > windowMax || w.off%8 != 0 {
			t.Errorf("%s: window [%d, +%d): want 8-aligned, 1 to %d bytes", w.name, w.off, w.len, windowMax)
			continue
		}
		for _, f := range w.fields {
			if f.off < w.off || f.off+f.size > w.off+w.len {
				t.Errorf("%s: %s at [%d, %d) is outside the window [%d, %d)", w.name, f.name, f.off, f.off+f.size, w.off, w.off+w.len)
			}
		}
	}
}
