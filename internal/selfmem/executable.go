package selfmem

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// mapping is one read-only mapping of the executable.
type mapping struct {
	start, end uintptr
}

// Executable is the agent's own executable as mapped into it.
type Executable struct {
	mu   sync.Mutex
	maps []mapping
	// baseline is the resident bytes at the last PageOutIfGrown or
	// page-out (-1: none yet).
	baseline int64
	disabled error // the kernel refused the advice: not tried again
}

// Self returns the running program's executable. It fails when /proc
// cannot tell which mappings are the executable's.
func Self() (*Executable, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("own executable: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("own mappings: %w", err)
	}
	defer f.Close()
	maps, err := readOnlyMappings(f, exe)
	if err != nil {
		return nil, fmt.Errorf("own mappings: %w", err)
	}
	if len(maps) == 0 {
		return nil, fmt.Errorf("own mappings: none of %s found", exe)
	}
	return &Executable{maps: maps, baseline: -1}, nil
}

// readOnlyMappings returns the read-only mappings of path listed in a
// /proc/PID/maps file.
func readOnlyMappings(r io.Reader, path string) ([]mapping, error) {
	var out []mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 6 || string(bytes.Join(fields[5:], []byte(" "))) != path {
			continue
		}
		perms := fields[1]
		if len(perms) < 4 || perms[0] != 'r' || perms[1] != '-' {
			continue // writable: its changed pages are the program's data
		}
		lo, hi, ok := bytes.Cut(fields[0], []byte("-"))
		if !ok {
			return nil, fmt.Errorf("bad line %q", sc.Text())
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("bad line %q", sc.Text())
		}
		out = append(out, mapping{uintptr(start), uintptr(end)})
	}
	return out, sc.Err()
}

// Resident returns the bytes of the executable's read-only mappings that
// are present in this process's page tables.
func (e *Executable) Resident() (int64, error) {
	return e.scan(nil)
}

// scan counts the resident bytes of the executable's read-only mappings,
// and calls run for each run of resident pages of the file.
func (e *Executable) scan(run func(lo, hi uintptr)) (int64, error) {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 8*1024)
	if run == nil {
		run = func(lo, hi uintptr) {}
	}
	var pages int64
	for _, m := range e.maps {
		n, err := scanPages(f, m.start, m.end, buf, run)
		if err != nil {
			return 0, err
		}
		pages += n
	}
	return pages * int64(os.Getpagesize()), nil
}

// PageOut unmaps the executable's pages resident in this process (they
// stay in the page cache), and returns the resident bytes before and
// after. Only the file's own pages go: a page the process holds a private
// copy of (a debugger's breakpoint written into the code) is kept.
func (e *Executable) PageOut() (before, after int64, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.disabled != nil {
		return 0, 0, e.disabled
	}
	var adviseErr error
	before, err = e.scan(func(lo, hi uintptr) {
		if adviseErr == nil {
			adviseErr = madvise(lo, hi-lo, unix.MADV_DONTNEED)
		}
	})
	if err != nil {
		return 0, 0, err
	}
	if adviseErr != nil {
		if errors.Is(adviseErr, syscall.EINVAL) {
			e.disabled = fmt.Errorf("madvise MADV_DONTNEED refused: %w", adviseErr)
			return before, before, e.disabled
		}
		return before, before, fmt.Errorf("madvise: %w", adviseErr)
	}
	if after, err = e.Resident(); err != nil {
		return before, 0, err
	}
	e.baseline = after
	return before, after, nil
}

// PageOutIfGrown pages out when the resident pages grew by at least
// threshold bytes since the last call (or the last page-out): a burst of
// work that touched code no other call saw. Pages the agent keeps using
// come back after a page-out, slowly, and are left alone. The first call
// only measures.
func (e *Executable) PageOutIfGrown(threshold int64) (paged bool, before, after int64, err error) {
	e.mu.Lock()
	baseline, disabled := e.baseline, e.disabled
	e.mu.Unlock()
	if disabled != nil {
		return false, 0, 0, nil
	}
	now, err := e.Resident()
	if err != nil {
		return false, 0, 0, err
	}
	if baseline < 0 || now-baseline < threshold {
		e.mu.Lock()
		e.baseline = now
		e.mu.Unlock()
		return false, now, now, nil
	}
	before, after, err = e.PageOut()
	return err == nil, before, after, err
}
