// Package procmem reads the memory of an observed process — never writes
// it — with process_vm_readv, and finds where its executable is mapped.
// The samplers (runtime state, connection pools) and the decoders that
// name a Go type from a pointer all read through it.
package procmem

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

// MaxIovecs is the most remote ranges one process_vm_readv call takes
// (IOV_MAX).
const MaxIovecs = 1024

// Read fills buf with pid's memory at addr; a short read is an error.
func Read(pid int, addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &buf[0], Len: uint64(len(buf))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := ReadV(pid, local, remote)
	if err != nil {
		return err
	}
	if n != len(buf) {
		return syscall.EFAULT
	}
	return nil
}

// Word reads one 8-byte little-endian word of pid's memory at addr.
func Word(pid int, addr uint64) (uint64, error) {
	var v uint64
	err := Read(pid, addr, unsafe.Slice((*byte)(unsafe.Pointer(&v)), 8))
	return v, err
}

// ReadV is process_vm_readv: it returns how many bytes were read, which is
// less than asked when a remote range is not mapped.
func ReadV(pid int, local []unix.Iovec, remote []unix.RemoteIovec) (int, error) {
	if len(local) == 0 || len(remote) == 0 {
		return 0, nil
	}
	n, err := unix.ProcessVMReadv(pid, local, remote, 0)
	if err != nil {
		return -1, err
	}
	return n, nil
}

// Gone reports whether err means the process cannot be read at all (it
// exited, or reading it is not allowed).
func Gone(err error) bool {
	return errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.EPERM)
}

// ExeMapStart returns the start address of the mapping of pid's executable
// at file offset 0, from /proc/PID/maps: with the ELF's first PT_LOAD
// address it gives the load bias of a PIE program.
func ExeMapStart(pid int) (uint64, error) {
	maps, exe, err := exeMappings(pid)
	if err != nil {
		return 0, err
	}
	for _, m := range maps {
		if m.off == 0 {
			return m.start, nil
		}
	}
	return 0, fmt.Errorf("no mapping of %s at offset 0", exe)
}

// ExeMap is where a process maps its executable, read once from
// /proc/PID/maps.
type ExeMap struct {
	exe  string
	maps []mapping
}

// ReadExeMap reads the mappings of pid's executable.
func ReadExeMap(pid int) (*ExeMap, error) {
	maps, exe, err := exeMappings(pid)
	if err != nil {
		return nil, err
	}
	return &ExeMap{exe: exe, maps: maps}, nil
}

// Addr returns where the byte at file offset off of the executable is
// mapped.
func (e *ExeMap) Addr(off uint64) (uint64, error) {
	for _, m := range e.maps {
		if off >= m.off && off-m.off < m.end-m.start {
			return m.start + off - m.off, nil
		}
	}
	return 0, fmt.Errorf("file offset %#x of %s is not mapped", off, e.exe)
}

// mapping is one line of /proc/PID/maps.
type mapping struct{ start, end, off uint64 }

// exeMappings returns the mappings of pid's executable file.
func exeMappings(pid int) ([]mapping, string, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, "", err
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, exe, err
	}
	defer f.Close()
	var out []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || strings.TrimSuffix(strings.Join(fs[5:], " "), " (deleted)") != exe {
			continue
		}
		lo, hi, _ := strings.Cut(fs[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		off, err3 := strconv.ParseUint(fs[2], 16, 64)
		if err1 != nil || err2 != nil || err3 != nil || end <= start {
			continue
		}
		out = append(out, mapping{start, end, off})
	}
	if err := sc.Err(); err != nil {
		return nil, exe, err
	}
	return out, exe, nil
}
