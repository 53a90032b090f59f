package symbols

import (
	"bytes"
	"debug/dwarf"
	"encoding/binary"
	"errors"
	"testing"
)

// tinyDWARF builds .debug_abbrev, .debug_info and .debug_str as the Go
// linker writes them (DWARF 4): a unit main, then a unit runtime holding
// struct types (one twice, one without members) and a function with a
// parameter; edit changes the runtime unit's entries before they are
// framed.
func tinyDWARF(edit func(abbrev, entries []byte) ([]byte, []byte)) (abbrev, info, str []byte) {
	uleb := func(b []byte, v uint64) []byte {
		for {
			c := byte(v & 0x7f)
			v >>= 7
			if v != 0 {
				c |= 0x80
			}
			b = append(b, c)
			if v == 0 {
				return b
			}
		}
	}
	// code, tag, children, (attribute, form)...
	table := [][]uint64{
		{1, 0x11, 1, 0x03, 0x08, 0x10, 0x17},             // compile unit: name string, stmt_list sec_offset
		{2, 0x13, 1, 0x03, 0x08, 0x0b, 0x0f},             // struct: name string, byte_size udata
		{3, 0x0d, 0, 0x03, 0x08, 0x38, 0x0f, 0x49, 0x13}, // member: name, data_member_location udata, type ref4
		{4, 0x2e, 1, 0x03, 0x0e, 0x11, 0x01, 0x3f, 0x19}, // subprogram: name strp, low_pc addr, external flag_present
		{5, 0x05, 0, 0x03, 0x08, 0x02, 0x18},             // parameter: name, location exprloc
		{6, 0x13, 0, 0x03, 0x08},                         // struct without members
	}
	for _, a := range table {
		abbrev = uleb(abbrev, a[0])
		abbrev = uleb(abbrev, a[1])
		abbrev = append(abbrev, byte(a[2]))
		for _, v := range a[3:] {
			abbrev = uleb(abbrev, v)
		}
		abbrev = append(abbrev, 0, 0)
	}
	abbrev = append(abbrev, 0)
	str = []byte("\x00runtime.main\x00")
	cstr := func(b []byte, s string) []byte { return append(append(b, s...), 0) }
	unit := func(entries []byte) []byte {
		h := binary.LittleEndian.AppendUint32(nil, uint32(2+4+1+len(entries)))
		h = binary.LittleEndian.AppendUint16(h, 4)
		h = binary.LittleEndian.AppendUint32(h, 0)
		return append(append(h, 8), entries...)
	}
	var m []byte
	m = cstr(append(m, 1), "main")
	m = binary.LittleEndian.AppendUint32(m, 0)
	m = cstr(append(m, 2), "main.t")
	m = append(m, 8)
	m = cstr(append(m, 3), "a")
	m = append(m, 0, 0, 0, 0, 0)
	m = append(m, 0, 0) // end of main.t, of the unit
	var r []byte
	r = cstr(append(r, 1), "runtime")
	r = binary.LittleEndian.AppendUint32(r, 0)
	for _, name := range []string{"runtime.g", "runtime.m", "runtime.g"} {
		r = cstr(append(r, 2), name)
		r = append(r, 16)
		r = cstr(append(r, 3), "stack")
		r = append(r, 0, 0, 0, 0, 0)
		r = cstr(append(r, 3), "m")
		r = append(r, 8, 0, 0, 0, 0)
		r = append(r, 0)
	}
	r = append(r, 4)
	r = binary.LittleEndian.AppendUint32(r, 1) // "runtime.main"
	r = binary.LittleEndian.AppendUint64(r, 0x401000)
	r = cstr(append(r, 5), "gp")
	r = append(r, 1, 0x9c) // a one-byte expression
	r = append(r, 0)       // end of runtime.main
	r = cstr(append(r, 6), "runtime.empty")
	r = append(r, 0) // end of the unit
	if edit != nil {
		abbrev, r = edit(abbrev, r)
	}
	info = append(unit(m), unit(r)...)
	return abbrev, info, str
}

// debugDWARFRuntimeStructs is the index debug/dwarf reads from the
// runtime's unit, ok false when it refuses the data.
func debugDWARFRuntimeStructs(abbrev, info, str, lineStr []byte) (idx map[string]dwarf.Offset, ok bool) {
	defer func() {
		if recover() != nil {
			idx, ok = nil, false
		}
	}()
	d, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, str)
	if err != nil {
		return nil, false
	}
	if lineStr != nil {
		if err := d.AddSection(".debug_line_str", lineStr); err != nil {
			return nil, false
		}
	}
	return indexRuntimeUnit(d, dwarfUnits(info))
}

