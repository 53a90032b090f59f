package symbols

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
)

// moduleData is what the runtime's own module descriptor
// (runtime.firstmoduledata) says about the executable's layout. Section
// addresses are not enough: with external linking the C start-up code comes
// first in .text and C read-only data first in .rodata, so Go's text and
// type descriptors start somewhere inside those sections. The linker writes
// the true bounds into the descriptor, which stripping keeps.
type moduleData struct {
	addr          uint64 // where the descriptor lives
	text, etext   uint64 // runtime.text, runtime.etext
	types, etypes uint64 // runtime.types, runtime.etypes
}

// moduledata field offsets on 64-bit targets, identical for Go 1.18
// through 1.27 up to types except for the coverage counters Go 1.20 added:
//
//	pcHeader 0; funcnametab, cutab, filetab, pctab, pclntable, ftab
//	(slices) 8..151; findfunctab 152; minpc 160; maxpc 168; text 176;
//	etext 184; noptrdata..enoptrbss 192..255; [covctrs, ecovctrs
//	256..271 since 1.20]; end, gcdata, gcbss; types; [typedesclen since
//	1.27]; etypes.
const (
	mdFuncnametab = 8
	mdMinPC       = 160
	mdMaxPC       = 168
	mdText        = 176
	mdEtext       = 184
	mdSize        = 320
)

// mdTypesLayout returns where types and etypes are, and typedesclen (0 if
// the release has none), for a Go minor version.
func mdTypesLayout(minor int) (types, typedesclen, etypes uint64) {
	switch {
	case minor < 20:
		return 280, 0, 288
	case minor < 27:
		return 296, 0, 304
	}
	return 296, 304, 312
}

// errNoModuleData is returned when the descriptor cannot be found.
var errNoModuleData = errors.New("runtime.firstmoduledata not found")

// relocations returns, for PIE executables, each pointer location that
// a RELATIVE dynamic relocation fills in, with its link-time value. Go's
// linker also writes the value into the section, but other linkers may
// leave only the addend, so the addend wins.
//
// Once ReleaseTypeData let them go (they take tens of bytes per pointer of
// the executable's data), they are read again when asked for but not kept.
func (b *Binary) relocations() (map[uint64]uint64, error) {
	b.relocMu.Lock()
	defer b.relocMu.Unlock()
	if b.relocs != nil || b.relocErr != nil {
		return b.relocs, b.relocErr
	}
	relocs := make(map[uint64]uint64)
	var charged uint64
	for _, s := range b.ef.Sections {
		if s.Type != elf.SHT_RELA {
			continue
		}
		data, err := b.sectionData(s)
		if err != nil {
			b.relocErr = fmt.Errorf("read %s: %w", s.Name, err)
			return nil, b.relocErr
		}
		charged += s.Size
		for i := 0; i+24 <= len(data); i += 24 {
			off := binary.LittleEndian.Uint64(data[i:])
			typ := uint32(binary.LittleEndian.Uint64(data[i+8:]))
			if typ == rX86_64Relative || typ == rAArch64Relative {
				relocs[off] = binary.LittleEndian.Uint64(data[i+16:])
			}
		}
	}
	if b.relocsReleased {
		b.budget.Add(int64(charged)) // not kept: the bytes go back
		return relocs, nil
	}
	b.relocs, b.relocCharged = relocs, charged
	return relocs, nil
}

// releaseRelocations lets the relocations go (ReleaseTypeData).
func (b *Binary) releaseRelocations() {
	b.relocMu.Lock()
	defer b.relocMu.Unlock()
	b.relocsReleased = true
	if b.relocs != nil {
		b.budget.Add(int64(b.relocCharged))
		b.relocs, b.relocCharged = nil, 0
	}
}

// findModuleData locates the module descriptor: the one word in the
// writable data that points at the pclntab header and is followed by the
// funcnametab slice pointing where that header says. pclnAddr is the
// header's address, funcnameOff its funcnameOffset.
func (b *Binary) findModuleData(pclnAddr, funcnameOff uint64) (moduleData, error) {
	relocs, err := b.relocations()
	if err != nil {
		return moduleData{}, err
	}
	var found []moduleData
	for _, s := range b.ef.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_ALLOC == 0 || s.Flags&elf.SHF_WRITE == 0 {
			continue
		}
		data, err := b.sectionData(s)
		if errors.Is(err, errBudget) {
			return moduleData{}, err
		}
		if err != nil {
			continue
		}
		word := func(off uint64) (uint64, bool) {
			if off+8 > uint64(len(data)) {
				return 0, false
			}
			if v, ok := relocs[s.Addr+off]; ok {
				return v, true
			}
			return binary.LittleEndian.Uint64(data[off:]), true
		}
		skip := (8 - s.Addr%8) % 8
		for off := skip; off+mdSize <= uint64(len(data)); off += 8 {
			if v, _ := word(off); v != pclnAddr {
				continue
			}
			if v, _ := word(off + mdFuncnametab); v != pclnAddr+funcnameOff {
				continue
			}
			md, ok := b.decodeModuleData(s.Addr+off, word, off)
			if ok {
				found = append(found, md)
			}
		}
	}
	switch len(found) {
	case 0:
		return moduleData{}, errNoModuleData
	case 1:
		return found[0], nil
	}
	return moduleData{}, fmt.Errorf("%d candidates for runtime.firstmoduledata", len(found))
}

// decodeModuleData reads and checks the fields of a descriptor candidate,
// at the positions the binary's release puts them.
func (b *Binary) decodeModuleData(addr uint64, word func(uint64) (uint64, bool), off uint64) (moduleData, bool) {
	major, minor, ok := b.Version()
	if !ok || major != 1 {
		return moduleData{}, false
	}
	md := moduleData{addr: addr}
	var ok1, ok2, ok3, ok4 bool
	var minpc, maxpc uint64
	md.text, ok1 = word(off + mdText)
	md.etext, ok2 = word(off + mdEtext)
	minpc, ok3 = word(off + mdMinPC)
	maxpc, ok4 = word(off + mdMaxPC)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return moduleData{}, false
	}
	if !(md.text <= minpc && minpc < maxpc && maxpc <= md.etext) || !b.inSegment(md.text, elf.PF_X) {
		return moduleData{}, false
	}
	at, lenAt, endAt := mdTypesLayout(minor)
	md.types, ok1 = word(off + at)
	md.etypes, ok2 = word(off + endAt)
	if !ok1 || !ok2 || md.types >= md.etypes || md.etypes-md.types > maxSectionSize ||
		!b.inSegment(md.types, 0) || !b.inSegment(md.etypes-1, 0) || b.inSegment(md.types, elf.PF_X) {
		return moduleData{}, false
	}
	if lenAt != 0 {
		// The type descriptors proper end before the itabs that follow
		// them up to etypes.
		if n, ok := word(off + lenAt); !ok || n == 0 || n > md.etypes-md.types {
			return moduleData{}, false
		}
	}
	return md, true
}

// inSegment reports whether addr lies in the file-backed part of a loaded
// segment having the given permission flags.
func (b *Binary) inSegment(addr uint64, flags elf.ProgFlag) bool {
	for _, p := range b.loads {
		if addr >= p.Vaddr && addr-p.Vaddr < p.Filesz && p.Flags&flags == flags {
			return true
		}
	}
	return false
}
