package symbols

import (
	"debug/dwarf"
	"encoding/binary"
	"errors"
	"fmt"
)

// The struct index (name → offset of the first struct type of that name
// with members) is built from the runtime's unit, which holds every Go
// type and the runtime's functions: some 200,000 entries, for which
// debug/dwarf's Reader allocates an Entry and its fields each (27 ms and
// 9 MB for a small server, most of its attach time). walkRuntimeStructs
// reads the same entries in place, allocating only the index. It reads
// what the Go linker writes; anything else (an unknown or indirect form, a
// name in a string table it does not read, a sibling attribute, an
// unterminated unit) is refused with an error, and the caller asks
// debug/dwarf instead. Its work is bounded by the bytes it reads: it
// keeps no stack (only a depth), each abbreviation table is parsed once,
// and the abbreviations and attributes it goes through are counted
// against a budget proportional to the sections' sizes.

// errWalk is the error of every input walkRuntimeStructs refuses.
var errWalk = errors.New("dwarf walk")

func walkErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errWalk}, args...)...)
}

// DWARF constants the walker needs.
const (
	dwTagCompileUnit = 0x11
	dwTagStructType  = 0x13
	dwAtSibling      = 0x01
	dwAtName         = 0x03
	dwFormString     = 0x08
	dwFormStrp       = 0x0e
	dwFormLineStrp   = 0x1f
	dwFormIndirect   = 0x16
	dwFormImplicit   = 0x21
)

type walkAttr struct {
	attr, form uint32
}

type walkAbbrev struct {
	tag      uint32
	children bool
	attrs    []walkAttr
}

// walkTable is one abbreviation table: dense when its codes are 1..n in
// order (the Go linker's), else by code.
type walkTable struct {
	dense  []walkAbbrev
	byCode map[uint32]walkAbbrev
}

func (t *walkTable) get(code uint32) (walkAbbrev, bool) {
	if t.byCode == nil {
		if code == 0 || uint64(code) > uint64(len(t.dense)) {
			return walkAbbrev{}, false
		}
		return t.dense[code-1], true
	}
	a, ok := t.byCode[code]
	return a, ok
}

// walkBuf reads a section from off, recording the first error.
type walkBuf struct {
	data []byte
	off  uint64
	err  error
}

func (b *walkBuf) fail(what string) {
	if b.err == nil {
		b.err = walkErr("%s at %#x", what, b.off)
	}
}

func (b *walkBuf) u8() uint8 {
	if b.err != nil || b.off >= uint64(len(b.data)) {
		b.fail("truncated")
		return 0
	}
	v := b.data[b.off]
	b.off++
	return v
}

func (b *walkBuf) fixed(n uint64) uint64 {
	if b.err != nil || n > uint64(len(b.data))-b.off {
		b.fail("truncated")
		return 0
	}
	var v uint64
	for i := n; i > 0; i-- { // little endian
		v = v<<8 | uint64(b.data[b.off+i-1])
	}
	b.off += n
	return v
}

func (b *walkBuf) skip(n uint64) {
	if b.err != nil || n > uint64(len(b.data))-b.off {
		b.fail("truncated")
		return
	}
	b.off += n
}

// uleb reads an unsigned LEB128 number (bits past 64 are dropped, as
// debug/dwarf drops them).
func (b *walkBuf) uleb() uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c := b.u8()
		if b.err != nil {
			return 0
		}
		if shift < 64 {
			v |= uint64(c&0x7f) << shift
		}
		if c&0x80 == 0 {
			return v
		}
	}
}

// cstring returns the NUL-terminated string at the offset, without
// copying it.
func (b *walkBuf) cstring() []byte {
	if b.err != nil {
		return nil
	}
	for i := b.off; i < uint64(len(b.data)); i++ {
		if b.data[i] == 0 {
			s := b.data[b.off:i]
			b.off = i + 1
			return s
		}
	}
	b.fail("unterminated string")
	return nil
}

// walkUnit is a unit's header.
type walkUnit struct {
	entries, end      uint64 // first entry, end of the unit
	version           uint16
	offSize, addrSize uint64
	abbrevOff         uint64
}

