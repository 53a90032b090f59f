package symbols

import (
	"strings"
	"testing"
)

// TestMstatsFromCode reads runtime.mstats' fields from the runtime's code
// in every amd64 build and compares them with DWARF of the same release.
func TestMstatsFromCode(t *testing.T) {
	fields := []string{"numgc", "pause_ns", "enablegc"}
	for _, bd := range builds {
		if bd.goarch != "" {
			continue
		}
		t.Run(bd.name, func(t *testing.T) {
			b := open(t, bd.name)
			got, err := b.codeStructFields("runtime.mstats", fields)
			if err != nil {
				t.Fatal(err)
			}
			ref := open(t, strings.TrimSuffix(strings.TrimSuffix(bd.name, "-s"), "-pie"))
			want, err := ref.dwarfStructFields("runtime.mstats")
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fields {
				if got[f] != want[f] {
					t.Errorf("%s: code says %d, dwarf %d", f, got[f], want[f])
				}
			}
			// With the code as a source, stripped builds of releases
			// without a table row still answer, and all sources agree.
			if _, src, err := b.StructFields("runtime.mstats", fields...); err != nil {
				t.Errorf("StructFields: %v (%v)", err, src)
			}
		})
	}
}

// TestMstatsWithoutTable: a stripped binary of a release the table lacks
// (as Go 1.20 and 1.25 are) still gets runtime.mstats, from its code.
func TestMstatsWithoutTable(t *testing.T) {
	b := open(t, "go126-ext-s")
	saved := offsetTable
	offsetTable = nil
	defer func() { offsetTable = saved }()
	got, src, err := b.StructFields("runtime.mstats", "numgc", "pause_ns", "enablegc")
	if err != nil || src != SourceCode || got["numgc"] != 7680 || got["pause_ns"] != 3584 || got["enablegc"] != 10432 {
		t.Errorf("got %v from %v: %v", got, src, err)
	}
	if _, _, err := b.StructFields("runtime.gcControllerState", "gcPercent"); err == nil {
		t.Error("gcControllerState answered without DWARF, type data or table")
	}
}
