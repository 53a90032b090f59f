package symbols

import (
	"fmt"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

// Sites are where probes go inside one function, as virtual addresses.
type Sites struct {
	// Entry is the cheapest safe instruction at which the call has begun.
	// On amd64 it is the prologue's PUSHQ BP, which the kernel emulates,
	// which runs exactly once per call (after the stack check, so not again
	// when morestack restarts the function), and where all argument
	// registers still hold the arguments. Frameless functions without
	// PUSHQ BP get Func.Entry. On arm64 it is the instruction after the
	// stack check's B.LS, or Func.Entry if there is none.
	Entry uint64
	// Returns holds every return instruction (RET on amd64 and arm64).
	// Tail calls (jumps to another function) are not returns.
	Returns []uint64
}

// maxFuncSize bounds the bytes read for one function.
const maxFuncSize = 16 << 20

// prologueScan is how many instructions from the entry are searched for
// the entry site.
const prologueScan = 8

// Sites disassembles f and returns its probe sites.
//
// Disassembly is linear over [f.Entry, f.End). Go emits no data inside
// functions on amd64 or arm64, so an undecodable byte (amd64) or word
// (arm64) is skipped and decoding goes on; such bytes occur only in the
// padding after the last instruction.
func (b *Binary) Sites(f Func) (Sites, error) {
	if f.End <= f.Entry {
		return Sites{}, fmt.Errorf("function %s: empty range", f.Name)
	}
	if f.End-f.Entry > maxFuncSize {
		return Sites{}, fmt.Errorf("function %s: %d bytes is too large", f.Name, f.End-f.Entry)
	}
	code, err := b.readAt(f.Entry, f.End-f.Entry)
	if err != nil {
		return Sites{}, fmt.Errorf("read function %s: %w", f.Name, err)
	}
	switch b.Arch {
	case "amd64":
		return sitesAMD64(code, f.Entry), nil
	case "arm64":
		return sitesARM64(code, f.Entry), nil
	}
	return Sites{}, fmt.Errorf("sites of %s: %w", f.Name, ErrUnsupportedArch)
}

func sitesAMD64(code []byte, base uint64) Sites {
	s := Sites{Entry: base}
	prologue, entryFound := true, false
	for pc, n := 0, 0; pc < len(code); n++ {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil || inst.Len == 0 {
			pc++
			prologue = false
			continue
		}
		switch inst.Op {
		case x86asm.RET:
			s.Returns = append(s.Returns, base+uint64(pc))
			prologue = false
		case x86asm.PUSH:
			if prologue && !entryFound && inst.Args[0] == x86asm.RBP {
				s.Entry, entryFound = base+uint64(pc), true
				prologue = false
			}
		case x86asm.CALL, x86asm.JMP, x86asm.INT, x86asm.UD2:
			prologue = false
		}
		if n >= prologueScan {
			prologue = false
		}
		pc += inst.Len
	}
	return s
}

func sitesARM64(code []byte, base uint64) Sites {
	s := Sites{Entry: base}
	prologue := true
	for pc, n := 0, 0; pc+4 <= len(code); pc, n = pc+4, n+1 {
		inst, err := arm64asm.Decode(code[pc:])
		if err != nil {
			prologue = false
			continue
		}
		switch inst.Op {
		case arm64asm.RET:
			s.Returns = append(s.Returns, base+uint64(pc))
			prologue = false
		case arm64asm.B:
			if c, ok := inst.Args[0].(arm64asm.Cond); ok && prologue && c.String() == "LS" && pc+4 < len(code) {
				s.Entry = base + uint64(pc) + 4
			}
			prologue = false
		case arm64asm.BL, arm64asm.BR, arm64asm.BLR:
			prologue = false
		}
		if n >= prologueScan {
			prologue = false
		}
	}
	return s
}
