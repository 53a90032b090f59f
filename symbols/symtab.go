package symbols

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// symbol is one entry of .symtab.
type symbol struct {
	Name    string
	NameOff uint64 // in the string table
	Info    byte
	Section elf.SectionIndex
	Value   uint64
	Size    uint64
}

// errSymNamesOverlap is returned for symbol tables whose names, counted once
// per symbol, hold far more bytes than their string table.
var errSymNamesOverlap = errors.New("symbol names overlap: not a table a linker wrote")

// symbols reads .symtab. Unlike debug/elf, which copies each name on its
// own, names are substrings of one copy of the string table, and the
// bytes of names read are bounded by a few times its size (linkers merge
// common suffixes, so a little more than once). The error wraps
// elf.ErrNoSymbols when there is no .symtab.
func (b *Binary) symbols() ([]symbol, error) {
	sec := b.ef.SectionByType(elf.SHT_SYMTAB)
	if sec == nil {
		return nil, elf.ErrNoSymbols
	}
	const entSize = 24 // Elf64_Sym
	if sec.Size%entSize != 0 {
		return nil, fmt.Errorf("symbol table size %d is not a multiple of %d", sec.Size, entSize)
	}
	if int(sec.Link) <= 0 || int(sec.Link) >= len(b.ef.Sections) || b.ef.Sections[sec.Link].Type != elf.SHT_STRTAB {
		return nil, fmt.Errorf("symbol table links to no string table (section %d)", sec.Link)
	}
	data, err := b.sectionData(sec)
	if err != nil {
		return nil, err
	}
	strData, err := b.sectionData(b.ef.Sections[sec.Link])
	if err != nil {
		return nil, err
	}
	strs := string(strData)
	budget := 4*len(strs) + 1024
	le := binary.LittleEndian
	out := make([]symbol, 0, len(data)/entSize)
	for off := entSize; off+entSize <= len(data); off += entSize { // entry 0 is null
		e := data[off : off+entSize]
		nameOff := uint64(le.Uint32(e))
		if nameOff >= uint64(len(strs)) {
			return nil, fmt.Errorf("symbol %d: name offset %#x out of range", off/entSize, nameOff)
		}
		s := strs[nameOff:]
		if len(s) > budget+1 {
			s = s[:budget+1]
		}
		n := strings.IndexByte(s, 0)
		if n < 0 {
			if len(s) == len(strs)-int(nameOff) {
				return nil, fmt.Errorf("symbol %d: unterminated name", off/entSize)
			}
			return nil, errSymNamesOverlap
		}
		budget -= n
		out = append(out, symbol{
			Name:    s[:n],
			NameOff: nameOff,
			Info:    e[4],
			Section: elf.SectionIndex(le.Uint16(e[6:])),
			Value:   le.Uint64(e[8:]),
			Size:    le.Uint64(e[16:]),
		})
	}
	return out, nil
}

// strtabSection returns the string table of .symtab (nil if none).
func (b *Binary) strtabSection() *elf.Section {
	sec := b.ef.SectionByType(elf.SHT_SYMTAB)
	if sec == nil || int(sec.Link) <= 0 || int(sec.Link) >= len(b.ef.Sections) || b.ef.Sections[sec.Link].Type != elf.SHT_STRTAB {
		return nil
	}
	return b.ef.Sections[sec.Link]
}
