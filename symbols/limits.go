package symbols

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
)

// Reading a binary costs memory and time bounded by a small multiple of
// its size, whatever its headers claim. The rules:
//
//   - Section names are checked before debug/elf reads them (checkELF): it
//     copies each name on its own, so a thousand sections naming one long
//     string would cost a thousand copies of it.
//   - Section data is read through Binary.sectionData, which charges every
//     read to a budget of readBudgetFactor times the file's size: sections
//     whose headers overlap (each claiming the whole file) cannot make the
//     same bytes be read without end.
//   - Compressed sections (DWARF) may not claim more than
//     maxCompressionRatio times their stored size.
//   - Names in .gopclntab and .symtab are substrings of one copy of their
//     string table, and the bytes of names read are bounded by the table's
//     size (nameTable, symbols).
const (
	readBudgetFactor    = 4
	maxCompressionRatio = 64
)

// errBudget is returned once a binary's sections have claimed more bytes
// than its read budget.
var errBudget = errors.New("sections claim more bytes than the file holds: overlapping or lying section headers")

// readerSize returns the size of what r reads, or -1 if unknown.
func readerSize(r io.ReaderAt) int64 {
	switch v := r.(type) {
	case interface{ Size() int64 }:
		return v.Size()
	case *os.File:
		if st, err := v.Stat(); err == nil && st.Mode().IsRegular() {
			return st.Size()
		}
	}
	return -1
}

// newReadBudget returns the read budget of a file of size bytes.
func newReadBudget(size int64) *atomic.Int64 {
	b := new(atomic.Int64)
	if size < 0 {
		b.Store(readBudgetFactor * maxSectionSize)
	} else {
		b.Store(readBudgetFactor*size + 1<<20)
	}
	return b
}

// charge takes n bytes from the read budget.
func (b *Binary) charge(n uint64) error {
	if b.budget == nil {
		b.budget = newReadBudget(-1)
	}
	if n > maxSectionSize || b.budget.Add(-int64(n)) < 0 {
		return errBudget
	}
	return nil
}

// sectionData returns a section's bytes, bounded in size and charged to
// the read budget.
func (b *Binary) sectionData(s *elf.Section) ([]byte, error) {
	if s.Type == elf.SHT_NOBITS {
		return nil, fmt.Errorf("section %s has no data", s.Name)
	}
	if s.Size > maxSectionSize {
		return nil, fmt.Errorf("section %s too large", s.Name)
	}
	if s.Flags&elf.SHF_COMPRESSED != 0 && s.Size/maxCompressionRatio > s.FileSize {
		return nil, fmt.Errorf("section %s claims %d bytes from %d compressed", s.Name, s.Size, s.FileSize)
	}
	if b.size > 0 && (s.Offset > uint64(b.size) || s.FileSize > uint64(b.size)-s.Offset) {
		return nil, fmt.Errorf("section %s lies outside the file", s.Name)
	}
	if err := b.charge(s.Size); err != nil {
		return nil, fmt.Errorf("read section %s: %w", s.Name, err)
	}
	bytesRead.Add(s.Size)
	return s.Data()
}

// bytesRead counts the bytes of sections read, by every Binary.
var bytesRead atomic.Uint64

// BytesRead returns how many bytes of sections every Binary has read so
// far: what they left behind is garbage soon after, which a program that
// reads binaries now and then (the agent) may want to give back.
func BytesRead() uint64 { return bytesRead.Load() }

// checkDWARF bounds the DWARF sections before debug/elf reads (and
// decompresses) them: each may claim at most maxCompressionRatio times its
// stored size, all together at most readBudgetFactor times the file. (Not
// charged to the read budget: the DWARF is released after use and may be
// read again, ReleaseDWARF.)
func (b *Binary) checkDWARF() error {
	total := uint64(0)
	for _, s := range b.ef.Sections {
		if !strings.HasPrefix(s.Name, ".debug_") && !strings.HasPrefix(s.Name, ".zdebug_") || s.Type == elf.SHT_NOBITS {
			continue
		}
		size := s.Size
		if strings.HasPrefix(s.Name, ".zdebug_") && s.Flags&elf.SHF_COMPRESSED == 0 {
			// GNU's older format: "ZLIB" and the big-endian size.
			var h [12]byte
			if n, _ := s.ReadAt(h[:], 0); n == 12 && string(h[:4]) == "ZLIB" {
				size = binary.BigEndian.Uint64(h[4:])
				if size/maxCompressionRatio > s.FileSize {
					return fmt.Errorf("section %s claims %d bytes from %d compressed", s.Name, size, s.FileSize)
				}
			}
		} else if s.Flags&elf.SHF_COMPRESSED != 0 && size/maxCompressionRatio > s.FileSize {
			return fmt.Errorf("section %s claims %d bytes from %d compressed", s.Name, size, s.FileSize)
		}
		if b.size > 0 && (s.Offset > uint64(b.size) || s.FileSize > uint64(b.size)-s.Offset) {
			return fmt.Errorf("section %s lies outside the file", s.Name)
		}
		total += size
		if size > maxSectionSize || total > maxSectionSize || b.size > 0 && total > readBudgetFactor*uint64(b.size)+1<<20 {
			return fmt.Errorf("read section %s: %w", s.Name, errBudget)
		}
	}
	return nil
}

