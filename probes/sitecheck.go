package probes

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/blindspot-dev/blindspot/probes/procmem"
	"github.com/blindspot-dev/blindspot/symbols"
)

// Breakpoints the kernel writes for a uprobe: an existing probe at the same
// site (another family's, or another tool's) shows one in the process.
const (
	int3       = 0xcc       // amd64
	arm64UBRK  = 0xd42000a0 // arm64 BRK #0x5
	arm64InstN = 4
)

// verifySites checks, before anything is attached to pid, that each file
// offset is a proven instruction start (symbols.CheckSite) and that pid's
// own mapping of its executable holds that very instruction there: a
// wrong file offset for an unusual layout would otherwise place a
// breakpoint inside another instruction and change what the program runs.
// Any mismatch refuses all of offs.
func verifySites(pid int, bin *symbols.Binary, offs []uint64) error {
	exe, err := procmem.ReadExeMap(pid)
	if err != nil {
		return fmt.Errorf("check sites: %w", err)
	}
	for _, off := range offs {
		addr, err := bin.OffsetAddr(off)
		if err != nil {
			return fmt.Errorf("check site: %w", err)
		}
		site, err := bin.CheckSite(addr)
		if err != nil {
			return fmt.Errorf("check site: %w", err)
		}
		if site.Offset != off {
			return fmt.Errorf("check site %#x: file offset %#x, expected %#x", addr, off, site.Offset)
		}
		at, err := exe.Addr(off)
		if err != nil {
			return fmt.Errorf("check site %#x: %w", addr, err)
		}
		got := make([]byte, len(site.Inst))
		if err := procmem.Read(pid, at, got); err != nil {
			return fmt.Errorf("check site %#x: read process memory: %w", addr, err)
		}
		if !sameInstruction(bin.Arch, got, site.Inst) {
			return fmt.Errorf("check site %#x (file offset %#x): process holds % x where the executable has % x; refusing to probe",
				addr, off, got, site.Inst)
		}
	}
	return nil
}

// sameInstruction compares the bytes read from the process with the
// decoded instruction, allowing for a uprobe breakpoint already there.
func sameInstruction(arch string, got, want []byte) bool {
	if bytes.Equal(got, want) {
		return true
	}
	switch arch {
	case "amd64":
		return len(got) == len(want) && len(got) > 0 && got[0] == int3 && bytes.Equal(got[1:], want[1:])
	case "arm64":
		return len(got) == arm64InstN && binary.LittleEndian.Uint32(got) == arm64UBRK
	}
	return false
}
