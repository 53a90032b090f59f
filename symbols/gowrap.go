package symbols

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

// A go statement whose function takes arguments, `go f(x)`, does not start
// the goroutine at f: the compiler generates a function without
// parameters that loads x from its closure context (DX on amd64, X26 on
// arm64) and calls f, and the goroutine's start pc (runtime.g.startpc) is
// that wrapper's. How the wrapper looks depends on the release (amd64;
// arm64 alike, with LDR X16, [X28, #32]; CBNZ X16 for the check; checked
// on binaries built by each toolchain, TestGoWrappers):
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
// and arm64). The error says why the function table could not be read at
// all.
//
// It reads the whole function table and disassembles every candidate:
// call it once per binary and keep the result.
func (b *Binary) GoWrappers() (map[uint64]string, error) {
	out := map[uint64]string{}
	if b.Arch != "amd64" && b.Arch != "arm64" {
		return out, nil
	}
	v, err := b.pclnView()
	if err != nil {
		return out, err
	}
	gofunc, gofuncErr := b.goFuncBase(v)
	var textStart uint64 // what entry offsets are relative to, from the first candidate
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
		name, err := v.cstring(v.funcnameOff+uint64(nameOff), maxNameLen)
		if err != nil || !wrapperName.MatchString(name) {
			continue
		}
		f, ok := b.lookupName(name)
		if !ok {
			continue
		}
		// The record must be the function's: every candidate's entry,
		// less its entry offset, gives the same text start.
		entryOff, err := v.u32(rec)
		if err != nil || uint64(entryOff) > f.Entry {
			continue
		}
		if textStart == 0 {
			textStart = f.Entry - uint64(entryOff)
		} else if f.Entry-uint64(entryOff) != textStart {
			continue
		}
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
	if !b.hasPcln {
		return nil, errors.New("no usable .gopclntab") // loadFuncs said why
	}
	sec := b.ef.Section(".gopclntab")
	if sec == nil {
		sec = b.ef.Section(".data.rel.ro.gopclntab")
	}
	if sec == nil {
		return nil, errors.New("no .gopclntab section")
	}
	data, err := b.sectionData(sec)
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
	if syms, err := b.symbols(); b.HasSymtab && err == nil {
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
			name, err := v.cstring(v.funcnameOff+uint64(nameOff), maxNameLen)
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

// kind is what one instruction does, as far as telling a wrapper goes.
type kind uint8

const (
	kOther    kind = iota // anything else: not a wrapper's
	kNop                  // no-op, padding
	kFrame                // stack bound check, frame set-up and tear-down
	kArgpLoad             // the panic-argp check's load of g._panic
	kArgp                 // the rest of the panic-argp check and fix-up
	kArgs                 // argument set-up: loads the wrapper may do, constants, moves, stores into the frame
	kCall                 // direct call (callee)
	kCallInd              // indirect call
	kRet                  // return
	kCond                 // conditional branch (target)
	kJump                 // unconditional branch (target)
)

// step is one classified instruction.
type step struct {
	off, end uint64 // offsets from the entry
	inl      int32  // inline tree index (-1: the function's own code)
	kind     kind
	target   int64  // branches: offset from the entry
	callee   string // direct calls
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
	inlOff, err := w.v.pcdataTable(w.rec, pcdataInlTreeIndex)
	if err != nil {
		return "", false
	}
	inl, err := w.v.pcTable(inlOff, uint64(len(code)))
	if err != nil {
		return "", false
	}
	var steps []step
	switch b.Arch {
	case "amd64":
		steps = b.stepsAMD64(code, w.Entry)
	case "arm64":
		steps = b.stepsARM64(code, w.Entry)
	}
	if steps == nil {
		return "", false
	}
	inlined := false
	for i := range steps {
		steps[i].inl = valueAt(inl, steps[i].off)
		inlined = inlined || steps[i].inl >= 0
	}
	last := w.Name[strings.LastIndexByte(w.Name, '.')+1:]
	gowrap := strings.HasPrefix(last, "gowrap")
	switch {
	case !inlined:
		// funcN names are closures unless the prologue proves the
		// compiler marked the function as a wrapper.
		return calledCallee(steps, uint64(len(code)), !gowrap)
	case gowrap && w.v.go120 && w.gofuncOK:
		return b.inlinedCallee(w, steps)
	}
	return "", false
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
// the path from the entry to the first return only the prologue (with the
// panic-argp check if needArgp), argument set-up, one direct call and the
// epilogue, with conditional branches only forward past the return; after
// the return only the morestack call, the panic-argp fix-up and branches
// back before the call.
func calledCallee(steps []step, size uint64, needArgp bool) (string, bool) {
	ret := -1
	for i, st := range steps {
		if st.kind == kRet {
			ret = i
			break
		}
	}
	if ret < 0 {
		return "", false
	}
	retEnd := steps[ret].end
	callee, callAt, argp := "", -1, false
	for i, st := range steps[:ret] {
		if callAt >= 0 {
			// After the call: only the epilogue.
			switch {
			case st.kind == kNop || st.kind == kFrame:
			case st.kind == kCall && raceHook(st.callee):
			default:
				return "", false
			}
			continue
		}
		switch st.kind {
		case kNop, kFrame, kArgs, kArgp:
		case kArgpLoad:
			argp = true
		case kCond:
			if st.target < int64(retEnd) || st.target >= int64(size) {
				return "", false
			}
		case kCall:
			switch {
			case copyHelper(st.callee) || raceHook(st.callee):
			case strings.HasPrefix(st.callee, "runtime."):
				return "", false
			default:
				callee, callAt = st.callee, i
			}
		default:
			return "", false
		}
	}
	if callAt < 0 || needArgp && !argp {
		return "", false
	}
	for _, st := range steps[ret+1:] {
		switch st.kind {
		case kNop, kFrame, kArgs, kArgp:
		case kCall:
			if !isMorestack(st.callee) {
				return "", false
			}
		case kJump, kCond:
			if st.target < 0 || uint64(st.target) > steps[callAt].off {
				return "", false
			}
		default:
			return "", false
		}
	}
	return callee, true
}

// inlinedCallee checks the shape of a gowrap wrapper that holds its
// function inlined: its own instructions (inline index -1) are only the
// prologue, epilogue, argument set-up and the morestack call, and every
// inlined instruction descends from one and the same top-level inlined
// call, whose function is the callee.
func (b *Binary) inlinedCallee(w wrapperFunc, steps []step) (string, bool) {
	size := w.End - w.Entry
	for _, st := range steps {
		if st.inl >= 0 {
			continue
		}
		switch st.kind {
		case kNop, kFrame, kArgs, kArgp, kArgpLoad, kRet:
		case kJump, kCond:
			if st.target < 0 || uint64(st.target) >= size {
				return "", false
			}
		case kCall:
			if !isMorestack(st.callee) && !raceHook(st.callee) {
				return "", false
			}
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
		for _, st := range steps {
			if st.off == pc {
				return st.inl
			}
		}
		return -2 // not an instruction boundary
	}
	root := int32(-1)
	for _, st := range steps {
		idx := st.inl
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
	name, err := w.v.cstring(w.v.funcnameOff+uint64(binary.LittleEndian.Uint32(e[4:])), maxNameLen)
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

// callee names the function a direct call from base+off to target (an
// offset from base) enters, if target is a function's entry.
func (b *Binary) calleeAt(base uint64, target int64) (string, bool) {
	addr := uint64(int64(base) + target)
	f, ok := b.FuncForPC(addr)
	if !ok || f.Entry != addr {
		return "", false
	}
	return f.Name, true
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

// allZero reports whether b holds only the given padding byte or zeros.
func allZero(b []byte, pad byte) bool {
	for _, c := range b {
		if c != pad && c != 0 {
			return false
		}
	}
	return true
}

// amd64: the closure context is in DX, g in R14.

// Register families (RAX = 0 … R15 = 15) of the registers that matter.
const (
	famDX  = 2
	famSP  = 4
	famBP  = 5
	famR12 = 12
	famR13 = 13
	famR14 = 14
	famRIP = 16
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

// amd64State follows what the registers hold, linearly.
type amd64State struct {
	ctx   [16]bool // holds the closure context pointer
	panic bool     // R12 holds g._panic
	argp  bool     // the panic-argp check's load was seen
}

// write records that the register argument a is overwritten.
func (s *amd64State) write(a x86asm.Arg) {
	if f := regFamily(a); f >= 0 {
		s.ctx[f] = false
		if f == famR12 {
			s.panic = false
		}
	}
}

// stepsAMD64 classifies the instructions of a function at base; nil if
// some bytes before the padding do not decode.
func (b *Binary) stepsAMD64(code []byte, base uint64) []step {
	s := &amd64State{}
	s.ctx[famDX] = true
	var steps []step
	afterRet := false
	for pc := uint64(0); pc < uint64(len(code)); {
		in, err := x86asm.Decode(code[pc:], 64)
		if err != nil || in.Len == 0 {
			if allZero(code[pc:], 0xcc) {
				break
			}
			return nil
		}
		st := step{off: pc, end: pc + uint64(in.Len)}
		if afterRet {
			// The fix-up block is entered from the check's JNE, where
			// R12 still holds g._panic (argument set-up may reuse R12).
			s.panic = s.argp
		}
		st.kind, st.target, st.callee = b.classifyAMD64(s, in, base, pc)
		afterRet = afterRet || st.kind == kRet
		steps = append(steps, st)
		pc = st.end
	}
	return steps
}

func (b *Binary) classifyAMD64(s *amd64State, in x86asm.Inst, base, pc uint64) (kind, int64, string) {
	a0, a1 := in.Args[0], in.Args[1]
	next := int64(pc) + int64(in.Len)
	switch in.Op {
	case x86asm.NOP, x86asm.INT:
		return kNop, 0, ""
	case x86asm.RET:
		return kRet, 0, ""
	case x86asm.CALL:
		rel, ok := a0.(x86asm.Rel)
		if !ok {
			return kCallInd, 0, ""
		}
		if name, ok := b.calleeAt(base, next+int64(rel)); ok {
			return kCall, 0, name
		}
		return kOther, 0, ""
	case x86asm.JMP:
		if rel, ok := a0.(x86asm.Rel); ok {
			return kJump, next + int64(rel), ""
		}
		return kOther, 0, ""
	case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JNE,
		x86asm.JG, x86asm.JGE, x86asm.JL, x86asm.JLE, x86asm.JNO, x86asm.JNP,
		x86asm.JNS, x86asm.JO, x86asm.JP, x86asm.JS:
		if rel, ok := a0.(x86asm.Rel); ok {
			return kCond, next + int64(rel), ""
		}
		return kOther, 0, ""
	}
	// The panic-argp check: MOVQ 0x20(R14), R12; TESTQ R12, R12; and after
	// the RET LEAQ n(SP), R13; CMPQ 0(R12), R13; MOVQ SP, 0(R12).
	switch {
	case in.Op == x86asm.MOV && regFamily(a0) == famR12 && memBase(a1) == famR14:
		s.panic, s.argp = true, true
		return kArgpLoad, 0, ""
	case in.Op == x86asm.TEST && s.panic && regFamily(a0) == famR12 && regFamily(a1) == famR12,
		in.Op == x86asm.CMP && s.panic && memBase(a0) == famR12 && regFamily(a1) == famR13,
		in.Op == x86asm.MOV && s.panic && memBase(a0) == famR12 && regFamily(a1) == famSP:
		return kArgp, 0, ""
	case in.Op == x86asm.LEA && regFamily(a0) == famR13 && memBase(a1) == famSP:
		return kArgp, 0, ""
	}
	// The stack bound check and the frame: CMPQ SP|R12, 0x10(R14); LEAQ
	// -n(SP), R12; PUSHQ/POPQ BP; MOVQ SP, BP; SUBQ/ADDQ $n, SP; MOVQ BP,
	// n(SP); LEAQ n(SP), BP; MOVQ n(SP), BP.
	switch in.Op {
	case x86asm.CMP:
		if (regFamily(a0) == famSP || regFamily(a0) == famR12) && memBase(a1) == famR14 {
			return kFrame, 0, ""
		}
		return kOther, 0, ""
	case x86asm.PUSH, x86asm.POP:
		if regFamily(a0) == famBP {
			return kFrame, 0, ""
		}
		return kOther, 0, ""
	case x86asm.SUB, x86asm.ADD:
		if _, imm := a1.(x86asm.Imm); imm && regFamily(a0) == famSP {
			return kFrame, 0, ""
		}
		return kOther, 0, ""
	case x86asm.MOV:
		if regFamily(a0) == famBP && (regFamily(a1) == famSP || memBase(a1) == famSP) ||
			memBase(a0) == famSP && regFamily(a1) == famBP {
			s.write(a0)
			return kFrame, 0, ""
		}
	case x86asm.LEA:
		if (regFamily(a0) == famBP || regFamily(a0) == famR12) && memBase(a1) == famSP {
			s.write(a0)
			return kFrame, 0, ""
		}
	}
	if b.argSetupAMD64(s, in, base, pc) {
		return kArgs, 0, ""
	}
	return kOther, 0, ""
}

// argSetupAMD64 reports whether in loads a register from memory the
// wrapper may read, or moves a register, immediate or constant, or stores
// into the frame. Memory it may read: the closure context (through a
// register still holding it), its own frame (SP or BP based), and
// read-only data (RIP-relative into a segment neither writable nor
// executable: constants).
func (b *Binary) argSetupAMD64(s *amd64State, in x86asm.Inst, base, pc uint64) bool {
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
		if mb := memBase(a1); mb == famRIP || mb == famSP || mb == famBP {
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
		if mb := memBase(a0); mb != famSP && mb != famBP {
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
		mb := memBase(src)
		ok := false
		switch {
		case mb == famSP || mb == famBP:
			ok = true
		case mb == famRIP:
			ok = b.readOnly(uint64(int64(base+pc) + int64(in.Len) + src.Disp))
		case mb >= 0 && mb < 16:
			ok = s.ctx[mb]
		}
		if ok {
			s.write(a0)
		}
		return ok
	}
	return false
}

// arm64: the closure context is in X26, g in X28; X27 is the linker's
// temporary (ADRP X27, page; LDR Xt, [X27, #off]).

// arm64State follows what the registers hold, linearly.
type arm64State struct {
	ctx   [32]bool   // holds the closure context pointer
	page  [32]uint64 // holds an ADRP page address (0: none)
	panic int        // the register holding g._panic, or -1
	argp  bool       // the panic-argp check's load was seen
}

// xreg returns the number of a general-purpose register (X or W view;
// SP and ZR as 31), or -1.
func xreg(a arm64asm.Arg) int {
	var r arm64asm.Reg
	switch v := a.(type) {
	case arm64asm.Reg:
		r = v
	case arm64asm.RegSP:
		r = arm64asm.Reg(v)
	default:
		return -1
	}
	switch {
	case r >= arm64asm.W0 && r <= arm64asm.WZR:
		return int(r - arm64asm.W0)
	case r >= arm64asm.X0 && r <= arm64asm.XZR:
		return int(r - arm64asm.X0)
	case r == arm64asm.SP || r == arm64asm.WSP:
		return 31
	}
	return -1
}

// isSP reports whether a is the stack pointer.
func isSP(a arm64asm.Arg) bool {
	r, ok := a.(arm64asm.RegSP)
	return ok && (arm64asm.Reg(r) == arm64asm.SP || arm64asm.Reg(r) == arm64asm.WSP)
}

// isFP reports whether a is a floating-point or vector register.
func isFP(a arm64asm.Arg) bool {
	r, ok := a.(arm64asm.Reg)
	return ok && r >= arm64asm.B0 && r <= arm64asm.V31
}

var memImmRe = regexp.MustCompile(`^\[([A-Z0-9]+)(?:,#(-?\d+))?\]$`)

// memOffset returns the base register and offset of a memory operand with
// an immediate offset (no pre- or post-index).
func memOffset(a arm64asm.Arg) (base int, sp bool, off int64, ok bool) {
	m, isMem := a.(arm64asm.MemImmediate)
	if !isMem || m.Mode != arm64asm.AddrOffset {
		return 0, false, 0, false
	}
	sub := memImmRe.FindStringSubmatch(m.String())
	if sub == nil {
		return 0, false, 0, false
	}
	if sub[2] != "" {
		if _, err := fmt.Sscan(sub[2], &off); err != nil {
			return 0, false, 0, false
		}
	}
	return xreg(m.Base), isSP(m.Base), off, true
}

// memBaseARM64 returns the base register of any memory operand with an
// immediate (31 = SP), or -1.
func memBaseARM64(a arm64asm.Arg) int {
	if m, ok := a.(arm64asm.MemImmediate); ok {
		return xreg(m.Base)
	}
	return -1
}

func (s *arm64State) write(r int) {
	if r >= 0 && r < 32 {
		s.ctx[r], s.page[r] = false, 0
		if s.panic == r {
			s.panic = -1
		}
	}
}

// stepsARM64 classifies the instructions of a function at base; nil if
// some words before the padding do not decode.
func (b *Binary) stepsARM64(code []byte, base uint64) []step {
	s := &arm64State{panic: -1}
	s.ctx[26] = true
	var steps []step
	afterRet := false
	panicReg := -1
	for pc := uint64(0); pc+4 <= uint64(len(code)); pc += 4 {
		in, err := arm64asm.Decode(code[pc:])
		if err != nil {
			if allZero(code[pc:], 0) {
				break
			}
			return nil
		}
		if afterRet && s.argp {
			s.panic = panicReg // entered from the check's CBNZ
		}
		st := step{off: pc, end: pc + 4}
		st.kind, st.target, st.callee = b.classifyARM64(s, in, base, pc, afterRet)
		if st.kind == kArgpLoad {
			panicReg = s.panic
		}
		afterRet = afterRet || st.kind == kRet
		steps = append(steps, st)
	}
	return steps
}

func (b *Binary) classifyARM64(s *arm64State, in arm64asm.Inst, base, pc uint64, afterRet bool) (kind, int64, string) {
	if k, target, callee, ok := b.branchARM64(s, in, base, pc); ok {
		return k, target, callee
	}
	a := in.Args
	switch in.Op {
	case arm64asm.CMP:
		// The stack bound check (CMP SP|X17, X16) and, after the return,
		// the fix-up's CMP X20, X17.
		r0, r1 := xreg(a[0]), -1
		if e, ok := a[1].(arm64asm.RegExtshiftAmount); ok {
			r1 = regOfExt(e)
		}
		switch {
		case (isSP(a[0]) || r0 == 17) && r1 == 16:
			return kFrame, 0, ""
		case afterRet && r0 >= 0 && r1 >= 0:
			return kArgp, 0, ""
		}
		return kOther, 0, ""
	case arm64asm.LDR, arm64asm.LDUR, arm64asm.LDRB, arm64asm.LDRH, arm64asm.LDRSB,
		arm64asm.LDRSH, arm64asm.LDRSW, arm64asm.LDURB, arm64asm.LDURH, arm64asm.LDURSB,
		arm64asm.LDURSH, arm64asm.LDURSW:
		return b.loadARM64(s, in, pc, base, afterRet), 0, ""
	case arm64asm.LDP:
		// Epilogue LDP X29, X30, [SP, #-8], or a pair from the context
		// or the frame.
		mb := memBaseARM64(a[2])
		r0, r1 := xreg(a[0]), xreg(a[1])
		switch {
		case mb == 31 && r0 == 29 && r1 == 30:
			s.write(29)
			s.write(30)
			return kFrame, 0, ""
		case mb == 31 || mb >= 0 && s.ctx[mb]:
			if _, _, _, ok := memOffset(a[2]); !ok {
				return kOther, 0, ""
			}
			s.write(r0)
			s.write(r1)
			return kArgs, 0, ""
		}
		return kOther, 0, ""
	case arm64asm.STR, arm64asm.STUR, arm64asm.STRB, arm64asm.STRH, arm64asm.STURB, arm64asm.STURH, arm64asm.STP:
		return storeARM64(s, in, afterRet), 0, ""
	case arm64asm.SUB, arm64asm.ADD:
		// SUB X29, SP, #8; SUB/ADD SP, SP, #n; SUB X17, SP, #n (stack
		// check); ADD Xd, SP, #n (a frame slot's address); ADD Xd, Xp,
		// #off after ADRP Xp (a constant's address).
		d, n := xreg(a[0]), xreg(a[1])
		if _, imm := a[2].(arm64asm.ImmShift); !imm {
			return kOther, 0, ""
		}
		switch {
		case n == 31 && (d == 31 || d == 29 || d == 17 && in.Op == arm64asm.SUB):
			s.write(d)
			return kFrame, 0, ""
		case n == 31 && in.Op == arm64asm.ADD:
			s.write(d)
			if afterRet {
				return kArgp, 0, ""
			}
			return kArgs, 0, ""
		case in.Op == arm64asm.ADD && n >= 0 && n < 31 && s.page[n] != 0:
			s.write(d)
			return kArgs, 0, ""
		}
		return kOther, 0, ""
	case arm64asm.ADRP:
		if rel, ok := a[1].(arm64asm.PCRel); ok {
			d := xreg(a[0])
			s.write(d)
			if d >= 0 && d < 31 {
				s.page[d] = uint64(int64((base+pc)&^0xfff) + int64(rel))
			}
			return kArgs, 0, ""
		}
		return kOther, 0, ""
	case arm64asm.MOV, arm64asm.MOVZ, arm64asm.MOVN, arm64asm.MOVK, arm64asm.ORR, arm64asm.FMOV:
		return b.moveARM64(s, in), 0, ""
	}
	return kOther, 0, ""
}

// storeARM64 classifies a store: the frame's own, an argument spilled to
// the frame, or (after the return) the fix-up of g._panic.argp.
func storeARM64(s *arm64State, in arm64asm.Inst, afterRet bool) kind {
	a := in.Args
	if in.Op == arm64asm.STP {
		mb := memBaseARM64(a[2])
		switch {
		case mb == 31 && xreg(a[0]) == 29 && xreg(a[1]) == 30:
			return kFrame
		case mb == 31:
			if _, _, _, ok := memOffset(a[2]); ok {
				return kArgs
			}
		}
		return kOther
	}
	mb := memBaseARM64(a[1])
	r := xreg(a[0])
	switch {
	case mb == 31 && (r == 29 || r == 30):
		return kFrame // STR X30, [SP, #-n]!; STUR X29, [SP, #-8]
	case mb == 31:
		if _, _, _, ok := memOffset(a[1]); ok {
			return kArgs
		}
	case afterRet && mb >= 0 && mb == s.panic:
		return kArgp // g._panic.argp = the wrapper's caller's argp
	}
	return kOther
}

// branchARM64 classifies the control-flow instructions (NOP, RET, BL, BLR,
// B, B.cond, CBZ, CBNZ); ok is false for any other.
func (b *Binary) branchARM64(s *arm64State, in arm64asm.Inst, base, pc uint64) (k kind, target int64, callee string, ok bool) {
	a := in.Args
	switch in.Op {
	case arm64asm.NOP, arm64asm.HINT:
		return kNop, 0, "", true
	case arm64asm.RET:
		return kRet, 0, "", true
	case arm64asm.BL:
		if rel, ok := a[0].(arm64asm.PCRel); ok {
			if name, ok := b.calleeAt(base, int64(pc)+int64(rel)); ok {
				s.write(30)
				return kCall, 0, name, true
			}
		}
		return kOther, 0, "", true
	case arm64asm.BLR:
		return kCallInd, 0, "", true
	case arm64asm.B:
		if rel, ok := a[0].(arm64asm.PCRel); ok {
			return kJump, int64(pc) + int64(rel), "", true
		}
		if _, ok := a[0].(arm64asm.Cond); ok {
			if rel, ok := a[1].(arm64asm.PCRel); ok {
				return kCond, int64(pc) + int64(rel), "", true
			}
		}
		return kOther, 0, "", true
	case arm64asm.CBZ, arm64asm.CBNZ:
		if rel, ok := a[1].(arm64asm.PCRel); ok {
			return kCond, int64(pc) + int64(rel), "", true
		}
		return kOther, 0, "", true
	}
	return 0, 0, "", false
}

// regOfExt returns the register of a shifted-register operand without
// shift, or -1.
func regOfExt(e arm64asm.RegExtshiftAmount) int {
	str := e.String()
	if strings.Contains(str, ",") {
		return -1
	}
	for r := arm64asm.W0; r <= arm64asm.XZR; r++ {
		if r.String() == str {
			return xreg(r)
		}
	}
	return -1
}

// loadARM64 classifies a single-register load.
func (b *Binary) loadARM64(s *arm64State, in arm64asm.Inst, pc, base uint64, afterRet bool) kind {
	d := xreg(in.Args[0])
	if d < 0 && !isFP(in.Args[0]) {
		return kOther
	}
	mb := memBaseARM64(in.Args[1])
	m, _ := in.Args[1].(arm64asm.MemImmediate)
	switch {
	case mb == 31 && (d == 29 || d == 30):
		s.write(d) // LDUR X29, [SP, #-8]; LDR X30, [SP], #n
		return kFrame
	case mb == 28:
		// From g: the stack bound (LDR X16, [X28, #16]) or g._panic
		// (LDR X16, [X28, #32]).
		_, _, off, ok := memOffset(in.Args[1])
		s.write(d)
		switch {
		case ok && off == 16:
			return kFrame
		case ok && off == 32 && !afterRet:
			s.panic, s.argp = d, true
			return kArgpLoad
		}
		return kOther
	case afterRet && mb >= 0 && mb == s.panic && m.Mode == arm64asm.AddrOffset:
		s.write(d)
		return kArgp // LDR X17, [X16]: g._panic.argp
	}
	base0, sp, off, ok := memOffset(in.Args[1])
	if !ok {
		return kOther
	}
	var allowed bool
	switch {
	case sp:
		allowed = true
	case base0 >= 0 && base0 < 31 && s.ctx[base0]:
		allowed = true
	case base0 >= 0 && base0 < 31 && s.page[base0] != 0:
		allowed = b.readOnly(uint64(int64(s.page[base0]) + off))
	}
	if !allowed {
		return kOther
	}
	s.write(d)
	return kArgs
}

// moveARM64 classifies register moves and constants: MOV Xd, Xs|#imm,
// MOVZ/MOVN/MOVK, ORR Xd, XZR, #imm, FMOV Dd, #imm|Xs|XZR.
func (b *Binary) moveARM64(s *arm64State, in arm64asm.Inst) kind {
	a := in.Args
	d := xreg(a[0])
	if d < 0 && !isFP(a[0]) {
		return kOther
	}
	var src arm64asm.Arg = a[1]
	if in.Op == arm64asm.ORR {
		// Only ORR Xd, XZR, #imm (a constant).
		if xreg(a[1]) != 31 {
			return kOther
		}
		switch a[2].(type) {
		case arm64asm.Imm64, arm64asm.Imm:
		default:
			return kOther
		}
		s.write(d)
		return kArgs
	}
	copyCtx := false
	switch v := src.(type) {
	case arm64asm.Reg:
		if r := xreg(v); r >= 0 && r < 31 {
			copyCtx = s.ctx[r]
		} else if !isFP(v) && xreg(v) != 31 {
			return kOther
		}
	case arm64asm.RegSP:
		if isSP(v) {
			return kOther
		}
		if r := xreg(v); r >= 0 && r < 31 {
			copyCtx = s.ctx[r]
		}
	case arm64asm.Imm, arm64asm.Imm64, arm64asm.ImmShift, arm64asm.Imm_fp:
	default:
		return kOther
	}
	if d >= 0 && d < 31 && s.page[d] != 0 && in.Op == arm64asm.MOVK {
		return kOther
	}
	s.write(d)
	if copyCtx && d >= 0 && d < 31 {
		s.ctx[d] = true
	}
	return kArgs
}
