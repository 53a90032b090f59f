package symbols

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Magic numbers at the start of .gopclntab.
const (
	pclnMagic116 = 0xfffffffa // Go 1.16, 1.17
	pclnMagic118 = 0xfffffff0 // Go 1.18, 1.19
	pclnMagic120 = 0xfffffff1 // Go 1.20 and later
)

var errPclnTruncated = errors.New("truncated")

// pclnFunc is one function of the pclntab with the _func flags needed to
// name ABI wrappers.
type pclnFunc struct {
	Func
	funcID uint8 // abi.FuncID: 0 for ordinary functions
	asm    bool  // abi.FuncFlagAsm: implemented in assembly
	// abi0 says that Name is the name in the table with ".abi0" added
	// (nameABI0); nameAt is where that starts in the section's data
	// (sections are smaller than 4 GiB, maxSectionSize).
	abi0   bool
	nameAt uint32
}

// funcFlagAsm is abi.FuncFlagAsm (runtime funcFlag_ASM in Go 1.18/1.19).
const funcFlagAsm = 1 << 2

// pclnReader is a bounds-checked little-endian view of a pclntab section.
type pclnReader struct {
	data    []byte
	ptrSize int
}

func (r pclnReader) u32(off uint64) (uint32, error) {
	if off > uint64(len(r.data)) || uint64(len(r.data))-off < 4 {
		return 0, fmt.Errorf("read uint32 at %#x: %w", off, errPclnTruncated)
	}
	return binary.LittleEndian.Uint32(r.data[off:]), nil
}

func (r pclnReader) word(off uint64) (uint64, error) {
	if r.ptrSize == 4 {
		v, err := r.u32(off)
		return uint64(v), err
	}
	if off > uint64(len(r.data)) || uint64(len(r.data))-off < 8 {
		return 0, fmt.Errorf("read word at %#x: %w", off, errPclnTruncated)
	}
	return binary.LittleEndian.Uint64(r.data[off:]), nil
}

// maxNameLen bounds the names read one at a time (wrapper and inline tree
// names): Go's longest function names, generic instantiations, are a few
// hundred bytes.
const maxNameLen = 4096

// cstring reads a NUL-terminated string of at most max bytes at off.
func (r pclnReader) cstring(off uint64, max int) (string, error) {
	if off >= uint64(len(r.data)) {
		return "", fmt.Errorf("read name at %#x: %w", off, errPclnTruncated)
	}
	s := r.data[off:]
	if len(s) > max+1 {
		s = s[:max+1]
	}
	i := bytes.IndexByte(s, 0)
	if i < 0 {
		return "", fmt.Errorf("read name at %#x: unterminated", off)
	}
	return string(s[:i]), nil
}

// errNamesOverlap is returned for function tables whose names, counted
// once per function, hold more bytes than the whole table: functions that
// share one name or point into each other's names. A linker writes each
// name once, so only a crafted table does this, and reading it would cost
// memory and time growing with the square of its size.
var errNamesOverlap = errors.New("function names overlap: not a table a Go linker wrote")

// nameTable is the funcnametab of a pclntab, copied once: function names
// are substrings of it, so reading them copies nothing. The bytes of names
// read, counted once per function, are bounded by budget.
type nameTable struct {
	s      string
	budget int
}

// newNameTable copies data[start:end] (end is clamped to the data).
func newNameTable(data []byte, start, end uint64) nameTable {
	if end <= start || end > uint64(len(data)) {
		end = uint64(len(data))
	}
	return nameTable{s: string(data[start:end]), budget: len(data)}
}

// name returns the NUL-terminated name at off.
func (t *nameTable) name(off uint64) (string, error) {
	if off >= uint64(len(t.s)) {
		return "", fmt.Errorf("read name at %#x: %w", off, errPclnTruncated)
	}
	s := t.s[off:]
	if len(s) > t.budget+1 {
		s = s[:t.budget+1]
	}
	i := strings.IndexByte(s, 0)
	if i < 0 {
		if len(s) == len(t.s)-int(off) {
			return "", fmt.Errorf("read name at %#x: unterminated", off)
		}
		return "", errNamesOverlap
	}
	t.budget -= i
	return s[:i], nil
}

