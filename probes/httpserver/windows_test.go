package httpserver

import (
	"testing"

	"github.com/blindspot-dev/blindspot/probes/internal/windowtest"
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
	windowtest.Check(t, windowMax,
		windowtest.W("response", o.RespWinOff, o.RespWinLen, windowtest.F("wroteHeader", o.RespWroteHeader, 1), windowtest.F("status", o.RespStatus, 8)),
		windowtest.W("request", o.ReqWinOff, o.ReqWinLen,
			windowtest.F("Method", o.ReqMethod, 16), windowtest.F("URL", o.ReqUrl, 8), windowtest.F("ProtoMajor", o.ReqProtoMajor, 8),
			windowtest.F("ProtoMinor", o.ReqProtoMinor, 8), windowtest.F("TLS", o.ReqTls, 8), windowtest.F("Pattern", o.ReqPattern, 16),
		),
		windowtest.W("HTTP/2 state", o.H2WinOff, o.H2WinLen, windowtest.F("wroteHeader", o.H2WroteHeader, 1), windowtest.F("status", o.H2Status, 8)),
	)
}
