package symbols

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

// ErrBadSite is returned when a probe address is not proven to be the start
// of an instruction of its function.
var ErrBadSite = errors.New("not a proven instruction boundary")

// Site is a probe address proven to start an instruction, with what is
// there in the file.
type Site struct {
	// Addr is the virtual address.
	Addr uint64
	// Offset is the file offset uprobes take.
	Offset uint64
	// Inst holds the bytes of the instruction at Addr, as decoded.
	Inst []byte
}

// CheckSite proves that addr starts an instruction of the function holding
// it, the way the compiler laid the function out, and returns the site. A
// uprobe one byte off would change what the observed program executes, so
// the linear disassembly the site finders use is checked against the
// compiler's own instruction boundaries: every pc at which the function's
// pclntab tables (stack depth, file, line) change value must be an
// instruction start of that disassembly, and addr must be one too. An entry
// computed from a wrong text base fails here.
func (b *Binary) CheckSite(addr uint64) (Site, error) {
	// Proven once per binary: every process that runs it attaches at the
	// same sites.
	b.cacheMu.Lock()
	c, ok := b.sites[addr]
	b.cacheMu.Unlock()
	if ok {
		return c.site, c.err
	}
	site, err := b.checkSite(addr)
	b.cacheMu.Lock()
	if b.sites == nil {
		b.sites = make(map[uint64]checkedSite)
	}
	b.sites[addr] = checkedSite{site, err}
	b.cacheMu.Unlock()
	return site, err
}

// checkedSite is a CheckSite result.
type checkedSite struct {
	site Site
	err  error
}

func (b *Binary) checkSite(addr uint64) (Site, error) {
	f, ok := b.FuncForPC(addr)
	if !ok {
		return Site{}, fmt.Errorf("site %#x: %w: in no function", addr, ErrBadSite)
	}
	if f.End-f.Entry > maxFuncSize {
		return Site{}, fmt.Errorf("site %s+%#x: function too large", f.Name, addr-f.Entry)
	}
	if b.asm[f.Entry] {
		// Hand-written code may hold instructions the disassembler does
		// not know; nothing is probed there.
		return Site{}, fmt.Errorf("site %s+%#x: %w: assembly function", f.Name, addr-f.Entry, ErrBadSite)
	}
	code, err := b.readAt(f.Entry, f.End-f.Entry)
	if err != nil {
		return Site{}, fmt.Errorf("site %s+%#x: %w", f.Name, addr-f.Entry, err)
	}
	starts := instStarts(b.Arch, code)
	at := func(pc uint64) (int, bool) {
		i := sort.Search(len(starts), func(i int) bool { return starts[i].pc >= pc })
		return i, i < len(starts) && starts[i].pc == pc
	}
	i, ok := at(addr - f.Entry)
	if !ok {
		return Site{}, fmt.Errorf("site %s+%#x: %w: inside an instruction", f.Name, addr-f.Entry, ErrBadSite)
	}
	bounds, err := b.pcBoundaries(f)
	if err != nil {
		return Site{}, fmt.Errorf("site %s+%#x: %w: %v", f.Name, addr-f.Entry, ErrBadSite, err)
	}
	if len(bounds) == 0 {
		return Site{}, fmt.Errorf("site %s+%#x: %w: no pc tables", f.Name, addr-f.Entry, ErrBadSite)
	}
	codeEnd := bounds[len(bounds)-1]
	for _, pc := range bounds[:len(bounds)-1] {
		if _, ok := at(pc); !ok {
			return Site{}, fmt.Errorf("site %s+%#x: %w: the compiler's boundary +%#x is inside a decoded instruction",
				f.Name, addr-f.Entry, ErrBadSite, pc)
		}
	}
	if _, ok := at(codeEnd); !ok && codeEnd != uint64(len(code)) {
		return Site{}, fmt.Errorf("site %s+%#x: %w: code ends at +%#x inside a decoded instruction",
			f.Name, addr-f.Entry, ErrBadSite, codeEnd)
	}
	if addr-f.Entry >= codeEnd {
		return Site{}, fmt.Errorf("site %s+%#x: %w: past the end of the code (+%#x)", f.Name, addr-f.Entry, ErrBadSite, codeEnd)
	}
	off, err := b.FileOffset(addr)
	if err != nil {
		return Site{}, err
	}
	n := starts[i].len
	return Site{Addr: addr, Offset: off, Inst: append([]byte(nil), code[addr-f.Entry:addr-f.Entry+uint64(n)]...)}, nil
}

// instStart is one decoded instruction.
type instStart struct {
	pc  uint64
	len int
}

