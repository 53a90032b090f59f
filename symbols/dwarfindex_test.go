package symbols

import (
	"debug/dwarf"
	"errors"
	"runtime"
	"strings"
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
	if b.dwarf != nil || b.dwarfIndex != nil {
		t.Fatal("DWARF or its index still held after ReleaseDWARF")
	}
	again, src, err := b.StructFields("net/http.Request", "Method", "URL")
	if err != nil || src != SourceDWARF || !maps(first, again) {
		t.Errorf("cached after release: %v %v %v, want %v", again, src, err, first)
	}
	u, src, err := b.StructFields("net/url.URL", "Scheme", "Host", "Path")
	if err != nil || src != SourceDWARF || len(u) != 3 {
		t.Errorf("new lookup after release: %v %v %v", u, src, err)
	}
	if b.dwarf == nil || b.dwarfIndex == nil {
		t.Error("a lookup after release did not read the DWARF again")
	}
}

// After ReleaseTypeData, the section copies are gone and their bytes back
// in the read budget; cached lookups answer as before without reading
// them, new ones read them again.
func TestReleaseTypeData(t *testing.T) {
	for _, name := range []string{"go126-s", "go126-pie-s"} {
		t.Run(name, func(t *testing.T) {
			b, err := Open(target(t, name))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			budget := b.budget.Load()
			first, src, err := b.StructFields("net/http.Request", "Method", "URL")
			if err != nil || src != SourceTypeData {
				t.Fatalf("before release: %v %v %v", first, src, err)
			}
			if b.types == nil || b.budget.Load() >= budget {
				t.Fatalf("type data not read (held %v, budget %d then %d)", b.types != nil, budget, b.budget.Load())
			}
			// Type names, as error events ask for them: the same from the
			// file after the release as from the sections before.
			type answer struct {
				name string
				ok   bool
			}
			names := map[uint64]answer{}
			named := 0
			for _, r := range b.types.regions {
				for a := r.addr; a < r.addr+r.size && len(names) < 200000; a += 8 {
					n, err := b.TypeName(a)
					names[a] = answer{n, err == nil}
					if err == nil {
						named++
					}
				}
			}
			if named < 100 {
				t.Fatalf("only %d type names read", named)
			}
			b.ReleaseTypeData()
			// The budget gets back what the type data took (and a PIE's
			// relocations, read with the binary).
			if b.types != nil || b.relocs != nil || b.budget.Load() < budget || b.PIE != (b.budget.Load() > budget) {
				t.Fatalf("after release: held %v (relocations %v), budget %d, before the lookup %d", b.types != nil, b.relocs != nil, b.budget.Load(), budget)
			}
			again, src, err := b.StructFields("net/http.Request", "Method", "URL")
			if err != nil || src != SourceTypeData || !maps(first, again) {
				t.Errorf("cached after release: %v %v %v, want %v", again, src, err, first)
			}
			for a, want := range names {
				if n, err := b.TypeName(a); n != want.name || (err == nil) != want.ok {
					t.Fatalf("type name at %#x after release: %q %v, before %q %v", a, n, err, want.name, want.ok)
				}
			}
			if b.types != nil || b.relocs != nil {
				t.Error("a cached lookup or a type name read the type data again")
			}
			u, src, err := b.StructFields("net/url.URL", "Scheme", "Host", "Path")
			if err != nil || src != SourceTypeData || len(u) != 3 {
				t.Errorf("new lookup after release: %v %v %v", u, src, err)
			}
			if b.types == nil || b.relocs != nil {
				t.Errorf("a lookup after release: type data read again %v, relocations kept %v", b.types != nil, b.relocs != nil)
			}
		})
	}
}