// checkELF checks what debug/elf would read without bound before it
// reads it: the file must be a 64-bit little-endian ELF file, and its
// section names, counted once per section, may not exceed a few times the
// size of their string table (plus 64 bytes a section: at most the file's
// size, since a section header takes 64). size is the file's size, -1 if unknown.
func checkELF(r io.ReaderAt, size int64) error {
	var h [64]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return fmt.Errorf("read elf header: %w", err)
	}
	if string(h[:4]) != elf.ELFMAG {
		return errors.New("not an ELF file")
	}
	if elf.Class(h[4]) != elf.ELFCLASS64 || elf.Data(h[5]) != elf.ELFDATA2LSB {
		return fmt.Errorf("%w: %v %v", ErrUnsupportedArch, elf.Class(h[4]), elf.Data(h[5]))
	}
	le := binary.LittleEndian
	if size < 0 {
		size = 1 << 62
	}
	// debug/elf reads the program headers in one piece, however many
	// their count and size claim.
	phoff := le.Uint64(h[0x20:])
	phentsize, phnum := uint64(le.Uint16(h[0x36:])), uint64(le.Uint16(h[0x38:]))
	if phnum > 0 && (phoff > uint64(size) || phnum*phentsize > uint64(size)-phoff) {
		return fmt.Errorf("%d program headers of %d bytes do not fit in a %d-byte file", phnum, phentsize, size)
	}
	shoff := le.Uint64(h[0x28:])
	shentsize := uint64(le.Uint16(h[0x3a:]))
	shnum := uint64(le.Uint16(h[0x3c:]))
	shstrndx := uint64(le.Uint16(h[0x3e:]))
	if shoff == 0 || shentsize < 64 {
		return nil // no sections, or a header debug/elf rejects
	}
	readHeader := func(i uint64) ([]byte, error) {
		off := shoff + i*shentsize
		if i >= (1<<63)/shentsize || off < shoff || off > uint64(size) || uint64(size)-off < 64 {
			return nil, fmt.Errorf("section header %d lies outside the file", i)
		}
		var sh [64]byte
		if _, err := r.ReadAt(sh[:], int64(off)); err != nil {
			return nil, fmt.Errorf("read section header %d: %w", i, err)
		}
		return sh[:], nil
	}
	if shnum == 0 || shstrndx == uint64(elf.SHN_XINDEX) {
		// More than 0xff00 sections: the counts are in section 0.
		sh, err := readHeader(0)
		if err != nil {
			return err
		}
		if shnum == 0 {
			shnum = le.Uint64(sh[32:])
		}
		if shstrndx == uint64(elf.SHN_XINDEX) {
			shstrndx = uint64(le.Uint32(sh[40:]))
		}
	}
	if shnum > uint64(size)/shentsize {
		return fmt.Errorf("%d section headers do not fit in a %d-byte file", shnum, size)
	}
	if shstrndx == 0 || shstrndx >= shnum {
		return nil // no names (or a table debug/elf rejects)
	}
	sh, err := readHeader(shstrndx)
	if err != nil {
		return err
	}
	flags, off, strSize := le.Uint64(sh[8:]), le.Uint64(sh[24:]), le.Uint64(sh[32:])
	if elf.SectionType(le.Uint32(sh[4:])) != elf.SHT_STRTAB {
		return nil // debug/elf rejects it
	}
	if elf.SectionFlag(flags)&elf.SHF_COMPRESSED != 0 {
		return errors.New("section name table is compressed")
	}
	if off > uint64(size) || strSize > uint64(size)-off {
		return errors.New("section name table lies outside the file")
	}
	strs := make([]byte, strSize)
	if _, err := r.ReadAt(strs, int64(off)); err != nil {
		return fmt.Errorf("read section names: %w", err)
	}
	hdrs := make([]byte, shnum*shentsize)
	if _, err := r.ReadAt(hdrs, int64(shoff)); err != nil {
		return fmt.Errorf("read section headers: %w", err)
	}
	budget := 4*len(strs) + 64*int(shnum) // linkers share suffixes: ".rela.text", ".text"
	for i := uint64(0); i < shnum; i++ {
		nameOff := uint64(le.Uint32(hdrs[i*shentsize:]))
		if nameOff >= uint64(len(strs)) {
			continue // debug/elf rejects it
		}
		s := strs[nameOff:]
		if len(s) > budget+1 {
			s = s[:budget+1]
		}
		n := bytes.IndexByte(s, 0)
		if n < 0 {
			if len(s) == len(strs)-int(nameOff) {
				continue // unterminated: debug/elf rejects it
			}
			return errors.New("section names overlap: not a file a linker wrote")
		}
		budget -= n
	}
	return nil
}
