//go:build linux

package main

import (
	"os"
	"runtime"

	"golang.org/x/arch/x86/x86asm"
)

// Trap kinds: what the kernel does with the instruction under a uprobe.
// On amd64 it emulates NOP, PUSH, CALL, JMP and the conditional jumps
// (arch/x86/kernel/uprobes.c) and single-steps every other instruction
// (RET among them) out of line, at about three times the cost here.
const (
	trapEmulated     = "emulated"
	trapSingleStep   = "single-stepped"
	trapMixed        = "mixed"
	trapUnclassified = "unclassified"
)

// trapKind classifies the instruction at file offset off of the executable
// at path.
func trapKind(path string, off uint64) string {
	if runtime.GOARCH != "amd64" {
		return trapUnclassified
	}
	f, err := os.Open(path)
	if err != nil {
		return trapUnclassified
	}
	defer f.Close()
	code := make([]byte, 16)
	n, _ := f.ReadAt(code, int64(off))
	return trapKindAMD64(code[:n])
}

// trapKindAMD64 classifies the amd64 instruction at the start of code.
func trapKindAMD64(code []byte) string {
	inst, err := x86asm.Decode(code, 64)
	if err != nil {
		return trapUnclassified
	}
	switch inst.Op {
	case x86asm.PUSH, x86asm.NOP, x86asm.CALL, x86asm.JMP,
		x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JG, x86asm.JGE,
		x86asm.JL, x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP, x86asm.JNS, x86asm.JO,
		x86asm.JP, x86asm.JS:
		return trapEmulated
	}
	return trapSingleStep
}

// rowTrapKind is the trap kind of every site of one probe row.
func rowTrapKind(path string, offs []uint64) string {
	kind := ""
	for _, off := range offs {
		k := trapKind(path, off)
		switch {
		case kind == "":
			kind = k
		case kind != k:
			return trapMixed
		}
	}
	return kind
}