// parseUnitHeader reads the header of the unit at off in info.
func parseUnitHeader(info []byte, off uint64) (walkUnit, bool) {
	if off+4 > uint64(len(info)) {
		return walkUnit{}, false
	}
	n, hdr, offSize := uint64(binary.LittleEndian.Uint32(info[off:])), uint64(4), uint64(4)
	switch {
	case n == 0xffffffff: // 64-bit DWARF
		if off+12 > uint64(len(info)) {
			return walkUnit{}, false
		}
		n, hdr, offSize = binary.LittleEndian.Uint64(info[off+4:]), 12, 8
	case n >= 0xfffffff0:
		return walkUnit{}, false
	}
	if n > uint64(len(info))-off-hdr || n < 2 {
		return walkUnit{}, false
	}
	u := walkUnit{end: off + hdr + n, offSize: offSize}
	b := walkBuf{data: info[:u.end], off: off + hdr}
	u.version = uint16(b.fixed(2))
	switch u.version {
	case 2, 3, 4:
		u.abbrevOff = b.fixed(offSize)
		u.addrSize = uint64(b.u8())
	case 5:
		typ := b.u8()
		u.addrSize = uint64(b.u8())
		u.abbrevOff = b.fixed(offSize)
		switch typ {
		case 0x01, 0x03: // compile, partial
		case 0x04, 0x05: // skeleton, split compile: an 8-byte unit id
			b.skip(8)
		case 0x02, 0x06: // type, split type: signature and type offset
			b.skip(8 + offSize)
		default:
			return walkUnit{}, false
		}
	default:
		return walkUnit{}, false
	}
	if b.err != nil {
		return walkUnit{}, false
	}
	u.entries = b.off
	return u, true
}

// walker holds what walkRuntimeStructs reads and its budget.
type walker struct {
	abbrev, info, str, lineStr []byte
	tables                     map[uint64]*walkTable
	abbrevBudget               int64 // abbreviation bytes left to parse
	budget                     int64 // entries and attributes left to go through
}

// table parses (once) the abbreviation table at off.
func (w *walker) table(off uint64) (*walkTable, error) {
	if t, ok := w.tables[off]; ok {
		return t, nil
	}
	if off >= uint64(len(w.abbrev)) {
		return nil, walkErr("abbreviations at %#x outside their section", off)
	}
	b := walkBuf{data: w.abbrev, off: off}
	t := &walkTable{}
	for {
		code := uint32(b.uleb())
		if b.err != nil {
			return nil, b.err
		}
		if code == 0 {
			break
		}
		a := walkAbbrev{tag: uint32(b.uleb()), children: b.u8() != 0}
		if a.tag == 0 && b.err == nil {
			// An entry of tag 0 reads as the end of its siblings through
			// debug/dwarf's entries: leave such a table to it.
			return nil, walkErr("abbreviation %d has tag 0", code)
		}
		for {
			attr, form := uint32(b.uleb()), uint32(b.uleb())
			if attr == 0 && form == 0 {
				break
			}
			if form == dwFormImplicit {
				b.uleb() // the value, in the table: nothing to skip in entries
			}
			a.attrs = append(a.attrs, walkAttr{attr, form})
			if b.err != nil {
				return nil, b.err
			}
		}
		if b.err != nil {
			return nil, b.err
		}
		if t.byCode == nil && uint64(code) == uint64(len(t.dense))+1 {
			t.dense = append(t.dense, a)
			continue
		}
		if t.byCode == nil { // codes out of order: a map, later codes winning
			t.byCode = make(map[uint32]walkAbbrev, len(t.dense)+1)
			for i, d := range t.dense {
				t.byCode[uint32(i+1)] = d
			}
			t.dense = nil
		}
		t.byCode[code] = a
	}
	if w.abbrevBudget -= int64(b.off - off); w.abbrevBudget < 0 {
		return nil, walkErr("abbreviations read beyond the budget")
	}
	w.tables[off] = t
	return t, nil
}

// entry reads the entry at b's offset: its abbreviation (ok false for a
// null entry) and its name when it is a string in the entry or .debug_str
// (nil if it has none).
func (w *walker) entry(b *walkBuf, u *walkUnit, t *walkTable) (a walkAbbrev, name []byte, ok bool, err error) {
	code := uint32(b.uleb())
	if b.err != nil {
		return a, nil, false, b.err
	}
	if code == 0 {
		return a, nil, false, nil
	}
	if a, ok = t.get(code); !ok {
		return a, nil, false, walkErr("unknown abbreviation %d at %#x", code, b.off)
	}
	if w.budget -= int64(len(a.attrs)) + 1; w.budget < 0 {
		return a, nil, false, walkErr("attributes beyond the budget")
	}
	named := false
	for _, at := range a.attrs {
		if at.attr == dwAtSibling {
			// debug/dwarf's SkipChildren jumps there: not walked alike.
			return a, nil, false, walkErr("sibling attribute at %#x", b.off)
		}
		if at.attr == dwAtName && !named {
			named = true
			switch at.form {
			case dwFormString:
				name = b.cstring()
				continue
			case dwFormStrp, dwFormLineStrp:
				table := w.str
				if at.form == dwFormLineStrp {
					table = w.lineStr
				}
				off := b.fixed(u.offSize)
				s := walkBuf{data: table, off: off}
				if off > uint64(len(table)) {
					return a, nil, false, walkErr("name at %#x outside its string section", off)
				}
				if name = s.cstring(); s.err != nil {
					return a, nil, false, s.err
				}
				continue
			case 0x1a, 0x25, 0x26, 0x27, 0x28, 0x1d, 0x1f02, 0x1f21:
				// strx*, strp_sup, GNU str_index and strp_alt:
				// tables not read here.
				return a, nil, false, walkErr("name form %#x at %#x", at.form, b.off)
			}
		}
		skipForm(b, u, at.form)
	}
	if b.err != nil {
		return a, nil, false, b.err
	}
	return a, name, true, nil
}

