package symbols

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"golang.org/x/arch/x86/x86asm"
)

// A go statement whose function takes arguments, `go f(x)`, does not start
// the goroutine at f: the compiler generates a function without
// parameters that loads x from its closure context (DX on amd64) and calls
// f, and the goroutine's start pc (runtime.g.startpc) is that wrapper's.
// How the wrapper looks depends on the release (amd64, checked on binaries
// built by each toolchain, TestGoWrappers):
//
//   - Go 1.19–1.21: named like a closure, "main.main.func3" (inside a
//     closure "main.main.func1.2"), marked as a wrapper, so its prologue
//     has the panic-argp check (MOVQ 0x20(R14), R12; TESTQ R12, R12; JNE
//     to a fix-up block after the RET); the body loads the arguments
//     (MOVQ 0x8(DX), AX, constants into registers, stack slots for
//     arguments past the registers) and CALLs f; f is never inlined.
//   - Go 1.22–1.24: named "main.main.gowrap1", the same prologue, and f is
//     inlined into it when f is small (then the wrapper holds f's body,
//     with f as the one top-level entry of its inline tree), else called.
//   - Go 1.26, 1.27: named "…gowrapN", without the panic-argp check;
//     otherwise as in 1.22.
//
// A real closure, `go func() { … }()`, is started at its own code and
// named "…funcN" on every release; it has no panic-argp check and must
// keep its name. So a function is taken for a wrapper only when its name
// is one the compiler gives wrappers, and its code is nothing but a
// wrapper's: for "funcN" names the panic-argp check, argument loads, one
// direct call and the return; for "gowrapN" names the same without the
// check, or a prologue and epilogue around the inlined body of one
// function. Anything else (a second call, arithmetic, a loop, a store
// beyond the stack frame, a load through a pointer, an indirect call, a
// call into the runtime) keeps the function's own name.

// wrapperName matches the last element of the names wrappers get:
// "func3", "gowrap1", and the bare numbers of closures nested in closures
// before Go 1.22 ("main.main.func1.2").
var wrapperName = regexp.MustCompile(`\.(func|gowrap)?[0-9]+$`)

// Limits on the work done for one binary and one wrapper.
const (
	maxWrapperSize = 4096 // bytes of code
	maxInlineDepth = 64   // parent steps through an inline tree
)

// pcdata and funcdata table indices (internal/abi).
const (
	pcdataInlTreeIndex = 2
	funcdataInlTree    = 3
)

// inlinedCall120 is the size of an inline tree entry since Go 1.20:
// funcID uint8, _ [3]byte, nameOff int32, parentPc int32, startLine int32.
const inlinedCall120 = 16

// GoWrappers returns the wrapper functions that go statements with
// arguments compile to, keyed by entry address (link-time), each with the
// name of the function the statement started: for `go leakyWorker(i)`,
// "main.leakyWorker", whether the wrapper calls it or holds it inlined.
// Functions that are not certainly such wrappers are not in the map (amd64
// only; other architectures yield an empty map). The error says why the
// function table could not be read at all.
//
// It reads the whole function table and disassembles every candidate:
// call it once per binary and keep the result.
func (b *Binary) GoWrappers() (map[uint64]string, error) {
	out := map[uint64]string{}
	if b.Arch != "amd64" {
		return out, nil
	}
	v, err := b.pclnView()
	if err != nil {
		return out, err
	}
	gofunc, gofuncErr := b.goFuncBase(v)
	for i := uint64(0); i < v.nfunc; i++ {
		funcOff, err := v.u32(v.pclnOff + i*8 + 4)
		if err != nil {
			return out, fmt.Errorf("func table: %w", err)
		}
		rec := v.pclnOff + uint64(funcOff)
		nameOff, err := v.u32(rec + 4)
		if err != nil {
			return out, fmt.Errorf("func %d: %w", i, err)
		}
		name, err := v.cstring(v.funcnameOff + uint64(nameOff))
		if err != nil || !wrapperName.MatchString(name) {
			continue
		}
		idx, ok := b.byName[name]
		if !ok {
			continue
		}
		f := b.funcs[idx]
		w := wrapperFunc{Func: f, rec: rec, v: v, gofunc: gofunc, gofuncOK: gofuncErr == nil}
		if callee, ok := b.goWrapCallee(w); ok {
			out[f.Entry] = callee
		}
	}
	return out, nil
}

