package symbols

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// ErrGlobalNotFound is returned when a global variable cannot be located.
var ErrGlobalNotFound = errors.New("global variable not found")

// globalLocator finds a runtime global in a binary without .symtab: the
// runtime function fn references it RIP-relatively, and the first
// reference for which match holds is at the global plus the offset of
// field in structType (no field: the global itself).
type globalLocator struct {
	fn         string
	match      func(inst x86asm.Inst) bool
	nth        int // which matching reference (0 = the first)
	structType string
	field      string
}

// globalLocators are the runtime globals the runtime sampler reads, and
// the always-linked runtime functions that name them, checked against
// .symtab for Go 1.19, 1.26 and 1.27 (TestGlobalsMatchSymtab).
var globalLocators = map[string]globalLocator{
	// forEachGRace: ptr, length := atomicAllG() loads allglen, then allgptr.
	"runtime.allglen": {fn: "runtime.forEachGRace", match: loadsQuad, nth: 0},
	"runtime.allgptr": {fn: "runtime.forEachGRace", match: loadsQuad, nth: 1},
	// stopTheWorldWithSema: sched.stopwait = gomaxprocs is its first
	// 32-bit load from a global.
	"runtime.gomaxprocs": {fn: "runtime.stopTheWorldWithSema", match: loadsLong},
	// sysAlloc: gcController.mappedReady.Add(n) is its only reference.
	"runtime.gcController": {fn: "runtime.sysAlloc", match: anyRef, structType: "runtime.gcControllerState", field: "mappedReady"},
	// gcenable: memstats.enablegc = true, a byte store of an immediate.
	"runtime.memstats": {fn: "runtime.gcenable", match: storesImmByte, structType: "runtime.mstats", field: "enablegc"},
}

// GlobalAddrs returns the virtual addresses of global variables: from
// .symtab when the binary has one, else (amd64, for the runtime globals
// in globalLocators) from the code of a runtime function that references
// them. PIE binaries report link-time addresses: add the load bias. The
// error names every global that could not be located.
func (b *Binary) GlobalAddrs(names ...string) (map[string]uint64, error) {
	var objects map[string]uint64
	if b.HasSymtab {
		objects = b.symtabGlobals(names)
	}
	out := make(map[string]uint64, len(names))
	var errs []error
	for _, name := range names {
		if addr, ok := objects[name]; ok {
			out[name] = addr
			continue
		}
		addr, err := b.locateGlobal(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[name] = addr
	}
	return out, errors.Join(errs...)
}

// symtabGlobals returns the addresses .symtab gives the named globals.
// They are kept: every process of the binary asks for the same ones, and
// .symtab is read again only for a name not asked before.
func (b *Binary) symtabGlobals(names []string) map[string]uint64 {
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	if b.globals == nil {
		b.globals = map[string]uint64{}
	}
	for _, name := range names {
		if _, asked := b.globals[name]; asked {
			continue
		}
		objects := b.dataSymbols()
		for _, n := range names {
			b.globals[n] = objects[n] // 0: not in .symtab
		}
		break
	}
	out := make(map[string]uint64, len(names))
	for _, name := range names {
		if addr := b.globals[name]; addr != 0 {
			out[name] = addr
		}
	}
	return out
}

// dataSymbols reads the non-function symbols of .symtab.
func (b *Binary) dataSymbols() map[string]uint64 {
	out := map[string]uint64{}
	syms, err := b.symbols()
	if err != nil {
		return out
	}
	for _, s := range syms {
		if s.Value == 0 || s.Name == "" || int(s.Section) >= len(b.ef.Sections) {
			continue
		}
		if sec := b.ef.Sections[s.Section]; sec != nil && !strings.HasPrefix(sec.Name, ".text") {
			out[s.Name] = s.Value
		}
	}
	return out
}

// locateGlobal finds a global through the RIP-relative references of a
// function that uses it.
func (b *Binary) locateGlobal(name string) (uint64, error) {
	loc, ok := globalLocators[name]
	if !ok {
		return 0, fmt.Errorf("%w: %s (no symbol table, no known reference)", ErrGlobalNotFound, name)
	}
	if b.Arch != "amd64" {
		return 0, fmt.Errorf("locate %s: %w", name, ErrUnsupportedArch)
	}
	f, err := b.LookupFunc(loc.fn)
	if err != nil {
		return 0, fmt.Errorf("locate %s: %w", name, err)
	}
	refs, err := b.ripRefs(f, loc.match)
	if err != nil {
		return 0, fmt.Errorf("locate %s: %w", name, err)
	}
	if loc.nth >= len(refs) {
		return 0, fmt.Errorf("%w: %s: %s has %d matching references", ErrGlobalNotFound, name, loc.fn, len(refs))
	}
	addr := refs[loc.nth]
	if loc.field != "" {
		offs, _, err := b.StructFields(loc.structType, loc.field)
		if err != nil {
			return 0, fmt.Errorf("locate %s: %w", name, err)
		}
		addr -= offs[loc.field]
	}
	return addr, nil
}

// ripRefs returns, in code order, the addresses referenced RIP-relatively
// by the instructions of f for which match holds.
func (b *Binary) ripRefs(f Func, match func(x86asm.Inst) bool) ([]uint64, error) {
	if f.End <= f.Entry || f.End-f.Entry > maxFuncSize {
		return nil, fmt.Errorf("function %s: bad range", f.Name)
	}
	code, err := b.readAt(f.Entry, f.End-f.Entry)
	if err != nil {
		return nil, fmt.Errorf("read function %s: %w", f.Name, err)
	}
	var out []uint64
	for pc := 0; pc < len(code); {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil || inst.Len == 0 {
			pc++
			continue
		}
		next := f.Entry + uint64(pc+inst.Len)
		pc += inst.Len
		if !match(inst) {
			continue
		}
		for _, a := range inst.Args {
			if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP && m.Index == 0 {
				out = append(out, uint64(int64(next)+m.Disp))
				break
			}
		}
	}
	return out, nil
}

func ripMem(a x86asm.Arg) bool {
	m, ok := a.(x86asm.Mem)
	return ok && m.Base == x86asm.RIP
}

func isReg(a x86asm.Arg, lo, hi x86asm.Reg) bool {
	r, ok := a.(x86asm.Reg)
	return ok && r >= lo && r <= hi
}

// loadsQuad: MOVQ sym(RIP), reg.
func loadsQuad(i x86asm.Inst) bool {
	return i.Op == x86asm.MOV && isReg(i.Args[0], x86asm.RAX, x86asm.R15) && ripMem(i.Args[1])
}

// loadsLong: MOVL sym(RIP), reg.
func loadsLong(i x86asm.Inst) bool {
	return i.Op == x86asm.MOV && isReg(i.Args[0], x86asm.EAX, x86asm.R15L) && ripMem(i.Args[1])
}

// storesImmByte: MOVB $imm, sym(RIP).
func storesImmByte(i x86asm.Inst) bool {
	if i.Op != x86asm.MOV || !ripMem(i.Args[0]) || i.MemBytes != 1 {
		return false
	}
	_, ok := i.Args[1].(x86asm.Imm)
	return ok
}

func anyRef(i x86asm.Inst) bool {
	return i.Op != x86asm.CALL && i.Op != x86asm.JMP && (ripMem(i.Args[0]) || ripMem(i.Args[1]))
}

// FuncForPC returns the function holding pc (a link-time address).
func (b *Binary) FuncForPC(pc uint64) (Func, bool) { return b.funcHolding(pc) }
