// Package crafted damages Go executables the way a hostile user of a host
// could, for the tests that check that reading them stays bounded in
// memory and time and never crashes the agent: tables that lie about
// their contents, section headers that overlap or point outside the file,
// huge counts. Every change leaves the loaded segments alone, so a damaged
// copy of a real Go program still runs: the Go runtime never reads
// section headers, only the agent does.
//
// Everything here works on 64-bit little-endian ELF files.
package crafted

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

var le = binary.LittleEndian

// Offsets in an Elf64_Ehdr and an Elf64_Shdr.
const (
	ehShoff     = 0x28
	ehShentsize = 0x3a
	ehShnum     = 0x3c
	ehShstrndx  = 0x3e
	shName      = 0
	shType      = 4
	shFlags     = 8
	shAddr      = 16
	shOffset    = 24
	shSize      = 32
	shLink      = 40
	shEntSize   = 64
)

// pclntab header of Go 1.18 and 1.19, which holds its own text start.
const pclnMagic118 = 0xfffffff0

// pclnHeader returns a Go 1.18 pclntab header: nfunc, nfiles, textStart,
// funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset.
func pclnHeader(nfunc, textStart, funcnameOff, cuOff, pclnOff uint64) []byte {
	h := make([]byte, 8+8*8)
	le.PutUint32(h, pclnMagic118)
	h[6], h[7] = 1, 8 // instruction size quantum, pointer size
	for i, w := range []uint64{nfunc, 0, textStart, funcnameOff, cuOff, cuOff, cuOff, pclnOff} {
		le.PutUint64(h[8+8*i:], w)
	}
	return h
}

// SharedNamePclntab returns a .gopclntab of about size bytes in which
// every function is one record naming one long name that fills half the
// table: read naively (each function's name copied), it costs memory
// growing with the square of its size — 8 GB for 512 KiB.
func SharedNamePclntab(size int, textStart uint64) []byte {
	nameLen := size / 2
	nfunc := (size - nameLen - 72 - 40) / 8
	hdrLen := uint64(72)
	names := append(bytes.Repeat([]byte{'A'}, nameLen), 0)
	pclnOff := hdrLen + uint64(len(names))
	tab := make([]byte, (nfunc+1)*8+40)
	rec := uint32((nfunc + 1) * 8) // the one _func record, after the table
	for i := 0; i <= nfunc; i++ {
		le.PutUint32(tab[i*8:], 0) // every function at the same entry
		le.PutUint32(tab[i*8+4:], rec)
	}
	le.PutUint32(tab[rec:], 0)   // entryOff
	le.PutUint32(tab[rec+4:], 0) // nameOff: the long name
	out := pclnHeader(uint64(nfunc), textStart, hdrLen, pclnOff, pclnOff)
	return append(append(out, names...), tab...)
}

// OverlappingNamesPclntab returns a .gopclntab of about size bytes whose
// functions each have their own record, function i named by the long name
// from its i-th byte on: distinct names, each almost as long as the table.
func OverlappingNamesPclntab(size int, textStart uint64) []byte {
	nameLen := size / 2
	nfunc := (size - nameLen - 72) / (8 + 40)
	hdrLen := uint64(72)
	names := append(bytes.Repeat([]byte{'B'}, nameLen), 0)
	pclnOff := hdrLen + uint64(len(names))
	tabLen := (nfunc + 1) * 8
	tab := make([]byte, tabLen+nfunc*40)
	for i := 0; i <= nfunc; i++ {
		le.PutUint32(tab[i*8:], uint32(i*16))
		if i == nfunc {
			break
		}
		rec := tabLen + i*40
		le.PutUint32(tab[i*8+4:], uint32(rec))
		le.PutUint32(tab[rec:], uint32(i*16))
		le.PutUint32(tab[rec+4:], uint32(i%nameLen))
	}
	out := pclnHeader(uint64(nfunc), textStart, hdrLen, pclnOff, pclnOff)
	return append(append(out, names...), tab...)
}

// HugeCountPclntab returns a small .gopclntab that claims 2^40 functions.
func HugeCountPclntab(textStart uint64) []byte {
	out := pclnHeader(1<<40, textStart, 72, 80, 80)
	return append(out, make([]byte, 64)...)
}

// file is an ELF file being edited.
type file struct {
	data      []byte
	shoff     uint64
	shentsize uint64
	shnum     uint64
	shstrndx  uint64
}

