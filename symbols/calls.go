package symbols

import (
	"encoding/binary"
	"fmt"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// CallSite is one call instruction inside a function.
type CallSite struct {
	// Call is the address of the CALL instruction (which the kernel
	// emulates: a cheap probe site).
	Call uint64
	// Return is the address of the instruction the call returns to.
	Return uint64
}

// CallSites returns every direct call from f to the function named callee
// (amd64 only), in address order.
func (b *Binary) CallSites(f Func, callee string) ([]CallSite, error) {
	if b.Arch != "amd64" {
		return nil, fmt.Errorf("call sites of %s: %w", f.Name, ErrUnsupportedArch)
	}
	target, err := b.LookupFunc(callee)
	if err != nil {
		return nil, err
	}
	if f.End <= f.Entry || f.End-f.Entry > maxFuncSize {
		return nil, fmt.Errorf("function %s: bad range", f.Name)
	}
	code, err := b.readAt(f.Entry, f.End-f.Entry)
	if err != nil {
		return nil, fmt.Errorf("read function %s: %w", f.Name, err)
	}
	return callSitesAMD64(code, f.Entry, target.Entry), nil
}

func callSitesAMD64(code []byte, base, target uint64) []CallSite {
	var out []CallSite
	for pc := 0; pc < len(code); {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil || inst.Len == 0 {
			pc++
			continue
		}
		next := base + uint64(pc+inst.Len)
		if inst.Op == x86asm.CALL {
			if rel, ok := inst.Args[0].(x86asm.Rel); ok && uint64(int64(next)+int64(rel)) == target {
				out = append(out, CallSite{Call: base + uint64(pc), Return: next})
			}
		}
		pc += inst.Len
	}
	return out
}

// PackageOf returns the package path of a function name as Go prints it:
// "github.com/lib/pq.(*conn).Query" → "github.com/lib/pq".
func PackageOf(funcName string) string {
	slash := strings.LastIndex(funcName, "/")
	dot := strings.Index(funcName[slash+1:], ".")
	if dot < 0 {
		return funcName
	}
	return funcName[:slash+1+dot]
}

// TypeName returns the type string of the runtime type descriptor at the
// link-time address rtype (such as "*net.OpError"), as reflection prints
// it: package names, not paths.
func (b *Binary) TypeName(rtype uint64) (string, error) {
	td, err := b.typeNames()
	if err != nil {
		return "", err
	}
	t := td.mem(rtype, rtypeSize)
	if t == nil {
		return "", fmt.Errorf("no type descriptor at %#x", rtype)
	}
	str := int64(int32(binary.LittleEndian.Uint32(t[rtypeStr:])))
	name, ok := td.decodeName(td.typesBase+uint64(str), false)
	if !ok {
		return "", fmt.Errorf("no type name for %#x", rtype)
	}
	if t[rtypeTFlag]&tflagExtraStar != 0 {
		name = strings.TrimPrefix(name, "*")
	}
	return name, nil
}

// LoadBias returns how far the executable was moved when loaded, from the
// start address of its first mapping (the one at file offset 0), as
// /proc/PID/maps shows it. It is 0 for executables that are not PIE.
func (b *Binary) LoadBias(mapStart uint64) uint64 {
	if !b.PIE {
		return 0
	}
	for _, p := range b.loads {
		if p.Off == 0 {
			return mapStart - (p.Vaddr &^ (p.Align - 1))
		}
	}
	return mapStart
}

// ArgSpill returns where f's prologue spills its first integer argument
// (RAX under ABIInternal: a method's receiver) to the stack, as an offset
// from SP in f's body, and whether such a spill was found (amd64 only).
// Go spills register arguments to their home slots in the caller's frame,
// which stay valid for the whole call.
func (b *Binary) ArgSpill(f Func) (uint64, bool, error) {
	if b.Arch != "amd64" {
		return 0, false, nil
	}
	n := f.End - f.Entry
	if n > 256 {
		n = 256
	}
	code, err := b.readAt(f.Entry, n)
	if err != nil {
		return 0, false, fmt.Errorf("read function %s: %w", f.Name, err)
	}
	off, ok := argSpillAMD64(code)
	return off, ok, nil
}

func argSpillAMD64(code []byte) (uint64, bool) {
	for pc, i := 0, 0; pc < len(code) && i < 24; i++ {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil || inst.Len == 0 {
			return 0, false
		}
		pc += inst.Len
		switch inst.Op {
		case x86asm.CALL, x86asm.RET, x86asm.JMP:
			return 0, false
		case x86asm.MOV:
			m, ok := inst.Args[0].(x86asm.Mem)
			if !ok || m.Base != x86asm.RSP || m.Index != 0 || m.Disp < 0 {
				if r, ok := inst.Args[0].(x86asm.Reg); ok && (r == x86asm.RAX || r == x86asm.EAX) {
					return 0, false // RAX overwritten before any spill
				}
				continue
			}
			if r, ok := inst.Args[1].(x86asm.Reg); ok && r == x86asm.RAX {
				return uint64(m.Disp), true
			}
		}
	}
	return 0, false
}