// pclnView is a bounds-checked view of a Go 1.18+ .gopclntab.
type pclnView struct {
	pclnReader
	go120       bool   // Go 1.20+ _func layout (startLine) and inline tree
	quantum     uint64 // pc quantum (1 on amd64)
	nfunc       uint64
	funcnameOff uint64
	pctabOff    uint64
	pclnOff     uint64
}

// pclnView reads the function table of b. Releases before Go 1.18 have no
// wrappers this package recognises.
func (b *Binary) pclnView() (*pclnView, error) {
	sec := b.ef.Section(".gopclntab")
	if sec == nil {
		sec = b.ef.Section(".data.rel.ro.gopclntab")
	}
	if sec == nil {
		return nil, errors.New("no .gopclntab section")
	}
	data, err := sectionData(sec)
	if err != nil {
		return nil, fmt.Errorf("read pclntab: %w", err)
	}
	if len(data) < 8+8*8 || data[7] != 8 {
		return nil, errors.New("read pclntab: bad header")
	}
	v := &pclnView{pclnReader: pclnReader{data: data, ptrSize: 8}, quantum: uint64(data[6])}
	switch binary.LittleEndian.Uint32(data) {
	case pclnMagic118:
	case pclnMagic120:
		v.go120 = true
	default:
		return nil, fmt.Errorf("read pclntab: magic %#x predates Go 1.18", binary.LittleEndian.Uint32(data))
	}
	// nfunc, nfiles, textStart, funcnameOffset, cuOffset, filetabOffset,
	// pctabOffset, pclnOffset.
	v.nfunc, _ = v.word(8)
	v.funcnameOff, _ = v.word(8 + 3*8)
	v.pctabOff, _ = v.word(8 + 6*8)
	v.pclnOff, _ = v.word(8 + 7*8)
	size := uint64(len(data))
	if v.funcnameOff >= size || v.pctabOff >= size || v.pclnOff >= size || v.nfunc == 0 || v.nfunc > (size-v.pclnOff)/8 || v.quantum == 0 {
		return nil, errors.New("read pclntab: header out of range")
	}
	return v, nil
}

// funcFixed is the size of _func before its pcdata offsets.
func (v *pclnView) funcFixed() uint64 {
	if v.go120 {
		return 44
	}
	return 40
}

// pcdataTable returns the pctab offset of table i of the _func at rec (0:
// none).
func (v *pclnView) pcdataTable(rec uint64, i uint32) (uint64, error) {
	n, err := v.u32(rec + 28) // npcdata
	if err != nil || i >= n {
		return 0, err
	}
	off, err := v.u32(rec + v.funcFixed() + 4*uint64(i))
	return uint64(off), err
}

// funcdataOff returns funcdata i of the _func at rec, an offset from
// go:func.*; ok is false when the function has none.
func (v *pclnView) funcdataOff(rec uint64, i uint8) (uint64, bool) {
	npc, err1 := v.u32(rec + 28)
	nfd, err2 := v.u32(rec + v.funcFixed() - 4) // funcID, flag, _, nfuncdata
	if err1 != nil || err2 != nil || i >= uint8(nfd>>24) {
		return 0, false
	}
	off, err := v.u32(rec + v.funcFixed() + 4*uint64(npc) + 4*uint64(i))
	if err != nil || off == ^uint32(0) {
		return 0, false
	}
	return uint64(off), true
}