// instStarts disassembles code linearly, as the site finders do.
func instStarts(arch string, code []byte) []instStart {
	var out []instStart
	switch arch {
	case "amd64":
		for pc := 0; pc < len(code); {
			inst, err := x86asm.Decode(code[pc:], 64)
			if err != nil || inst.Len == 0 {
				pc++
				continue
			}
			out = append(out, instStart{uint64(pc), inst.Len})
			pc += inst.Len
		}
	case "arm64":
		for pc := 0; pc+4 <= len(code); pc += 4 {
			if _, err := arm64asm.Decode(code[pc:]); err == nil {
				out = append(out, instStart{uint64(pc), 4})
			}
		}
	}
	return out
}

// pcBoundaries returns the offsets from f.Entry at which f's pcsp, pcfile
// and pcln tables change value, sorted, the last being the end of its code.
// They are read from the file on demand: the tables are not kept.
func (b *Binary) pcBoundaries(f Func) ([]uint64, error) {
	sec := b.ef.Section(".gopclntab")
	if sec == nil {
		sec = b.ef.Section(".data.rel.ro.gopclntab")
	}
	if sec == nil || b.pclnText == 0 {
		return nil, errors.New("no pclntab")
	}
	read := func(off uint64, n int) ([]byte, error) {
		if off > sec.Size || uint64(n) > sec.Size-off {
			return nil, errPclnTruncated
		}
		buf := make([]byte, n)
		if _, err := sec.ReadAt(buf, int64(off)); err != nil {
			return nil, err
		}
		return buf, nil
	}
	hdr, err := read(0, 8+8*8)
	if err != nil {
		return nil, err
	}
	magic := binary.LittleEndian.Uint32(hdr)
	if magic != pclnMagic118 && magic != pclnMagic120 || hdr[7] != 8 {
		return nil, errors.New("pclntab layout without instruction tables")
	}
	quantum := uint64(hdr[6])
	word := func(i int) uint64 { return binary.LittleEndian.Uint64(hdr[8+8*i:]) }
	nfunc, pctabOff, ftabOff := word(0), word(6), word(7)
	if f.Entry < b.pclnText {
		return nil, errors.New("function before the text start")
	}
	want := f.Entry - b.pclnText
	// Binary search of the function table: nfunc {entryOff, funcOff} pairs.
	lo, hi := uint64(0), nfunc
	var funcOff uint64
	found := false
	for lo < hi {
		mid := (lo + hi) / 2
		e, err := read(ftabOff+mid*8, 8)
		if err != nil {
			return nil, err
		}
		entry := uint64(binary.LittleEndian.Uint32(e))
		switch {
		case entry == want:
			funcOff, found = uint64(binary.LittleEndian.Uint32(e[4:])), true
			lo = hi
		case entry < want:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	if !found {
		return nil, fmt.Errorf("%s not in the pclntab function table", f.Name)
	}
	rec, err := read(ftabOff+funcOff, 28)
	if err != nil {
		return nil, err
	}
	if uint64(binary.LittleEndian.Uint32(rec)) != want {
		return nil, fmt.Errorf("%s: function record does not match its entry", f.Name)
	}
	set := map[uint64]bool{}
	var end uint64
	for _, at := range []int{16, 20, 24} { // pcsp, pcfile, pcln
		tab := uint64(binary.LittleEndian.Uint32(rec[at:]))
		if tab == 0 {
			continue
		}
		// A table is at most a few bytes per instruction.
		size := min(sec.Size-min(sec.Size, pctabOff+tab), 8*(f.End-f.Entry)+16, 1<<20)
		data, err := read(pctabOff+tab, int(size))
		if err != nil {
			return nil, err
		}
		pcs, err := pcValueBoundaries(data, quantum)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		for _, pc := range pcs {
			set[pc] = true
			end = max(end, pc)
		}
	}
	if end == 0 || end > f.End-f.Entry {
		return nil, fmt.Errorf("%s: pc tables end at +%#x, outside the function", f.Name, end)
	}
	out := make([]uint64, 0, len(set))
	for pc := range set {
		out = append(out, pc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// pcValueBoundaries decodes a pc-value table (runtime.step): pairs of a
// zig-zag value delta and a pc delta in units of the instruction quantum,
// ended by a zero value delta. It returns the pc after each pair.
func pcValueBoundaries(p []byte, quantum uint64) ([]uint64, error) {
	var out []uint64
	pc := uint64(0)
	for first := true; ; first = false {
		vd, n := binary.Uvarint(p)
		if n <= 0 {
			return nil, errors.New("pc table truncated")
		}
		if vd == 0 && !first {
			return out, nil
		}
		p = p[n:]
		pd, n := binary.Uvarint(p)
		if n <= 0 {
			return nil, errors.New("pc table truncated")
		}
		p = p[n:]
		pc += pd * quantum
		if pc > maxFuncSize {
			return nil, errors.New("pc table runs past any function")
		}
		out = append(out, pc)
	}
}