// pclnFuncnameOffset returns the header's funcnameOffset, 0 if unknown.
func pclnFuncnameOffset(data []byte) uint64 {
	if len(data) < 8 {
		return 0
	}
	r := pclnReader{data: data, ptrSize: int(data[7])}
	word := uint64(3) // nfunc, nfiles, textStart, funcnameOffset
	if binary.LittleEndian.Uint32(data) == pclnMagic116 {
		word = 2
	}
	v, err := r.word(8 + word*uint64(r.ptrSize))
	if err != nil {
		return 0
	}
	return v
}

// pclnHeaderText returns the text start a Go 1.18 or 1.19 header holds, 0
// for other releases.
func pclnHeaderText(data []byte) uint64 {
	if len(data) < 8 {
		return 0
	}
	m := binary.LittleEndian.Uint32(data)
	if m != pclnMagic118 && m != pclnMagic120 {
		return 0
	}
	r := pclnReader{data: data, ptrSize: int(data[7])}
	v, err := r.word(8 + 2*uint64(r.ptrSize))
	if err != nil {
		return 0
	}
	return v
}

// parsePclntab returns the function table of a .gopclntab section: names,
// entries and ends (the next function's entry), sorted by entry.
//
// textStart is the address of runtime.text, used when the header's own
// textStart is zero: Go 1.20 and later leave it zero in the file (the
// runtime fills it in from moduledata), whereas Go 1.18 and 1.19 store the
// link-time address there, PIE or not.
func parsePclntab(data []byte, textStart uint64) ([]pclnFunc, error) {
	if len(data) < 16 {
		return nil, fmt.Errorf("header: %w", errPclnTruncated)
	}
	magic := binary.LittleEndian.Uint32(data)
	if data[4] != 0 || data[5] != 0 {
		return nil, errors.New("header: bad padding")
	}
	switch data[6] { // minimum instruction size
	case 1, 2, 4:
	default:
		return nil, fmt.Errorf("header: bad instruction size %d", data[6])
	}
	r := pclnReader{data: data, ptrSize: int(data[7])}
	if r.ptrSize != 4 && r.ptrSize != 8 {
		return nil, fmt.Errorf("header: bad pointer size %d", r.ptrSize)
	}
	ps := uint64(r.ptrSize)
	hdr := func(i uint64) (uint64, error) { return r.word(8 + i*ps) }
	switch magic {
	case pclnMagic118, pclnMagic120:
		// _func: entryOff, nameOff, args, deferreturn, pcsp, pcfile,
		// pcln, npcdata, cuOffset [, startLine since 1.20], funcID, flag.
		funcIDOff := uint64(36)
		if magic == pclnMagic120 {
			funcIDOff = 40
		}
		return parsePcln118(r, hdr, textStart, funcIDOff)
	case pclnMagic116:
		return parsePcln116(r, hdr)
	default:
		return nil, fmt.Errorf("header: unsupported magic %#x", magic)
	}
}

