package label

import "testing"

func TestPlausibleValues(t *testing.T) {
	for code, want := range map[uint16]bool{
		0: false, 99: false, 100: true, 101: true, 103: true, 104: false, 199: false,
		200: true, 204: true, 226: true, 227: false, 256: false, 257: false, 299: false,
		301: true, 308: true, 309: false, 399: false, 400: true, 418: true, 444: true, 499: true,
		500: true, 503: true, 520: true, 599: true, 600: false, 999: false, 12240: false, 0x7fff: false, 0xffff: false,
	} {
		if got := PlausibleStatus(code); got != want {
			t.Errorf("PlausibleStatus(%d) = %v, want %v", code, got, want)
		}
	}
	for m, want := range map[string]bool{
		"GET": true, "get": true, "PURGE": true, "M-SEARCH": true, "X_Custom~!": true, "BASELINE-CONTROL": true,
		"G\x00T": false, "G T": false, "GÉT": false, "GET\r\n": false, "(GET)": false, "GET/": false,
		"ABCDEFGHIJKLMNOPQ": false, // longer than the BPF programs copy
	} {
		if got := PlausibleMethod([]byte(m)); got != want {
			t.Errorf("PlausibleMethod(%q) = %v, want %v", m, got, want)
		}
	}
	for _, c := range []struct {
		in                  string
		truncated, sqlSpace bool
		out                 string
		ok                  bool
	}{
		{in: "/items/42", out: "/items/42", ok: true},
		{in: "/café/ü", out: "/café/ü", ok: true},
		{in: "", out: "", ok: true},
		{in: "/a\xffb", ok: false},
		{in: "/a\xffb", truncated: true, ok: false}, // not a cut rune: a bad one
		{in: "/a\x00", ok: false},
		{in: "/a\nb", ok: false},
		{in: "/a\x7f", ok: false},
		{in: "/caf\xc3", ok: false},                              // a cut rune in a text that was not cut
		{in: "/caf\xc3", truncated: true, out: "/caf", ok: true}, // cut by the buffer: trimmed
		{in: "/x\xe2\x82", truncated: true, out: "/x", ok: true},
		{in: "SELECT 1\n\tFROM t\r\n", sqlSpace: true, out: "SELECT 1\n\tFROM t\r\n", ok: true},
		{in: "SELECT 1\x00", sqlSpace: true, ok: false},
		{in: "SELECT \x1b[0m", sqlSpace: true, ok: false},
	} {
		out, ok := Text([]byte(c.in), c.truncated, c.sqlSpace)
		if ok != c.ok || ok && string(out) != c.out {
			t.Errorf("Text(%q, %v, %v) = %q, %v; want %q, %v", c.in, c.truncated, c.sqlSpace, out, ok, c.out, c.ok)
		}
	}
	for p, want := range map[string]bool{
		"1": true, "80": true, "8443": true, "65535": true,
		"0": false, "65536": false, "99999": false, "123456": false, "": false, "8o": false, "-1": false, "+80": false,
	} {
		if got := PlausiblePort([]byte(p)); got != want {
			t.Errorf("PlausiblePort(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestProtocolVersion(t *testing.T) {
	for _, c := range []struct {
		major, minor uint8
		want         string
		ok           bool
	}{{1, 0, "1.0", true}, {1, 1, "1.1", true}, {2, 0, "2", true}, {3, 0, "3", true}, {2, 1, "2.1", true}, {0, 9, "0.9", true},
		{1, 10, "", false}, {10, 0, "", false}, {255, 255, "", false}} {
		if got, ok := ProtocolVersion(c.major, c.minor); got != c.want || ok != c.ok {
			t.Errorf("ProtocolVersion(%d, %d) = %q, %v; want %q, %v", c.major, c.minor, got, ok, c.want, c.ok)
		}
	}
}
