package probes

import "testing"

func TestWindow(t *testing.T) {
	for _, c := range []struct {
		name   string
		limit  uint64
		fields []Field
		off, n uint64
		ok     bool
	}{
		// net/http.response of Go 1.19-1.25: wroteHeader (bool) at 40,
		// status (int) at 120.
		{"response", 256, []Field{{40, 1}, {120, 8}}, 40, 88, true},
		// Go 1.26: wroteHeader at 32, status at 128.
		{"response 1.26", 256, []Field{{128, 8}, {32, 1}}, 32, 104, true},
		// net/http.Request of Go 1.23+: Method, URL, ProtoMajor,
		// ProtoMinor, TLS, Pattern.
		{"request", 256, []Field{{0, 16}, {16, 8}, {40, 8}, {48, 8}, {208, 8}, {232, 16}}, 0, 248, true},
		// Go 1.22's pat ends at 256: exactly the room.
		{"request 1.22", 256, []Field{{0, 16}, {248, 8}}, 0, 256, true},
		{"too far apart", 255, []Field{{0, 16}, {248, 8}}, 0, 0, false},
		// The start is rounded down to 8: the words stay aligned.
		{"unaligned first field", 64, []Field{{41, 1}, {48, 8}}, 40, 16, true},
		{"one field", 8, []Field{{16, 8}}, 16, 8, true},
		{"no field", 256, nil, 0, 0, false},
		{"empty field", 256, []Field{{0, 0}}, 0, 0, false},
		{"overflowing field", 256, []Field{{^uint64(0) - 3, 8}}, 0, 0, false},
	} {
		off, n, ok := Window(c.limit, c.fields...)
		if off != c.off || n != c.n || ok != c.ok {
			t.Errorf("%s: Window(%d, %v) = %d, %d, %v; want %d, %d, %v", c.name, c.limit, c.fields, off, n, ok, c.off, c.n, c.ok)
		}
	}
}
