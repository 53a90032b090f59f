package selfmem

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// madvise advises the kernel on [addr, addr+n) of this process's memory,
// given by address: a mapping of the executable, not Go memory.
func madvise(addr, n uintptr, advice int) error {
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, addr, n, uintptr(advice)); errno != 0 {
		return errno
	}
	return nil
}

// Bits of a /proc/PID/pagemap entry: the page is present in the
// process's page tables; it is a page of the file (or shared), not a
// private copy the process wrote (a debugger's breakpoint, a uprobe).
const (
	pagemapPresent = 1 << 63
	pagemapFile    = 1 << 61
)

// scanPages reads /proc/self/pagemap (which a process may read of itself)
// over [start, end): it counts the pages present, and calls run for each
// run of present file pages, as addresses.
func scanPages(pagemap *os.File, start, end uintptr, buf []byte, run func(lo, hi uintptr)) (int64, error) {
	page := uintptr(os.Getpagesize())
	var n int64
	runStart := uintptr(0) // 0: not in a run
	for at := start; at < end; {
		count := min(uintptr(len(buf)/8), (end-at)/page)
		b := buf[:count*8]
		if _, err := pagemap.ReadAt(b, int64(at/page*8)); err != nil {
			return 0, fmt.Errorf("read pagemap: %w", err)
		}
		for i := uintptr(0); i < count; i++ {
			e := binary.LittleEndian.Uint64(b[8*i:])
			addr := at + i*page
			if e&pagemapPresent != 0 {
				n++
			}
			file := e&(pagemapPresent|pagemapFile) == pagemapPresent|pagemapFile
			switch {
			case file && runStart == 0:
				runStart = addr
			case !file && runStart != 0:
				run(runStart, addr)
				runStart = 0
			}
		}
		at += count * page
	}
	if runStart != 0 {
		run(runStart, end)
	}
	return n, nil
}
