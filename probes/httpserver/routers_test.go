package httpserver

import (
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