// pcRange is one run of a pc-value table: value for pcs [lo, hi) (offsets
// from the function's entry).
type pcRange struct {
	lo, hi uint64
	val    int32
}

// pcTable decodes the pc-value table at pctab offset off over a function
// of size bytes (runtime.pcvalue).
func (v *pclnView) pcTable(off, size uint64) ([]pcRange, error) {
	if off == 0 {
		return []pcRange{{0, size, -1}}, nil
	}
	p := v.pctabOff + off
	if p >= uint64(len(v.data)) {
		return nil, errPclnTruncated
	}
	buf := v.data[p:]
	val, pc := int32(-1), uint64(0)
	var out []pcRange
	for first := true; pc < size; first = false {
		uv, n := binary.Uvarint(buf)
		if n <= 0 || (uv == 0 && !first) || uv > 1<<32 {
			break
		}
		buf = buf[n:]
		d := uint32(uv)
		val += int32(-(d & 1) ^ (d >> 1))
		pd, n := binary.Uvarint(buf)
		if n <= 0 || pd == 0 || pd > size {
			return nil, errors.New("bad pc-value table")
		}
		buf = buf[n:]
		out = append(out, pcRange{pc, min(pc+pd*v.quantum, size), val})
		pc += pd * v.quantum
	}
	// The table ends at the last instruction; the alignment padding up to
	// the next function (within size) has no value.
	return out, nil
}

func valueAt(rs []pcRange, pc uint64) int32 {
	for _, r := range rs {
		if pc >= r.lo && pc < r.hi {
			return r.val
		}
	}
	return -1
}

// goFuncBase returns the address of go:func.*, which funcdata offsets are
// relative to (Go 1.20+ layouts only): from .symtab, else from the module
// descriptor. Either way the inline trees of the first functions that have
// one must decode at that base.
func (b *Binary) goFuncBase(v *pclnView) (uint64, error) {
	if !v.go120 {
		return 0, errors.New("inline trees are read for Go 1.20 and later")
	}
	if syms, err := b.ef.Symbols(); err == nil {
		for _, s := range syms {
			if s.Name == "go:func.*" && s.Value != 0 {
				if !b.inlineTreesDecode(v, s.Value) {
					return 0, errors.New("inline trees do not decode at go:func.*")
				}
				return s.Value, nil
			}
		}
	}
	return b.moduleGoFunc(v)
}

// Where in the module descriptor go:func.* may be: it follows types (at
// 296 since Go 1.20) by three words up to Go 1.26 (types, etypes, rodata,
// gofunc) and by six in Go 1.27 (types, typedesclen, etypes, itaboffset,
// itabsize, rodata, gofunc). Every word in this window that points into
// non-executable data is tried, and the one at which inline trees decode
// is taken.
const (
	mdGoFuncFirst = 296
	mdGoFuncLast  = 400
)

