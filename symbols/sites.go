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
	// EntryEmulated reports whether the kernel emulates the instruction at
	// Entry (amd64 PUSH, NOP, CALL, JMP, Jcc) instead of single-stepping it
	// at about three times the cost.
	EntryEmulated bool
	// StackCheck is the conditional branch of the prologue's stack check
	// (amd64 JBE, arm64 B.LS), 0 if there is none. The kernel emulates it,
	// but it runs a second time when the stack grows (morestack restarts
	// the function): a site for probes whose program is idempotent, on
	// releases whose prologue has no emulated instruction at Entry (Go
	// 1.19 and 1.20 on amd64 set up frames without PUSHQ BP).
	StackCheck uint64
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
	var afterCheck uint64 // the instruction after the stack check's JBE
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
		case x86asm.JBE:
			if prologue && s.StackCheck == 0 && pc > 0 && comparesStackBound(code[:pc]) {
				s.StackCheck = base + uint64(pc)
				afterCheck = base + uint64(pc+inst.Len)
			}
		case x86asm.CALL, x86asm.JMP, x86asm.INT, x86asm.UD2:
			prologue = false
		}
		if n >= prologueScan {
			prologue = false
		}
		pc += inst.Len
	}
	if !entryFound && afterCheck != 0 && afterCheck < base+uint64(len(code)) {
		// No PUSHQ BP: the first instruction past the stack check still
		// runs once per call with the arguments in place.
		s.Entry = afterCheck
	}
	if off := s.Entry - base; off < uint64(len(code)) {
		s.EntryEmulated = emulatedAMD64(code[off:])
	}
	return s
}

// comparesStackBound reports whether code (the prologue so far) holds the
// stack check's CMP against the goroutine's stack guard, 16(R14).
func comparesStackBound(code []byte) bool {
	for pc := 0; pc < len(code); {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil || inst.Len == 0 {
			return false
		}
		if inst.Op == x86asm.CMP {
			for _, a := range inst.Args {
				if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.R14 && m.Disp == 16 {
					return true
				}
			}
		}
		pc += inst.Len
	}
	return false
}

// emulatedAMD64 reports whether the kernel's uprobe code emulates the
// instruction at the start of code rather than single-stepping it.
func emulatedAMD64(code []byte) bool {
	inst, err := x86asm.Decode(code, 64)
	if err != nil {
		return false
	}
	switch inst.Op {
	case x86asm.PUSH, x86asm.NOP, x86asm.CALL, x86asm.JMP:
		return true
	}
	return isJcc(inst.Op)
}

func isJcc(op x86asm.Op) bool {
	switch op {
	case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JG, x86asm.JGE,
		x86asm.JL, x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP, x86asm.JNS, x86asm.JO,
		x86asm.JP, x86asm.JS:
		return true
	}
	return false
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
				s.StackCheck = base + uint64(pc)
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