// skipForm skips an attribute's value of that form.
func skipForm(b *walkBuf, u *walkUnit, form uint32) {
	switch form {
	case 0x19, dwFormImplicit: // flag_present, implicit_const
	case 0x0b, 0x0c, 0x11, 0x25, 0x29: // data1, flag, ref1, strx1, addrx1
		b.skip(1)
	case 0x05, 0x12, 0x26, 0x2a: // data2, ref2, strx2, addrx2
		b.skip(2)
	case 0x27, 0x2b: // strx3, addrx3
		b.skip(3)
	case 0x06, 0x13, 0x1c, 0x28, 0x2c: // data4, ref4, ref_sup4, strx4, addrx4
		b.skip(4)
	case 0x07, 0x14, 0x20, 0x24: // data8, ref8, ref_sig8, ref_sup8
		b.skip(8)
	case 0x1e: // data16
		b.skip(16)
	case 0x01: // addr
		switch u.addrSize {
		case 1, 2, 4, 8:
			b.skip(u.addrSize)
		default:
			b.fail("address size")
		}
	case 0x10: // ref_addr: an address's size in DWARF 2, an offset's since
		if u.version == 2 {
			b.skip(u.addrSize)
		} else {
			b.skip(u.offSize)
		}
	case dwFormStrp, 0x17, 0x1d, 0x1f, 0x1f20, 0x1f21: // strp, sec_offset, strp_sup, line_strp, GNU ref_alt, strp_alt
		b.skip(u.offSize)
	case 0x0d, 0x0f, 0x15, 0x1a, 0x1b, 0x22, 0x23, 0x1f01, 0x1f02: // sdata, udata, ref_udata, strx, addrx, loclistx, rnglistx, GNU indexes
		b.uleb()
	case dwFormString:
		b.cstring()
	case 0x0a: // block1
		b.skip(uint64(b.u8()))
	case 0x03: // block2
		b.skip(b.fixed(2))
	case 0x04: // block4
		b.skip(b.fixed(4))
	case 0x09, 0x18: // block, exprloc
		b.skip(b.uleb())
	default: // indirect, and forms unknown
		b.fail(fmt.Sprintf("form %#x", form))
	}
}

// walkRuntimeStructs indexes the struct types with members that are
// direct children of every unit named runtime, first of each name
// winning, as indexRuntimeUnit does with debug/dwarf. It returns errWalk
// for what it does not read as debug/dwarf would.
func walkRuntimeStructs(abbrev, info, str, lineStr []byte) (idx map[string]dwarf.Offset, err error) {
	w := &walker{
		abbrev: abbrev, info: info, str: str, lineStr: lineStr,
		tables:       make(map[uint64]*walkTable),
		abbrevBudget: 2*int64(len(abbrev)) + 1<<16,
		budget:       4*int64(len(info)) + 1<<16,
	}
	idx = make(map[string]dwarf.Offset)
	for off := uint64(0); off < uint64(len(info)); {
		u, ok := parseUnitHeader(info, off)
		if !ok {
			break // where dwarfUnits stops too
		}
		off = u.end
		t, err := w.table(u.abbrevOff)
		if err != nil {
			return nil, err
		}
		b := walkBuf{data: info[:u.end], off: u.entries}
		cu, name, ok, err := w.entry(&b, &u, t)
		if err != nil {
			return nil, err
		}
		if !ok || cu.tag != dwTagCompileUnit {
			return nil, walkErr("unit at %#x does not start with a compile unit", u.entries)
		}
		if string(name) != "runtime" || !cu.children {
			continue
		}
		for depth := 1; depth > 0; {
			at := b.off
			if at >= u.end {
				// debug/dwarf reads on into the next unit.
				return nil, walkErr("unit at %#x not terminated", u.entries)
			}
			a, name, ok, err := w.entry(&b, &u, t)
			if err != nil {
				return nil, err
			}
			if !ok {
				depth--
				continue
			}
			if depth == 1 && a.tag == dwTagStructType && a.children && name != nil {
				if _, seen := idx[string(name)]; !seen {
					idx[string(name)] = dwarf.Offset(at)
				}
			}
			if a.children {
				depth++
			}
		}
	}
	return idx, nil
}
