package goruntime

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/blindspot-dev/blindspot/probes/procmem"
	"golang.org/x/sys/unix"
)

const maxIovecs = procmem.MaxIovecs

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
		got, err := procmem.ReadV(r.pid, local, r.remote)
		if err != nil && got <= 0 {
			if procmem.Gone(err) {
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

// residentAndSwap returns the bytes of the process's memory that are
// resident or swapped out (VmRSS + VmSwap of /proc/PID/status): every
// page the program has written is in one or the other.
func residentAndSwap(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	// The file is a few KiB; a bound keeps a reading from growing.
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return 0, err
	}
	var total uint64
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmSwap") {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, name, err)
		}
		total += kb << 10
		found = found || name == "VmRSS"
	}
	if !found {
		return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return total, nil
}
