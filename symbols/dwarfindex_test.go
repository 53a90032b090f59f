package symbols

import (
	"debug/dwarf"
	"errors"
	"testing"
)

// scanDWARFStruct is the lookup the index replaced: a scan of all of
// .debug_info for the first struct type of that name with members.
func scanDWARFStruct(d *dwarf.Data, typeName string) (map[string]uint64, error) {
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			return nil, errNoStruct
		}
		if e.Tag == dwarf.TagCompileUnit {
			continue
		}
		if e.Tag != dwarf.TagStructType || e.Val(dwarf.AttrName) != typeName || !e.Children {
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		return DWARFMembers(r)
	}
}

func TestDWARFIndexMatchesScan(t *testing.T) {
	for _, name := range []string{"go126", "go119", "go126-ext"} {
		t.Run(name, func(t *testing.T) {
			b := open(t, name)
			d, err := b.dwarfData()
			if err != nil {
				t.Fatal(err)
			}
			types := []string{"main.order", "nosuch.Type"}
			for _, s := range tableStructs {
				types = append(types, s.Type)
			}
			found := 0
			for _, typ := range types {
				want, werr := scanDWARFStruct(d, typ)
				got, gerr := b.findDWARFStruct(d, typ)
				if errors.Is(werr, errNoStruct) != errors.Is(gerr, errNoStruct) || !maps(got, want) {
					t.Errorf("%s: index gives %v (%v), scan %v (%v)", typ, got, gerr, want, werr)
				}
				if werr == nil {
					found++
				}
			}
			if found < 5 {
				t.Errorf("only %d struct types found", found)
			}
		})
	}
}

// After ReleaseDWARF, cached lookups answer as before and new ones read
// the DWARF again.
func TestReleaseDWARF(t *testing.T) {
	b := open(t, "go126")
	first, src, err := b.StructFields("net/http.Request", "Method", "URL")
	if err != nil || src != SourceDWARF {
		t.Fatalf("before release: %v %v %v", first, src, err)
	}
	b.ReleaseDWARF()
	if b.dwarf != nil {
		t.Fatal("DWARF still held after ReleaseDWARF")
	}
	again, src, err := b.StructFields("net/http.Request", "Method", "URL")
	if err != nil || src != SourceDWARF || !maps(first, again) {
		t.Errorf("cached after release: %v %v %v, want %v", again, src, err, first)
	}
	u, src, err := b.StructFields("net/url.URL", "Scheme", "Host", "Path")
	if err != nil || src != SourceDWARF || len(u) != 3 {
		t.Errorf("new lookup after release: %v %v %v", u, src, err)
	}
	if b.dwarf == nil {
		t.Error("a lookup after release did not read the DWARF again")
	}
}