// moduleGoFunc reads go:func.* from the module descriptor.
func (b *Binary) moduleGoFunc(v *pclnView) (uint64, error) {
	if b.moduleErr != nil {
		return 0, b.moduleErr
	}
	relocs, err := b.relocations()
	if err != nil {
		return 0, err
	}
	seen := map[uint64]bool{}
	var found []uint64
	for off := uint64(mdGoFuncFirst); off <= mdGoFuncLast; off += 8 {
		gf, ok := relocs[b.module.addr+off]
		if !ok {
			w, err := b.readAt(b.module.addr+off, 8)
			if err != nil {
				break
			}
			gf = binary.LittleEndian.Uint64(w)
		}
		if seen[gf] || !b.inSegment(gf, 0) || b.inSegment(gf, elf.PF_X) {
			continue
		}
		seen[gf] = true
		if b.inlineTreesDecode(v, gf) {
			found = append(found, gf)
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("go:func.* not found in the module descriptor (%d candidates fit)", len(found))
	}
	return found[0], nil
}

// inlineTreesDecode reports whether, with go:func.* at base, the inline
// trees of the first functions having one decode: zero padding, names that
// are function names, parent pcs inside the function.
func (b *Binary) inlineTreesDecode(v *pclnView, base uint64) bool {
	const want = 8 // functions checked
	checked := 0
	for i := uint64(0); i+1 < v.nfunc && checked < want; i++ {
		entryOff, err1 := v.u32(v.pclnOff + i*8)
		next, err2 := v.u32(v.pclnOff + (i+1)*8)
		funcOff, err3 := v.u32(v.pclnOff + i*8 + 4)
		if err1 != nil || err2 != nil || err3 != nil {
			return false
		}
		if next <= entryOff {
			continue // empty: nothing inlined
		}
		rec := v.pclnOff + uint64(funcOff)
		size := uint64(next - entryOff)
		treeOff, ok := v.funcdataOff(rec, funcdataInlTree)
		if !ok {
			continue
		}
		tab, err := v.pcdataTable(rec, pcdataInlTreeIndex)
		if err != nil || tab == 0 {
			continue
		}
		rs, err := v.pcTable(tab, size)
		if err != nil {
			continue
		}
		maxIdx := int32(-1)
		for _, r := range rs {
			maxIdx = max(maxIdx, r.val)
		}
		if maxIdx < 0 || maxIdx > 1<<16 {
			continue
		}
		for idx := int32(0); idx <= maxIdx; idx++ {
			e, err := b.readAt(base+treeOff+uint64(idx)*inlinedCall120, inlinedCall120)
			if err != nil || e[1] != 0 || e[2] != 0 || e[3] != 0 {
				return false
			}
			nameOff := int32(binary.LittleEndian.Uint32(e[4:]))
			parentPc := int32(binary.LittleEndian.Uint32(e[8:]))
			if nameOff < 0 || parentPc < 0 || uint64(parentPc) >= size {
				return false
			}
			name, err := v.cstring(v.funcnameOff + uint64(nameOff))
			if err != nil || !plausibleFuncName(name) {
				return false
			}
		}
		checked++
	}
	return checked > 0
}

// wrapperFunc is a candidate wrapper and where its _func record is.
type wrapperFunc struct {
	Func
	rec      uint64 // _func offset in the pclntab
	v        *pclnView
	gofunc   uint64
	gofuncOK bool
}

// inst is one decoded instruction at offset off from the entry, with its
// inline tree index (-1: the function's own code).
type inst struct {
	x86asm.Inst
	off uint64
	inl int32
}

// goWrapCallee decides whether w is a go statement's wrapper and names
// the function it starts.
func (b *Binary) goWrapCallee(w wrapperFunc) (string, bool) {
	if w.End <= w.Entry || w.End-w.Entry > maxWrapperSize {
		return "", false
	}
	code, err := b.readAt(w.Entry, w.End-w.Entry)
	if err != nil {
		return "", false
	}
	size := uint64(len(code))
	inlOff, err := w.v.pcdataTable(w.rec, pcdataInlTreeIndex)
	if err != nil {
		return "", false
	}
	inl, err := w.v.pcTable(inlOff, size)
	if err != nil {
		return "", false
	}
	var insts []inst
	for pc := uint64(0); pc < size; {
		x, err := x86asm.Decode(code[pc:], 64)
		if err != nil || x.Len == 0 {
			// Only the padding after the last instruction fails to
			// decode; anything else is not a wrapper.
			if allPadding(code[pc:]) {
				break
			}
			return "", false
		}
		insts = append(insts, inst{Inst: x, off: pc, inl: valueAt(inl, pc)})
		pc += uint64(x.Len)
	}
	last := w.Name[strings.LastIndexByte(w.Name, '.')+1:]
	gowrap := strings.HasPrefix(last, "gowrap")
	inlined := false
	for _, in := range insts {
		if in.inl >= 0 {
			inlined = true
			break
		}
	}
	switch {
	case !inlined:
		// funcN names are closures unless the prologue proves the
		// compiler marked the function as a wrapper.
		return b.calledCallee(w, insts, !gowrap)
	case gowrap && w.v.go120 && w.gofuncOK:
		return b.inlinedCallee(w, insts)
	}
	return "", false
}

// allPadding reports whether b is the INT3 padding after a function.
func allPadding(b []byte) bool {
	for _, c := range b {
		if c != 0xcc && c != 0 {
			return false
		}
	}
	return true
}

// Register families (RAX = 0 … R15 = 15) of the registers that matter.
const (
	famDX  = 2
	famSP  = 4
	famBP  = 5
	famR12 = 12
	famR13 = 13
	famR14 = 14
)

// family returns the general-purpose register r belongs to, or -1.
func family(r x86asm.Reg) int {
	switch {
	case r >= x86asm.RAX && r <= x86asm.R15:
		return int(r - x86asm.RAX)
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return int(r - x86asm.EAX)
	case r >= x86asm.AX && r <= x86asm.R15W:
		return int(r - x86asm.AX)
	case r >= x86asm.AL && r <= x86asm.BL:
		return int(r - x86asm.AL)
	case r >= x86asm.AH && r <= x86asm.BH:
		return int(r - x86asm.AH)
	case r >= x86asm.SPB && r <= x86asm.R15B:
		return int(r-x86asm.SPB) + famSP
	}
	return -1
}

func regFamily(a x86asm.Arg) int {
	if r, ok := a.(x86asm.Reg); ok {
		return family(r)
	}
	return -1
}

func isXMM(a x86asm.Arg) bool {
	r, ok := a.(x86asm.Reg)
	return ok && r >= x86asm.X0 && r <= x86asm.X15
}

// wrapState follows what the registers hold while a wrapper's own code is
// checked.
type wrapState struct {
	ctx   [16]bool // holds the closure context pointer
	panic bool     // R12 holds g._panic (the panic-argp check)
	argp  bool     // the panic-argp check was seen
}

func newWrapState() *wrapState {
	s := &wrapState{}
	s.ctx[famDX] = true
	return s
}

// write records that the register argument a is overwritten.
func (s *wrapState) write(a x86asm.Arg) {
	if f := regFamily(a); f >= 0 {
		s.ctx[f] = false
		if f == famR12 {
			s.panic = false
		}
	}
}

// frameOp reports whether in sets up or tears down the frame or checks the
// stack: PUSHQ/POPQ BP, MOVQ SP, BP, SUBQ/ADDQ $n, SP, MOVQ BP, n(SP),
// LEAQ n(SP), BP, MOVQ n(SP), BP, CMPQ SP|R12, 0x10(R14), LEAQ -n(SP), R12.
func frameOp(in x86asm.Inst) bool {
	a0, a1 := in.Args[0], in.Args[1]
	switch in.Op {
	case x86asm.PUSH, x86asm.POP:
		return regFamily(a0) == famBP
	case x86asm.SUB, x86asm.ADD:
		_, imm := a1.(x86asm.Imm)
		return regFamily(a0) == famSP && imm
	case x86asm.MOV:
		switch {
		case regFamily(a0) == famBP && regFamily(a1) == famSP:
			return true
		case regFamily(a0) == famBP && memBase(a1) == famSP:
			return true
		case memBase(a0) == famSP && regFamily(a1) == famBP:
			return true
		}
	case x86asm.LEA:
		return (regFamily(a0) == famBP || regFamily(a0) == famR12) && memBase(a1) == famSP
	case x86asm.CMP:
		return (regFamily(a0) == famSP || regFamily(a0) == famR12) && memBase(a1) == famR14
	}
	return false
}

// memBase returns the base register family of a memory operand without
// index, famRIP for RIP-relative ones, or -1.
func memBase(a x86asm.Arg) int {
	m, ok := a.(x86asm.Mem)
	if !ok || m.Index != 0 || m.Segment != 0 {
		return -1
	}
	if m.Base == x86asm.RIP {
		return famRIP
	}
	return family(m.Base)
}

const famRIP = 16

// branchTarget returns the offset (from the entry) a direct branch at in
// goes to.
func branchTarget(in inst) (int64, bool) {
	rel, ok := in.Args[0].(x86asm.Rel)
	if !ok {
		return 0, false
	}
	return int64(in.off) + int64(in.Len) + int64(rel), true
}

// loads reports whether in loads a register from memory the wrapper may
// read, or moves a register, immediate or constant: the argument set-up of
// a wrapper. Memory it may read: the closure context (through a register
// still holding it), its own frame (SP or BP based), and read-only data
// (RIP-relative into a segment that is not writable: constants).
func (b *Binary) argSetup(s *wrapState, in inst, entry uint64) bool {
	a0, a1 := in.Args[0], in.Args[1]
	switch in.Op {
	case x86asm.MOV, x86asm.MOVZX, x86asm.MOVSX, x86asm.MOVSXD,
		x86asm.MOVSD_XMM, x86asm.MOVSS, x86asm.MOVUPS, x86asm.MOVAPS,
		x86asm.MOVQ, x86asm.MOVD, x86asm.MOVDQU:
	case x86asm.LEA:
		// Addresses of constants, functions, dictionaries, globals, or
		// of the frame's own slots.
		if regFamily(a0) < 0 {
			return false
		}
		if base := memBase(a1); base == famRIP || base == famSP || base == famBP {
			s.write(a0)
			return true
		}
		return false
	case x86asm.XOR, x86asm.XORPS, x86asm.PXOR:
		// Zeroing a register: XORL AX, AX; XORPS X15, X15.
		r0, ok0 := a0.(x86asm.Reg)
		r1, ok1 := a1.(x86asm.Reg)
		if ok0 && ok1 && r0 == r1 {
			s.write(a0)
			return true
		}
		return false
	default:
		return false
	}
	// Stores: only into the frame (spills, arguments passed on the stack).
	if _, ok := a0.(x86asm.Mem); ok {
		if base := memBase(a0); base != famSP && base != famBP {
			return false
		}
		switch a1.(type) {
		case x86asm.Reg, x86asm.Imm:
			return true
		}
		return false
	}
	if regFamily(a0) < 0 && !isXMM(a0) {
		return false
	}
	switch src := a1.(type) {
	case x86asm.Imm:
		s.write(a0)
		return true
	case x86asm.Reg:
		copyCtx := family(src) >= 0 && s.ctx[family(src)]
		s.write(a0)
		if f := regFamily(a0); f >= 0 && copyCtx && in.Op == x86asm.MOV && in.DataSize == 64 {
			s.ctx[f] = true
		}
		return true
	case x86asm.Mem:
		base := memBase(src)
		ok := false
		switch {
		case base == famSP || base == famBP:
			ok = true
		case base == famRIP:
			ok = b.readOnly(uint64(int64(entry+in.off+uint64(in.Len)) + src.Disp))
		case base >= 0 && base < 16:
			ok = s.ctx[base]
		}
		if ok {
			s.write(a0)
		}
		return ok
	}
	return false
}

// readOnly reports whether addr lies in a loaded segment that is neither
// writable nor executable.
func (b *Binary) readOnly(addr uint64) bool {
	for _, p := range b.loads {
		if addr >= p.Vaddr && addr-p.Vaddr < p.Memsz {
			return p.Flags&(elf.PF_W|elf.PF_X) == 0
		}
	}
	return false
}

// argpCheck reports whether in is part of the panic-argp check of a
// function the compiler marked as a wrapper: MOVQ 0x20(R14), R12 (the g's
// _panic); TESTQ R12, R12; and after the RET LEAQ n(SP), R13; CMPQ 0(R12),
// R13; MOVQ SP, 0(R12).
func (s *wrapState) argpCheck(in x86asm.Inst) bool {
	a0, a1 := in.Args[0], in.Args[1]
	switch in.Op {
	case x86asm.MOV:
		if regFamily(a0) == famR12 && memBase(a1) == famR14 {
			s.panic, s.argp = true, true
			return true
		}
		return s.panic && memBase(a0) == famR12 && regFamily(a1) == famSP
	case x86asm.TEST:
		return s.panic && regFamily(a0) == famR12 && regFamily(a1) == famR12
	case x86asm.LEA:
		return regFamily(a0) == famR13 && memBase(a1) == famSP
	case x86asm.CMP:
		return s.panic && memBase(a0) == famR12 && regFamily(a1) == famR13
	}
	return false
}

// callee returns the function a direct CALL at in goes to.
func (b *Binary) callTarget(in inst, entry uint64) (Func, bool) {
	t, ok := branchTarget(in)
	if !ok {
		return Func{}, false
	}
	addr := uint64(int64(entry) + t)
	f, ok := b.FuncForPC(addr)
	if !ok || f.Entry != addr {
		return Func{}, false
	}
	return f, true
}

func isMorestack(name string) bool { return strings.HasPrefix(name, "runtime.morestack") }

// copyHelper reports runtime functions a wrapper may call to copy large
// arguments.
func copyHelper(name string) bool {
	return name == "runtime.duffcopy" || name == "runtime.duffzero"
}

// raceHook reports the calls the race detector's instrumentation adds to
// every function's prologue and epilogue (-race builds).
func raceHook(name string) bool {
	switch name {
	case "runtime.racefuncenter", "runtime.racefuncenterfp", "runtime.racefuncexit":
		return true
	}
	return false
}

// calledCallee checks the shape of a wrapper that calls its function: on
// the path from the entry to the first RET only the prologue, argument
// set-up, one direct call and the epilogue; after the RET only the
// morestack call, the panic-argp fix-up and jumps back. needArgp demands
// the panic-argp check (closure-like names).
func (b *Binary) calledCallee(w wrapperFunc, insts []inst, needArgp bool) (string, bool) {
	ret := -1
	for i, in := range insts {
		if in.Op == x86asm.RET {
			ret = i
			break
		}
	}
	if ret < 0 {
		return "", false
	}
	retEnd := insts[ret].off + uint64(insts[ret].Len)
	s := newWrapState()
	callee, callAt := "", -1
	for i, in := range insts[:ret] {
		switch {
		case in.Op == x86asm.NOP:
		case callAt >= 0:
			// After the call: only the epilogue.
			if in.Op == x86asm.CALL {
				if f, ok := b.callTarget(in, w.Entry); ok && raceHook(f.Name) {
					continue
				}
				return "", false
			}
			if !frameOp(in.Inst) || in.Op == x86asm.SUB || in.Op == x86asm.PUSH {
				return "", false
			}
		case frameOp(in.Inst):
			s.write(in.Args[0])
		case isJcc(in.Op):
			// Forward, out of the straight path: morestack, argp fix-up.
			if t, ok := branchTarget(in); !ok || t < int64(retEnd) || t >= int64(w.End-w.Entry) {
				return "", false
			}
		case s.argpCheck(in.Inst):
		case in.Op == x86asm.CALL:
			f, ok := b.callTarget(in, w.Entry)
			if !ok {
				return "", false // indirect: the callee is not known here
			}
			if copyHelper(f.Name) || raceHook(f.Name) {
				continue
			}
			if strings.HasPrefix(f.Name, "runtime.") {
				return "", false
			}
			callee, callAt = f.Name, i
		case b.argSetup(s, in, w.Entry):
		default:
			return "", false
		}
	}
	if callAt < 0 || (needArgp && !s.argp) {
		return "", false
	}
	if !b.wrapperTail(w, insts[ret+1:], s, insts[callAt].off) {
		return "", false
	}
	return callee, true
}

// wrapperTail checks the code after a wrapper's RET: the morestack call,
// the panic-argp fix-up, jumps back before limit (the offset of the call),
// padding.
func (b *Binary) wrapperTail(w wrapperFunc, tail []inst, s *wrapState, limit uint64) bool {
	// The fix-up block is entered from the check's JNE, where R12 still
	// holds g._panic (the argument set-up may use R12 after that).
	s.panic = s.argp
	for _, in := range tail {
		switch {
		case in.Op == x86asm.NOP || in.Op == x86asm.INT:
		case in.Op == x86asm.CALL:
			f, ok := b.callTarget(in, w.Entry)
			if !ok || !isMorestack(f.Name) {
				return false
			}
		case in.Op == x86asm.JMP || isJcc(in.Op):
			if t, ok := branchTarget(in); !ok || t < 0 || uint64(t) > limit {
				return false
			}
		case s.argpCheck(in.Inst):
		default:
			return false
		}
	}
	return true
}

// inlinedCallee checks the shape of a gowrap wrapper that holds its
// function inlined: its own instructions (inline index -1) are only the
// prologue, epilogue, argument loads and the morestack call, and every
// inlined instruction descends from one and the same top-level inlined
// call, whose function is the callee.
func (b *Binary) inlinedCallee(w wrapperFunc, insts []inst) (string, bool) {
	s := newWrapState()
	size := w.End - w.Entry
	for _, in := range insts {
		if in.inl >= 0 {
			continue
		}
		switch {
		case in.Op == x86asm.NOP || in.Op == x86asm.INT || in.Op == x86asm.RET:
		case frameOp(in.Inst):
			s.write(in.Args[0])
		case in.Op == x86asm.JMP || isJcc(in.Op):
			if t, ok := branchTarget(in); !ok || t < 0 || uint64(t) >= size {
				return "", false
			}
		case s.argpCheck(in.Inst):
		case in.Op == x86asm.CALL:
			f, ok := b.callTarget(in, w.Entry)
			if !ok || !isMorestack(f.Name) && !raceHook(f.Name) {
				return "", false
			}
		case b.argSetup(s, in, w.Entry):
		default:
			return "", false
		}
	}
	treeOff, ok := w.v.funcdataOff(w.rec, funcdataInlTree)
	if !ok {
		return "", false
	}
	tree := w.gofunc + treeOff
	at := func(pc uint64) int32 {
		for _, in := range insts {
			if in.off == pc {
				return in.inl
			}
		}
		return -2 // not an instruction boundary
	}
	root := int32(-1)
	for _, in := range insts {
		idx := in.inl
		if idx < 0 {
			continue
		}
		for step := 0; ; step++ {
			if step == maxInlineDepth {
				return "", false
			}
			e, err := b.readAt(tree+uint64(idx)*inlinedCall120, inlinedCall120)
			if err != nil {
				return "", false
			}
			parent := at(uint64(binary.LittleEndian.Uint32(e[8:])))
			if parent == -1 {
				break
			}
			if parent < 0 {
				return "", false
			}
			idx = parent
		}
		if root >= 0 && idx != root {
			return "", false // two top-level calls: not a wrapper
		}
		root = idx
	}
	if root < 0 {
		return "", false
	}
	e, err := b.readAt(tree+uint64(root)*inlinedCall120, inlinedCall120)
	if err != nil {
		return "", false
	}
	name, err := w.v.cstring(w.v.funcnameOff + uint64(binary.LittleEndian.Uint32(e[4:])))
	if err != nil || !plausibleFuncName(name) || strings.HasPrefix(name, "runtime.") {
		return "", false
	}
	return name, true
}

// plausibleFuncName reports whether s looks like a Go function name.
func plausibleFuncName(s string) bool {
	if s == "" || len(s) > 4096 || !utf8.ValidString(s) || !strings.Contains(s, ".") {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
