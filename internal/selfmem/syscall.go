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

// pagemapPresent is the bit of a /proc/PID/pagemap entry set for a page
// present in the process's page tables.
const pagemapPresent = 1 << 63

// residentPages counts the pages of [start, end) present in this
// process's page tables (not merely in the page cache), from
// /proc/self/pagemap, which a process may read of itself.
func residentPages(pagemap *os.File, start, end uintptr, buf []byte) (int64, error) {
	page := uintptr(os.Getpagesize())
	var n int64
	for at := start; at < end; {
		count := min(uintptr(len(buf)/8), (end-at)/page)
		b := buf[:count*8]
		if _, err := pagemap.ReadAt(b, int64(at/page*8)); err != nil {
			return 0, fmt.Errorf("read pagemap: %w", err)
		}
		for i := 0; i < len(b); i += 8 {
			if binary.LittleEndian.Uint64(b[i:])&pagemapPresent != 0 {
				n++
			}
		}
		at += count * page
	}
	return n, nil
}
