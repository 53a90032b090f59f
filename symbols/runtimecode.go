package symbols

import (
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// Field offsets of runtime-internal structs read from the machine code of
// the runtime functions that use them. Stripped binaries keep no type data
// for runtime.mstats, and the table has no row for some releases (1.20,
// 1.25): the runtime's own instructions still say where it reads and
// writes each field, on every release, without a table.
//
//   - memstats' address: its first field, heapStats, is the receiver of
//     every call to (*consistentHeapStats).acquire, loaded with a
//     RIP-relative LEAQ.
//   - numgc and pause_ns: gcMarkTermination records the pause with
//     memstats.pause_ns[memstats.numgc%256] = ..., compiled to a byte load
//     of numgc (MOVZX), a LEAQ of pause_ns and a store indexed by the
//     first; it also increments numgc (INCL numgc).
//   - enablegc: gcenable stores the immediate true to it (MOVB $1).

// errNoCode says the code does not have the expected shape.
var errNoCode = errors.New("runtime code does not have the expected shape")

// codeStructFields answers for runtime.mstats from the runtime's code
// (amd64).
func (b *Binary) codeStructFields(typeName string, fields []string) (map[string]uint64, error) {
	if typeName != "runtime.mstats" {
		return nil, fmt.Errorf("struct %s: not read from code", typeName)
	}
	if b.Arch != "amd64" {
		return nil, ErrUnsupportedArch
	}
	b.mstatsOnce.Do(func() { b.mstatsCode, b.mstatsErr = b.mstatsFromCode() })
	if b.mstatsErr != nil {
		return nil, b.mstatsErr
	}
	out, missing := pick(b.mstatsCode, fields)
	if len(missing) > 0 {
		return nil, missingError(typeName, missing, "runtime code")
	}
	return out, nil
}

func (b *Binary) mstatsFromCode() (map[string]uint64, error) {
	base, err := b.memstatsBase()
	if err != nil {
		return nil, err
	}
	numgc, pause, err := b.pauseRing()
	if err != nil {
		return nil, err
	}
	f, err := b.LookupFunc("runtime.gcenable")
	if err != nil {
		return nil, err
	}
	enable, err := b.ripRefs(f, storesImmByte)
	if err != nil {
		return nil, err
	}
	if len(enable) != 1 {
		return nil, fmt.Errorf("runtime.gcenable: %d byte stores, want 1: %w", len(enable), errNoCode)
	}
	out := map[string]uint64{}
	for name, addr := range map[string]uint64{"numgc": numgc, "pause_ns": pause, "enablegc": enable[0]} {
		if addr < base || addr-base > 1<<20 {
			return nil, fmt.Errorf("mstats.%s at %#x, memstats at %#x: %w", name, addr, base, errNoCode)
		}
		out[name] = addr - base
	}
	return out, nil
}

// reg64 names the 64-bit register of a 32-bit one.
func reg64(r x86asm.Reg) x86asm.Reg {
	if r >= x86asm.EAX && r <= x86asm.R15L {
		return r - x86asm.EAX + x86asm.RAX
	}
	return r
}

// walkCode decodes f linearly and calls fn with each instruction and the
// address of the next one.
func (b *Binary) walkCode(f Func, fn func(inst x86asm.Inst, next uint64)) error {
	if f.End <= f.Entry || f.End-f.Entry > maxFuncSize {
		return fmt.Errorf("function %s: bad range", f.Name)
	}
	code, err := b.readAt(f.Entry, f.End-f.Entry)
	if err != nil {
		return fmt.Errorf("read function %s: %w", f.Name, err)
	}
	for pc := 0; pc < len(code); {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil || inst.Len == 0 {
			pc++
			continue
		}
		pc += inst.Len
		fn(inst, f.Entry+uint64(pc))
	}
	return nil
}

// ripTarget returns the address a RIP-relative operand names.
func ripTarget(a x86asm.Arg, next uint64) (uint64, bool) {
	m, ok := a.(x86asm.Mem)
	if !ok || m.Base != x86asm.RIP || m.Index != 0 {
		return 0, false
	}
	return uint64(int64(next) + m.Disp), true
}

// memstatsBase returns runtime.memstats' address from the receivers of
// (*consistentHeapStats).acquire: every call site must agree.
func (b *Binary) memstatsBase() (uint64, error) {
	acquire, err := b.LookupFunc("runtime.(*consistentHeapStats).acquire")
	if err != nil {
		return 0, err
	}
	var base uint64
	calls := 0
	for _, name := range []string{"runtime.(*mheap).allocSpan", "runtime.(*mheap).freeSpanLocked", "runtime.(*mcache).refill"} {
		f, err := b.LookupFunc(name)
		if err != nil {
			continue
		}
		var ax uint64 // last RIP-relative LEAQ into AX
		var bad error
		err = b.walkCode(f, func(inst x86asm.Inst, next uint64) {
			switch {
			case inst.Op == x86asm.LEA && inst.Args[0] == x86asm.RAX:
				ax, _ = ripTarget(inst.Args[1], next)
			case inst.Op == x86asm.CALL:
				if rel, ok := inst.Args[0].(x86asm.Rel); ok && uint64(int64(next)+int64(rel)) == acquire.Entry {
					calls++
					switch {
					case ax == 0:
						bad = fmt.Errorf("%s: acquire's receiver not loaded by LEAQ: %w", name, errNoCode)
					case base != 0 && ax != base:
						bad = fmt.Errorf("%s: acquire on %#x and %#x: %w", name, base, ax, errNoCode)
					default:
						base = ax
					}
				}
				ax = 0
			}
		})
		if err != nil {
			return 0, err
		}
		if bad != nil {
			return 0, bad
		}
	}
	if calls == 0 || base == 0 {
		return 0, fmt.Errorf("runtime.memstats: no call to (*consistentHeapStats).acquire: %w", errNoCode)
	}
	return base, nil
}

// pauseRing returns the addresses of memstats.numgc and memstats.pause_ns
// from gcMarkTermination.
func (b *Binary) pauseRing() (numgc, pause uint64, err error) {
	f, err := b.LookupFunc("runtime.gcMarkTermination")
	if err != nil {
		return 0, 0, err
	}
	byteLoad := map[x86asm.Reg]uint64{} // register ← MOVZX byte from a global
	lea := map[x86asm.Reg]uint64{}      // register ← LEAQ of a global
	incs := map[uint64]bool{}
	type store struct{ index, base uint64 }
	var stores []store
	err = b.walkCode(f, func(inst x86asm.Inst, next uint64) {
		dst, isReg := inst.Args[0].(x86asm.Reg)
		switch {
		case inst.Op == x86asm.MOVZX && isReg && inst.MemBytes == 1:
			if t, ok := ripTarget(inst.Args[1], next); ok {
				byteLoad[reg64(dst)] = t
				return
			}
		case inst.Op == x86asm.LEA && isReg:
			if t, ok := ripTarget(inst.Args[1], next); ok {
				lea[reg64(dst)] = t
				return
			}
		case inst.Op == x86asm.INC:
			if t, ok := ripTarget(inst.Args[0], next); ok {
				incs[t] = true
			}
			return
		case inst.Op == x86asm.MOV && inst.MemBytes == 8:
			if m, ok := inst.Args[0].(x86asm.Mem); ok && m.Scale == 8 && m.Disp == 0 && m.Base != x86asm.RIP {
				if n, ok1 := byteLoad[reg64(m.Index)]; ok1 {
					if p, ok2 := lea[reg64(m.Base)]; ok2 {
						stores = append(stores, store{n, p})
					}
				}
			}
		}
		if isReg {
			delete(byteLoad, reg64(dst))
			delete(lea, reg64(dst))
		}
	})
	if err != nil {
		return 0, 0, err
	}
	// pause_ns, then pause_end: two ring stores indexed by numgc, which
	// the function also increments.
	if len(stores) != 2 || stores[0].index != stores[1].index || !incs[stores[0].index] ||
		stores[1].base != stores[0].base+256*8 {
		return 0, 0, fmt.Errorf("runtime.gcMarkTermination: pause ring stores %v: %w", stores, errNoCode)
	}
	return stores[0].index, stores[0].base, nil
}
