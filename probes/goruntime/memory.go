package goruntime

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIovecs is the most remote ranges one process_vm_readv call takes
// (IOV_MAX).
const maxIovecs = 1024

// span is one range of the observed program's memory.
type span struct {
	addr uint64
	n    int
}

// memReader reads another process's memory with process_vm_readv: many
// ranges per system call, never writing to it.
type memReader struct {
	pid    int
	remote []unix.RemoteIovec
}

// read fills dst with the spans, in order, back to back (dst must hold
// their total length). A span that cannot be read (unmapped, freed) is
// zeroed and reported in failed; the others are still read. It returns
// an error only when the process cannot be read at all.
func (r *memReader) read(spans []span, dst []byte) (failed int, err error) {
	off := 0
	for len(spans) > 0 {
		n := min(len(spans), maxIovecs)
		r.remote = r.remote[:0]
		total := 0
		for _, s := range spans[:n] {
			r.remote = append(r.remote, unix.RemoteIovec{Base: uintptr(s.addr), Len: s.n})
			total += s.n
		}
		local := []unix.Iovec{{Base: &dst[off], Len: uint64(total)}}
		got, err := processVMReadv(r.pid, local, r.remote)
		if err != nil && got <= 0 {
			if errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.EPERM) {
				return failed, err
			}
			got = 0
		}
		if got >= total {
			off += total
			spans = spans[n:]
			continue
		}
		// Skip past the span the read stopped in, zeroing it.
		done := 0
		i := 0
		for ; i < n && done+spans[i].n <= got; i++ {
			done += spans[i].n
		}
		clear(dst[off+done : off+done+spans[i].n])
		failed++
		off += done + spans[i].n
		spans = spans[i+1:]
	}
	return failed, nil
}

func processVMReadv(pid int, local []unix.Iovec, remote []unix.RemoteIovec) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_PROCESS_VM_READV, uintptr(pid),
		uintptr(unsafe.Pointer(&local[0])), uintptr(len(local)),
		uintptr(unsafe.Pointer(&remote[0])), uintptr(len(remote)), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}

// exeMapStart returns the start address of the mapping of pid's
// executable at file offset 0, from /proc/PID/maps.
func exeMapStart(pid int) (uint64, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return 0, err
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[2] != "00000000" || strings.TrimSuffix(strings.Join(fs[5:], " "), " (deleted)") != exe {
			continue
		}
		start, _, _ := strings.Cut(fs[0], "-")
		return strconv.ParseUint(start, 16, 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no mapping of %s at offset 0", exe)
}