// The DWARF read for lookups (lookupDWARF: no line tables, location or
// range lists) indexes the same struct types, at the same offsets, with
// the same members as debug/elf's complete reading, in every build.
func TestLookupDWARFMatchesComplete(t *testing.T) {
	for _, bd := range builds {
		if bd.stripped {
			continue
		}
		t.Run(bd.name, func(t *testing.T) {
			b, err := Open(target(t, bd.name))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			part, raw, err := b.lookupDWARF()
			units := raw.units
			if err != nil {
				t.Fatal(err)
			}
			if len(units) < 10 {
				t.Fatalf("%d units", len(units))
			}
			full, err := b.ef.DWARF()
			if err != nil {
				t.Fatal(err)
			}
			// The runtime's unit only, against every unit of the
			// complete reading: the same Go struct types (C ones of cgo
			// builds live in their own units).
			// It must be the runtime's unit that answers, not the
			// complete scan indexDWARFStructs falls back to (units once
			// held the headers' offsets, where Seek fails: every index
			// was a complete scan, silently).
			pi, ok := indexRuntimeUnit(part, units)
			if !ok {
				t.Fatal("the runtime's unit was not read, or holds no runtime.g")
			}
			fi, err := indexDWARFStructs(full, dwarfSections{})
			if err != nil {
				t.Fatal(err)
			}
			for name, off := range pi {
				if fi[name] != off {
					t.Fatalf("%s at %#x, %#x in the complete DWARF", name, off, fi[name])
				}
			}
			for name := range fi {
				if _, ok := pi[name]; !ok && strings.Contains(name, ".") {
					t.Fatalf("%s missing (at %#x in the complete DWARF)", name, fi[name])
				}
			}
			// The walk in place reads that unit as debug/dwarf does.
			wi, err := walkRuntimeStructs(raw.abbrev, raw.info, raw.str, raw.lineStr)
			if err != nil {
				t.Fatalf("walk refused the runtime's unit: %v", err)
			}
			if len(wi) != len(pi) {
				t.Fatalf("walk indexed %d struct types, debug/dwarf %d", len(wi), len(pi))
			}
			for name, off := range pi {
				if got, ok := wi[name]; !ok || got != off {
					t.Fatalf("%s: walk has %#x (%v), debug/dwarf %#x", name, got, ok, off)
				}
			}
			if len(pi) < 100 {
				t.Fatalf("%d struct types indexed", len(pi))
			}
			for _, name := range []string{"net/http.Request", "runtime.g", "database/sql.DB"} {
				off, ok := pi[name]
				if !ok {
					continue
				}
				rp, rf := part.Reader(), full.Reader()
				rp.Seek(off)
				rf.Seek(off)
				rp.Next()
				rf.Next()
				mp, err1 := DWARFMembers(rp)
				mf, err2 := DWARFMembers(rf)
				if err1 != nil || err2 != nil || !maps(mp, mf) {
					t.Errorf("%s: members %v (%v), complete %v (%v)", name, mp, err1, mf, err2)
				}
			}
		})
	}
}

// TestRetainedPerExecutable: what a Binary keeps once attached (its
// lookups made, its DWARF and type data released) is its function table,
// about 28 bytes per function and no names, and a little more: an agent
// keeps one per executable it observes.
func TestRetainedPerExecutable(t *testing.T) {
	for _, name := range []string{"go126", "go126-s", "go126-pie"} {
		t.Run(name, func(t *testing.T) {
			path := target(t, name)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if _, _, err := b.StructFields("net/http.Request", "Method", "URL"); err != nil {
				t.Fatal(err)
			}
			f, err := b.LookupFunc("net/http.(*response).finishRequest")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Sites(f); err != nil {
				t.Fatal(err)
			}
			b.ReleaseDWARF()
			b.ReleaseTypeData()
			runtime.GC()
			runtime.ReadMemStats(&after)
			retained := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			n := len(b.funcs().funcs)
			limit := int64(32*n + 256<<10)
			t.Logf("%d functions, %d bytes retained (%d per function)", n, retained, retained/int64(n))
			if retained > limit {
				t.Errorf("%d bytes retained for %d functions, bound %d", retained, n, limit)
			}
			runtime.KeepAlive(b)
		})
	}
}