func parse(data []byte) (*file, error) {
	if len(data) < 64 || string(data[:4]) != elf.ELFMAG || data[4] != byte(elf.ELFCLASS64) || data[5] != byte(elf.ELFDATA2LSB) {
		return nil, errors.New("not a 64-bit little-endian ELF file")
	}
	f := &file{
		data:      bytes.Clone(data),
		shoff:     le.Uint64(data[ehShoff:]),
		shentsize: uint64(le.Uint16(data[ehShentsize:])),
		shnum:     uint64(le.Uint16(data[ehShnum:])),
		shstrndx:  uint64(le.Uint16(data[ehShstrndx:])),
	}
	if f.shoff == 0 || f.shentsize != shEntSize || f.shnum == 0 || f.shoff+f.shnum*shEntSize > uint64(len(data)) {
		return nil, errors.New("no usable section header table")
	}
	return f, nil
}

// header returns section i's header bytes (a view into f.data).
func (f *file) header(i uint64) []byte {
	off := f.shoff + i*f.shentsize
	return f.data[off : off+shEntSize]
}

// section returns the index of the named section.
func (f *file) section(name string) (uint64, error) {
	sh := f.header(f.shstrndx)
	strs := f.data[le.Uint64(sh[shOffset:]):][:le.Uint64(sh[shSize:])]
	for i := uint64(0); i < f.shnum; i++ {
		off := le.Uint32(f.header(i)[shName:])
		if int(off) >= len(strs) {
			continue
		}
		n := bytes.IndexByte(strs[off:], 0)
		if n >= 0 && string(strs[off:off+uint32(n)]) == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("no section %s", name)
}

// appendData appends d at the end of the file, 8-aligned, and returns its
// offset.
func (f *file) appendData(d []byte) uint64 {
	for len(f.data)%8 != 0 {
		f.data = append(f.data, 0)
	}
	off := uint64(len(f.data))
	f.data = append(f.data, d...)
	return off
}

// ReplaceSection returns a copy of exe whose named section's header points
// at data, appended to the file. Its address stays: the program still
// runs with its own, intact table in memory.
func ReplaceSection(exe []byte, name string, data []byte) ([]byte, error) {
	f, err := parse(exe)
	if err != nil {
		return nil, err
	}
	i, err := f.section(name)
	if err != nil {
		return nil, err
	}
	off := f.appendData(data)
	sh := f.header(i)
	le.PutUint64(sh[shOffset:], off)
	le.PutUint64(sh[shSize:], uint64(len(data)))
	return f.data, nil
}

// SectionOutside returns a copy of exe whose named section's header
// points past the end of the file.
func SectionOutside(exe []byte, name string) ([]byte, error) {
	f, err := parse(exe)
	if err != nil {
		return nil, err
	}
	i, err := f.section(name)
	if err != nil {
		return nil, err
	}
	sh := f.header(i)
	le.PutUint64(sh[shOffset:], uint64(len(f.data))+1<<20)
	return f.data, nil
}

// HugeSectionCount returns a copy of exe whose ELF header defers its
// section count to section 0, which claims 2^40 sections.
func HugeSectionCount(exe []byte) ([]byte, error) {
	f, err := parse(exe)
	if err != nil {
		return nil, err
	}
	le.PutUint16(f.data[ehShnum:], 0)
	le.PutUint64(f.header(0)[shSize:], 1<<40)
	return f.data, nil
}

// withExtraSections returns a copy of exe with a new section header
// table, appended: the old headers followed by extra ones. shstrtab, if
// not nil, replaces the section name table (appended too).
func withExtraSections(exe []byte, extra [][]byte, shstrtab []byte) ([]byte, error) {
	f, err := parse(exe)
	if err != nil {
		return nil, err
	}
	n := f.shnum + uint64(len(extra))
	if n >= uint64(elf.SHN_LORESERVE) {
		return nil, fmt.Errorf("%d sections: too many", n)
	}
	table := bytes.Clone(f.data[f.shoff : f.shoff+f.shnum*shEntSize])
	for _, h := range extra {
		table = append(table, h...)
	}
	if shstrtab != nil {
		off := f.appendData(shstrtab)
		sh := table[f.shstrndx*shEntSize:][:shEntSize]
		le.PutUint64(sh[shOffset:], off)
		le.PutUint64(sh[shSize:], uint64(len(shstrtab)))
	}
	off := f.appendData(table)
	le.PutUint64(f.data[ehShoff:], off)
	le.PutUint16(f.data[ehShnum:], uint16(n))
	return f.data, nil
}

// OverlappingSections returns a copy of exe with n more writable data
// sections, each claiming the whole file.
func OverlappingSections(exe []byte, n int) ([]byte, error) {
	f, err := parse(exe)
	if err != nil {
		return nil, err
	}
	name := le.Uint32(f.header(1)[shName:])
	extra := make([][]byte, n)
	for i := range extra {
		h := make([]byte, shEntSize)
		le.PutUint32(h[shName:], name)
		le.PutUint32(h[shType:], uint32(elf.SHT_PROGBITS))
		le.PutUint64(h[shFlags:], uint64(elf.SHF_ALLOC|elf.SHF_WRITE))
		le.PutUint64(h[shAddr:], 0x10000000)
		le.PutUint64(h[shSize:], uint64(len(exe)))
		extra[i] = h
	}
	return withExtraSections(exe, extra, nil)
}

// LongSectionNames returns a copy of exe with n more sections, all named
// by one name of length bytes: debug/elf copies each section's name.
func LongSectionNames(exe []byte, n, length int) ([]byte, error) {
	f, err := parse(exe)
	if err != nil {
		return nil, err
	}
	sh := f.header(f.shstrndx)
	strs := bytes.Clone(f.data[le.Uint64(sh[shOffset:]):][:le.Uint64(sh[shSize:])])
	long := uint32(len(strs))
	strs = append(append(strs, bytes.Repeat([]byte{'C'}, length)...), 0)
	extra := make([][]byte, n)
	for i := range extra {
		h := make([]byte, shEntSize)
		le.PutUint32(h[shName:], long)
		le.PutUint32(h[shType:], uint32(elf.SHT_NOTE))
		extra[i] = h
	}
	return withExtraSections(exe, extra, strs)
}

// OverlappingSymbolNames returns a copy of exe (which must have a .symtab)
// whose symbols are all named by one name as long as the string table.
func OverlappingSymbolNames(exe []byte) ([]byte, error) {
	f, err := parse(exe)
	if err != nil {
		return nil, err
	}
	i, err := f.section(".symtab")
	if err != nil {
		return nil, err
	}
	sym := f.header(i)
	strtab := f.header(uint64(le.Uint32(sym[shLink:])))
	strs := f.data[le.Uint64(strtab[shOffset:]):][:le.Uint64(strtab[shSize:])]
	for j := 1; j < len(strs)-1; j++ {
		strs[j] = 'D'
	}
	syms := f.data[le.Uint64(sym[shOffset:]):][:le.Uint64(sym[shSize:])]
	for off := 24; off+24 <= len(syms); off += 24 {
		le.PutUint32(syms[off:], 1)
	}
	return f.data, nil
}

// BrokenSymtabLink returns a copy of exe (which must have a .symtab) whose
// .symtab names no string table.
func BrokenSymtabLink(exe []byte) ([]byte, error) {
	f, err := parse(exe)
	if err != nil {
		return nil, err
	}
	i, err := f.section(".symtab")
	if err != nil {
		return nil, err
	}
	le.PutUint32(f.header(i)[shLink:], 0)
	return f.data, nil
}

// Truncated returns exe cut halfway between the end of its last loaded
// segment and the end of the file: the program still runs, but what lies
// after (.symtab, DWARF, and for some linkers the section headers) is
// cut.
func Truncated(exe []byte) ([]byte, error) {
	f, err := parse(exe)
	if err != nil {
		return nil, err
	}
	phoff := le.Uint64(f.data[0x20:])
	phentsize, phnum := uint64(le.Uint16(f.data[0x36:])), uint64(le.Uint16(f.data[0x38:]))
	end := uint64(0)
	for i := uint64(0); i < phnum; i++ {
		ph := f.data[phoff+i*phentsize:]
		if elf.ProgType(le.Uint32(ph)) == elf.PT_LOAD {
			end = max(end, le.Uint64(ph[8:])+le.Uint64(ph[32:]))
		}
	}
	if end == 0 || end >= uint64(len(f.data)) {
		return nil, errors.New("nothing follows the loaded segments")
	}
	return f.data[:end+(uint64(len(f.data))-end)/2], nil
}

// Variant is one way of damaging an executable.
type Variant struct {
	// Name says what is damaged, e.g. "pclntab-shared-name".
	Name string
	// Make returns the damaged copy of exe.
	Make func(exe []byte) ([]byte, error)
}

// Variants returns the damages of one table or header this package
// knows, each keeping the program runnable, with tables of about tableSize
// bytes. (The damages to .symtab and Truncated need an unstripped
// program.)
func Variants(tableSize int) []Variant {
	text := uint64(0x401000)
	return []Variant{
		{"pclntab-shared-name", func(e []byte) ([]byte, error) {
			return ReplaceSection(e, ".gopclntab", SharedNamePclntab(tableSize, text))
		}},
		{"pclntab-overlapping-names", func(e []byte) ([]byte, error) {
			return ReplaceSection(e, ".gopclntab", OverlappingNamesPclntab(tableSize, text))
		}},
		{"pclntab-huge-count", func(e []byte) ([]byte, error) {
			return ReplaceSection(e, ".gopclntab", HugeCountPclntab(text))
		}},
		{"pclntab-outside-file", func(e []byte) ([]byte, error) {
			return SectionOutside(e, ".gopclntab")
		}},
		{"huge-section-count", HugeSectionCount},
		{"overlapping-sections", func(e []byte) ([]byte, error) {
			return OverlappingSections(e, 2000)
		}},
		{"long-section-names", func(e []byte) ([]byte, error) {
			return LongSectionNames(e, 4000, tableSize)
		}},
	}
}

// CyclicDWARFType returns a copy of exe whose DWARF makes the type of
// param of function a struct that contains itself: the parameter's type
// reference is pointed at a struct of the program, and that struct's
// first member's type reference at the struct itself. No Go type can be
// that (it would be infinitely large), so a reader that walks a
// parameter's type by value without a bound never ends. The patched
// .debug_info is appended uncompressed; the program's code and data are
// untouched (the Go runtime never reads DWARF).
func CyclicDWARFType(exe []byte, function, param string) ([]byte, error) {
	ef, err := elf.NewFile(bytes.NewReader(exe))
	if err != nil {
		return nil, err
	}
	d, err := ef.DWARF()
	if err != nil {
		return nil, err
	}
	sec := ef.Section(".debug_info")
	if sec == nil {
		return nil, errors.New("no .debug_info")
	}
	info, err := sec.Data() // decompressed
	if err != nil {
		return nil, err
	}
	// A DIE's bytes run from its offset to the next DIE's.
	type die struct {
		e       *dwarf.Entry
		end     dwarf.Offset
		typ     dwarf.Offset
		hasType bool
	}
	var (
		target, member        *die
		inFunc                bool
		structEntry, lastOpen *dwarf.Entry
		prev                  *die
	)
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if prev != nil {
			if e != nil {
				prev.end = e.Offset
			} else {
				prev.end = dwarf.Offset(len(info))
			}
			prev = nil
		}
		if e == nil {
			break
		}
		if e.Tag == 0 {
			continue
		}
		typ, hasType := e.Val(dwarf.AttrType).(dwarf.Offset)
		cur := &die{e: e, typ: typ, hasType: hasType}
		switch e.Tag {
		case dwarf.TagSubprogram:
			inFunc = e.Val(dwarf.AttrName) == function && e.Val(dwarf.AttrInline) == nil
		case dwarf.TagFormalParameter:
			if inFunc && target == nil && e.Val(dwarf.AttrName) == param && hasType {
				target, prev = cur, cur
			}
		case dwarf.TagStructType:
			name, _ := e.Val(dwarf.AttrName).(string)
			size, _ := e.Val(dwarf.AttrByteSize).(int64)
			if e.Children && size > 0 && name != "string" && !strings.HasPrefix(name, "[]") && !strings.HasPrefix(name, "runtime.") {
				lastOpen = e
			} else {
				lastOpen = nil
			}
		case dwarf.TagMember:
			if member == nil && lastOpen != nil && hasType {
				structEntry, member, prev = lastOpen, cur, cur
			}
			lastOpen = nil
		default:
			lastOpen = nil
		}
	}
	if target == nil {
		return nil, fmt.Errorf("no DWARF parameter %s of %s", param, function)
	}
	if member == nil {
		return nil, errors.New("no struct with a member in the DWARF")
	}
	patch := func(from, to dwarf.Offset, old, new dwarf.Offset) error {
		var o, n [4]byte
		le.PutUint32(o[:], uint32(old))
		le.PutUint32(n[:], uint32(new))
		b := info[from:to]
		if bytes.Count(b, o[:]) != 1 {
			return fmt.Errorf("type reference %#x is not once in the DIE at %#x", old, from)
		}
		copy(b[bytes.Index(b, o[:]):], n[:])
		return nil
	}
	if err := patch(target.e.Offset, target.end, target.typ, structEntry.Offset); err != nil {
		return nil, err
	}
	if err := patch(member.e.Offset, member.end, member.typ, structEntry.Offset); err != nil {
		return nil, err
	}
	f, err := parse(exe)
	if err != nil {
		return nil, err
	}
	i, err := f.section(".debug_info")
	if err != nil {
		return nil, err
	}
	off := f.appendData(info)
	sh := f.header(i)
	le.PutUint64(sh[shOffset:], off)
	le.PutUint64(sh[shSize:], uint64(len(info)))
	le.PutUint64(sh[shFlags:], le.Uint64(sh[shFlags:])&^uint64(elf.SHF_COMPRESSED))
	return f.data, nil
}