func parsePcln118(r pclnReader, hdr func(uint64) (uint64, error), textStart, funcIDOff uint64) ([]pclnFunc, error) {
	// Header words: nfunc, nfiles, textStart, funcnameOffset, cuOffset,
	// filetabOffset, pctabOffset, pclnOffset.
	var h [8]uint64
	for i := range h {
		v, err := hdr(uint64(i))
		if err != nil {
			return nil, fmt.Errorf("header: %w", err)
		}
		h[i] = v
	}
	nfunc, hdrText, funcnameOff, cuOff, pclnOff := h[0], h[2], h[3], h[4], h[7]
	if hdrText != 0 {
		textStart = hdrText
	}
	if textStart == 0 {
		return nil, fmt.Errorf("header: no text start, and %w", errNoModuleData)
	}
	size := uint64(len(r.data))
	if funcnameOff >= size || pclnOff >= size {
		return nil, errors.New("header: table offset out of range")
	}
	// The func table holds nfunc+1 pairs of uint32 {entryoff, funcoff}.
	if nfunc == 0 || nfunc > (size-pclnOff)/8 {
		return nil, fmt.Errorf("header: bad function count %d", nfunc)
	}
	pcln := pclnReader{data: r.data[pclnOff:], ptrSize: r.ptrSize}
	names := newNameTable(r.data, funcnameOff, cuOff) // the cutab follows the names
	funcs := make([]pclnFunc, 0, nfunc)
	prev := uint64(0)
	for i := uint64(0); i <= nfunc; i++ {
		entryOff, err := pcln.u32(i * 8)
		if err != nil {
			return nil, fmt.Errorf("func table: %w", err)
		}
		if uint64(entryOff) < prev {
			return nil, fmt.Errorf("func table: entry %d out of order", i)
		}
		prev = uint64(entryOff)
		entry := textStart + uint64(entryOff)
		if entry < textStart {
			return nil, fmt.Errorf("func table: entry %d overflows", i)
		}
		if i > 0 {
			funcs[i-1].End = entry
		}
		if i == nfunc {
			break // the last entry only marks the end of the text
		}
		funcOff, err := pcln.u32(i*8 + 4)
		if err != nil {
			return nil, fmt.Errorf("func table: %w", err)
		}
		// _func starts with entryOff uint32, nameOff int32.
		fEntry, err := pcln.u32(uint64(funcOff))
		if err != nil {
			return nil, fmt.Errorf("func %d: %w", i, err)
		}
		if fEntry != entryOff {
			return nil, fmt.Errorf("func %d: entry mismatch", i)
		}
		nameOff, err := pcln.u32(uint64(funcOff) + 4)
		if err != nil {
			return nil, fmt.Errorf("func %d: %w", i, err)
		}
		name, err := names.name(uint64(int64(int32(nameOff))))
		if err != nil {
			return nil, fmt.Errorf("func %d: %w", i, err)
		}
		ids, err := pcln.u32(uint64(funcOff) + funcIDOff)
		if err != nil {
			return nil, fmt.Errorf("func %d: %w", i, err)
		}
		funcs = append(funcs, pclnFunc{
			Func:   Func{Name: name, Entry: entry},
			funcID: uint8(ids),
			asm:    uint8(ids>>8)&funcFlagAsm != 0,
			nameAt: uint32(funcnameOff + uint64(int64(int32(nameOff)))),
		})
	}
	return funcs, nil
}

func parsePcln116(r pclnReader, hdr func(uint64) (uint64, error)) ([]pclnFunc, error) {
	// Header words: nfunc, nfiles, funcnameOffset, cuOffset, filetabOffset,
	// pctabOffset, pclnOffset. Entries are absolute addresses.
	var h [7]uint64
	for i := range h {
		v, err := hdr(uint64(i))
		if err != nil {
			return nil, fmt.Errorf("header: %w", err)
		}
		h[i] = v
	}
	nfunc, funcnameOff, cuOff, pclnOff := h[0], h[2], h[3], h[6]
	size := uint64(len(r.data))
	ps := uint64(r.ptrSize)
	if funcnameOff >= size || pclnOff >= size {
		return nil, errors.New("header: table offset out of range")
	}
	if nfunc == 0 || nfunc > (size-pclnOff)/(2*ps) {
		return nil, fmt.Errorf("header: bad function count %d", nfunc)
	}
	pcln := pclnReader{data: r.data[pclnOff:], ptrSize: r.ptrSize}
	names := newNameTable(r.data, funcnameOff, cuOff) // the cutab follows the names
	funcs := make([]pclnFunc, 0, nfunc)
	prev := uint64(0)
	for i := uint64(0); i <= nfunc; i++ {
		entry, err := pcln.word(i * 2 * ps)
		if err != nil {
			return nil, fmt.Errorf("func table: %w", err)
		}
		if entry < prev {
			return nil, fmt.Errorf("func table: entry %d out of order", i)
		}
		prev = entry
		if i > 0 {
			funcs[i-1].End = entry
		}
		if i == nfunc {
			break
		}
		funcOff, err := pcln.word(i*2*ps + ps)
		if err != nil {
			return nil, fmt.Errorf("func table: %w", err)
		}
		// _func starts with entry uintptr, nameoff int32.
		fEntry, err := pcln.word(funcOff)
		if err != nil {
			return nil, fmt.Errorf("func %d: %w", i, err)
		}
		if fEntry != entry {
			return nil, fmt.Errorf("func %d: entry mismatch", i)
		}
		nameOff, err := pcln.u32(funcOff + ps)
		if err != nil {
			return nil, fmt.Errorf("func %d: %w", i, err)
		}
		name, err := names.name(uint64(int64(int32(nameOff))))
		if err != nil {
			return nil, fmt.Errorf("func %d: %w", i, err)
		}
		funcs = append(funcs, pclnFunc{Func: Func{Name: name, Entry: entry}, nameAt: uint32(funcnameOff + uint64(int64(int32(nameOff))))})
	}
	return funcs, nil
}
