package probes

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/blindspot-dev/blindspot/symbols"
)

func TestSameInstruction(t *testing.T) {
	push := []byte{0x55}
	cmp := []byte{0x49, 0x3b, 0x66, 0x10}
	for _, tc := range []struct {
		arch      string
		got, want []byte
		ok        bool
	}{
		{"amd64", push, push, true},
		{"amd64", []byte{0xcc}, push, true}, // a uprobe already there
		{"amd64", []byte{0xcc, 0x3b, 0x66, 0x10}, cmp, true},
		{"amd64", []byte{0xcc, 0x3b, 0x66, 0x11}, cmp, false},
		{"amd64", []byte{0x48, 0x3b, 0x66, 0x10}, cmp, false},
		{"amd64", []byte{0x56}, push, false},
		{"arm64", []byte{0xa0, 0x00, 0x20, 0xd4}, []byte{0xfe, 0x0f, 0x1e, 0xf8}, true},
		{"arm64", []byte{0xa1, 0x00, 0x20, 0xd4}, []byte{0xfe, 0x0f, 0x1e, 0xf8}, false},
	} {
		if got := sameInstruction(tc.arch, tc.got, tc.want); got != tc.ok {
			t.Errorf("%s % x vs % x = %v", tc.arch, tc.got, tc.want, got)
		}
	}
}

// TestVerifySites reads real sites back through a running program's
// mapping, and refuses an offset inside an instruction.
func TestVerifySites(t *testing.T) {
	requireBPF(t)
	pid, exe, _ := startServer(t)
	bin, err := symbols.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	var offs []uint64
	for _, p := range serverProbes {
		o, err := probeSites(bin, p)
		if err != nil && !(p.Optional && errors.Is(err, symbols.ErrFuncNotFound)) {
			t.Fatalf("%s: %v", p.Function, err)
		}
		offs = append(offs, o...)
	}
	if err := verifySites(pid, bin, offs); err != nil {
		t.Fatalf("real sites refused: %v", err)
	}
	f, err := bin.LookupFunc("net/http.serverHandler.ServeHTTP")
	if err != nil {
		t.Fatal(err)
	}
	entry, err := bin.FileOffset(f.Entry)
	if err != nil {
		t.Fatal(err)
	}
	// The entry's CMPQ SP, 16(R14) is four bytes long: +1 is inside it.
	err = verifySites(pid, bin, []uint64{entry + 1})
	if err == nil || !strings.Contains(err.Error(), "inside an instruction") {
		t.Errorf("site inside an instruction: %v", err)
	}
	// Sites computed from another executable (this test binary, which
	// links net/http too) do not hold the same bytes in the server.
	other, err := symbols.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var o []uint64
	for _, name := range []string{"net/http.(*Transport).roundTrip", "net/http.(*Client).do", "fmt.Fprintf", "strconv.Itoa"} {
		fo, err1 := other.LookupFunc(name)
		fs, err2 := bin.LookupFunc(name)
		if err1 == nil && err2 == nil && fo.Entry != fs.Entry {
			if o, err = probeSites(other, Probe{Function: name}); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if len(o) == 0 {
		t.Fatal("no function at different addresses in both binaries")
	}
	err = verifySites(pid, other, o)
	if err == nil || !strings.Contains(err.Error(), "refusing to probe") {
		t.Errorf("another binary's site: %v", err)
	}
}

// TestLeaveOut checks that optional probes a family leaves out of a binary
// get no sites and are reported with the reason.
func TestLeaveOut(t *testing.T) {
	requireBPF(t)
	_, exe, _ := startServer(t)
	bin, err := symbols.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	const h2 = "net/http.(*http2responseWriter).handlerDone"
	f := &loadedFamily{
		Family: &Family{Probes: serverProbes, LeaveOut: func(*symbols.Binary) map[string]string {
			return map[string]string{h2: "HTTP/2 requests not measured: test", "net/http.serverHandler.ServeHTTP": "not optional"}
		}},
		configs: map[*symbols.Binary]configResult{},
	}
	cfg := f.configFor(bin)
	if cfg.err != nil {
		t.Fatal(cfg.err)
	}
	for key := range cfg.offsets {
		if strings.HasSuffix(key, h2) {
			t.Errorf("%s placed although left out", h2)
		}
	}
	if len(cfg.left) != 1 || !strings.HasPrefix(cfg.left[0], h2+": HTTP/2 requests not measured") {
		t.Errorf("left out: %q", cfg.left)
	}
	// One copy of the HTTP/2 server is linked: two optional probes find
	// no function, one more is left out.
	if len(cfg.offsets) != len(serverProbes)-3 {
		t.Errorf("%d probes placed, want %d (a required probe is never left out)", len(cfg.offsets), len(serverProbes)-3)
	}
}

// serverProbes are where probes/httpserver places its probes (its Probes,
// as data here: the manager's tests cannot import a family), on the
// functions of testdata/server.
var serverProbes = []Probe{
	{Function: "net/http.serverHandler.ServeHTTP", Program: "uprobe_http_server_start", Idempotent: true},
	{Function: "net/http.(*response).finishRequest", Program: "uprobe_http_server_finish", Idempotent: true},
	{Function: "net/http.(*conn).serve.func1", Program: "uprobe_http_server_abort", Idempotent: true},
	{Function: "net/http.(*http2responseWriter).handlerDone", Program: "uprobe_http2_server_finish", Optional: true, Idempotent: true},
	{Function: "net/http.(*http2serverConn).runHandler.func1", Program: "uprobe_http2_server_abort", Optional: true, Idempotent: true},
	{Function: "net/http/internal/http2.(*responseWriter).handlerDone", Program: "uprobe_http2_server_finish", Optional: true, Idempotent: true},
	{Function: "net/http/internal/http2.(*serverConn).runHandler.func1", Program: "uprobe_http2_server_abort", Optional: true, Idempotent: true},
}

// Probe.After keeps the first call that follows the one call to After.
func TestCallAfter(t *testing.T) {
	at := func(addrs ...uint64) []symbols.CallSite {
		var out []symbols.CallSite
		for _, a := range addrs {
			out = append(out, symbols.CallSite{Call: a, Return: a + 5})
		}
		return out
	}
	got, err := callAfter(at(0x10, 0x40, 0x90), at(0x30))
	if err != nil || len(got) != 1 || got[0].Call != 0x40 {
		t.Errorf("callAfter = %v, %v; want the call at 0x40", got, err)
	}
	if got, err := callAfter(at(0x10), at(0x30)); err != nil || len(got) != 0 {
		t.Errorf("no call after: got %v, %v; want none", got, err)
	}
	for _, prev := range [][]symbols.CallSite{nil, at(0x20, 0x30)} {
		if _, err := callAfter(at(0x40), prev); err == nil {
			t.Errorf("callAfter with %d calls to After: no error", len(prev))
		}
	}
}
