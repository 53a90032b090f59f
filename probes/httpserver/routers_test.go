package httpserver

import (
	"bytes"
	"strings"
	"testing"

	"github.com/blindspot-dev/blindspot/symbols"
)

func TestReleaseAtLeast(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{
		{"v4.10.2", true},
		{"v4.13.4", true},
		{"v4.10.3-0.20230301000000-abcdefabcdef", true},
		{"v5.0.0", true},
		{"v4.10.1", false},
		{"v4.9.1", false},
		{"v4.10.2-rc1", false}, // before the release
		{"v4.10.2-0.20230101000000-abcdefabcdef", false}, // a pseudo-version before it
		{"v3.3.10+incompatible", false},
		{"", false},
		{"(devel)", false},
		{"v4.x", false},
	} {
		if got := releaseAtLeast(c.v, 4, 10, 2); got != c.want {
			t.Errorf("releaseAtLeast(%q, 4.10.2) = %v, want %v", c.v, got, c.want)
		}
	}
}

func TestEchoV4Release(t *testing.T) {
	for _, c := range []struct {
		deps map[string]string
		err  string // "" for accepted
	}{
		{map[string]string{"github.com/labstack/echo/v4": "v4.13.4"}, ""},
		{map[string]string{"github.com/labstack/echo/v4": "v4.10.2"}, ""},
		{map[string]string{"github.com/labstack/echo/v4": "v4.9.1"}, "v4.9.1: releases before v4.10.2"},
		{map[string]string{"github.com/labstack/echo/v4": ""}, "version unknown"}, // replaced by a directory
		{nil, "version unknown"},
	} {
		err := echoV4Release(&symbols.Binary{Deps: c.deps})
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%v: refused: %v", c.deps, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%v: error %v, want one saying %q", c.deps, err, c.err)
		}
	}
}

// What the gorilla/mux program records, the reverse template and the
// variables' names, renders as the brace template; a record whose names
// and verbs do not pair up is refused.
func TestMuxRoute(t *testing.T) {
	var buf [256]byte
	for _, c := range []struct {
		rec, want string
		ok        bool
	}{
		{"/users/%s\x00id", "/users/{id}", true},
		{"/v2/%s/blobs/uploads/%s\x00name\x00uuid", "/v2/{name}/blobs/uploads/{uuid}", true},
		{"/files/", "/files/", true},
		{"/%s%s\x00a\x00b", "/{a}{b}", true},
		{"", "", true},
		{"/users/%s", "", false},         // a verb without a name
		{"/users\x00id", "", false},      // a name without a verb
		{"/a/%s/b/%s\x00x", "", false},   // fewer names than verbs
		{"/a/%s\x00x\x00y", "", false},   // more names than verbs
		{"/a/%s\x00", "", false},         // an empty name
		{"/a/%s\x00{x}", "", false},      // a name with braces
		{"/100%safe/%s\x00x", "", false}, // a literal %s: unpaired
		{"/" + strings.Repeat("%s", 100) + "\x00" + strings.Repeat("abcdef\x00", 99) + "abcdef", "", false}, // past the buffer
	} {
		got, ok := muxRoute([]byte(c.rec), buf[:0:len(buf)])
		if ok != c.ok || ok && string(got) != c.want {
			t.Errorf("muxRoute(%q) = %q, %v; want %q, %v", c.rec, got, ok, c.want, c.ok)
		}
	}
}

// FuzzMuxRoute: any record renders without a panic, within the buffer,
// and a rendered route holds no separator and one brace pair per name.
func FuzzMuxRoute(f *testing.F) {
	for _, s := range []string{"/users/%s\x00id", "/%s/%s\x00a\x00b", "/files/", "%s", "\x00", "%%s\x00x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		var buf [256]byte
		if len(rec) > 127 {
			rec = rec[:127] // what an event holds
		}
		out, ok := muxRoute(rec, buf[:])
		if !ok {
			return
		}
		if len(out) > len(buf) || bytes.IndexByte(out, 0) >= 0 {
			t.Fatalf("muxRoute(%q) = %q", rec, out)
		}
		reverse, names, sep := bytes.Cut(rec, []byte{0})
		n := 0
		if sep {
			n = bytes.Count(names, []byte{0}) + 1
		}
		if got := bytes.Count(out, []byte("{")) - bytes.Count(reverse, []byte("{")); got != n {
			t.Fatalf("muxRoute(%q) = %q: %d names rendered, want %d", rec, out, got, n)
		}
	})
}