func TestWalkRuntimeStructs(t *testing.T) {
	abbrev, info, str := tinyDWARF(nil)
	got, err := walkRuntimeStructs(abbrev, info, str, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, ok := debugDWARFRuntimeStructs(abbrev, info, str, nil)
	if !ok {
		t.Fatal("debug/dwarf refused the tiny DWARF")
	}
	if len(got) != 2 || len(want) != 2 || got["runtime.g"] != want["runtime.g"] || got["runtime.m"] != want["runtime.m"] {
		t.Fatalf("walk %v, debug/dwarf %v (want runtime.g and runtime.m, not main.t nor runtime.empty)", got, want)
	}
}

// What the walk does not read as debug/dwarf does, it refuses, and the
// index is then debug/dwarf's.
func TestWalkRuntimeStructsRefuses(t *testing.T) {
	for name, edit := range map[string]func(a, r []byte) ([]byte, []byte){
		"sibling attribute": func(a, r []byte) ([]byte, []byte) {
			// runtime.empty's abbreviation gets a sibling (ref4) attribute.
			i := bytes.LastIndex(a, []byte{6, 0x13, 0, 0x03, 0x08, 0, 0})
			a = append(a[:i+5:i+5], 0x01, 0x13, 0, 0, 0)
			at := bytes.LastIndex(r, []byte("runtime.empty\x00")) + len("runtime.empty\x00")
			r = append(r[:at:at], append([]byte{0, 0, 0, 0}, r[at:]...)...)
			return a, r
		},
		"indirect form": func(a, r []byte) ([]byte, []byte) {
			i := bytes.LastIndex(a, []byte{6, 0x13, 0, 0x03, 0x08, 0, 0})
			a = append(a[:i+5:i+5], 0x0b, 0x16, 0, 0, 0)
			at := bytes.LastIndex(r, []byte("runtime.empty\x00")) + len("runtime.empty\x00")
			r = append(r[:at:at], append([]byte{0x0b, 1}, r[at:]...)...)
			return a, r
		},
		"unterminated unit": func(a, r []byte) ([]byte, []byte) { return a, r[:len(r)-1] },
		"unknown abbreviation": func(a, r []byte) ([]byte, []byte) {
			return a, append(append(r[:len(r)-1:len(r)-1], 9), 0)
		},
		"name in .debug_str_offsets": func(a, r []byte) ([]byte, []byte) {
			i := bytes.LastIndex(a, []byte{6, 0x13, 0, 0x03, 0x08, 0, 0})
			a[i+4] = 0x28 // strx4
			at := bytes.LastIndex(r, []byte("runtime.empty\x00"))
			r = append(r[:at:at], append([]byte{0, 0, 0, 0}, r[at+len("runtime.empty\x00"):]...)...)
			return a, r
		},
	} {
		t.Run(name, func(t *testing.T) {
			abbrev, info, str := tinyDWARF(edit)
			if idx, err := walkRuntimeStructs(abbrev, info, str, nil); !errors.Is(err, errWalk) {
				t.Fatalf("walk gave %v, %v; want it refused", idx, err)
			}
			d, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, str)
			if err != nil {
				return
			}
			want, werr := indexDWARFStructs(d, dwarfSections{units: dwarfUnits(info)})
			got, gerr := indexDWARFStructs(d, dwarfSections{abbrev: abbrev, info: info, str: str, units: dwarfUnits(info)})
			if (werr == nil) != (gerr == nil) || len(got) != len(want) {
				t.Fatalf("index %v (%v), debug/dwarf's %v (%v)", got, gerr, want, werr)
			}
			for name, off := range want {
				if got[name] != off {
					t.Fatalf("%s at %#x, debug/dwarf %#x", name, got[name], off)
				}
			}
		})
	}
}

// FuzzDWARFIndex walks arbitrary sections as the struct index does: no
// panic, allocations bounded by the bytes read, and when both the walk
// and debug/dwarf read them, the same index.
func FuzzDWARFIndex(f *testing.F) {
	abbrev, info, str := tinyDWARF(nil)
	f.Add(abbrev, info, str, []byte("\x00runtime\x00"))
	f.Fuzz(func(t *testing.T, abbrev, info, str, lineStr []byte) {
		size := len(abbrev) + len(info) + len(str) + len(lineStr)
		var idx map[string]dwarf.Offset
		var err error
		n := allocated(func() { idx, err = walkRuntimeStructs(abbrev, info, str, lineStr) })
		if limit := uint64(64*size + 1<<20); n > limit {
			t.Fatalf("%d bytes: walk allocated %d", size, n)
		}
		if err != nil {
			if !errors.Is(err, errWalk) {
				t.Fatalf("walk failed with %v, not errWalk", err)
			}
			return
		}
		want, ok := debugDWARFRuntimeStructs(abbrev, info, str, lineStr)
		if !ok {
			return
		}
		if len(idx) != len(want) {
			t.Fatalf("walk %v, debug/dwarf %v", idx, want)
		}
		for name, off := range want {
			if got, ok := idx[name]; !ok || got != off {
				t.Fatalf("%q: walk %#x (%v), debug/dwarf %#x", name, got, ok, off)
			}
		}
	})
}
