package symbols

import (
	"errors"
	"strings"
	"testing"
)

// TestStructFieldsSourcesMustAgree: a table row that disagrees with the
// binary's proven type data (or DWARF) refuses the struct instead of
// picking one answer.
func TestStructFieldsSourcesMustAgree(t *testing.T) {
	for _, name := range []string{"go126-s", "go126"} {
		b := open(t, name)
		saved := offsetTable
		offsetTable = []versionOffsets{{Major: 1, Minor: 26, Structs: map[string]map[string]uint64{
			"net/url.URL": {"Scheme": 0, "Host": 48}, // truly 40
		}}}
		_, _, err := b.StructFields("net/url.URL", "Scheme", "Host")
		got, src, err2 := b.StructFields("net/url.URL", "Scheme") // agreeing fields still answer
		offsetTable = saved
		if !errors.Is(err, ErrSourcesDisagree) || !strings.Contains(err.Error(), "Host") {
			t.Errorf("%s: disagreeing table accepted: %v", name, err)
		}
		if err2 != nil || got["Scheme"] != 0 || src == SourceTable {
			t.Errorf("%s: agreeing field: %v from %v, %v", name, got, src, err2)
		}
	}
}
