package discover

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is one running program.
type Process struct {
	PID int
	// StartTicks is the process's start time in clock ticks since boot,
	// which tells a reused PID apart.
	StartTicks uint64
	// Exe is the executable's path as the process's mount namespace sees it.
	Exe string
	// ExePath opens the executable from the host, whatever namespace the
	// process runs in: /proc/PID/exe.
	ExePath string
	// File identifies the executable's contents.
	File FileKey
}

// FileKey identifies an executable file: programs running the same file
// share one parsed copy of it.
type FileKey struct {
	Dev, Ino uint64
	Size     int64
	MtimeNs  int64
}

// procRoot is /proc; tests may point it elsewhere.
var procRoot = "/proc"

// readProcess reads what discovery needs about pid. An error means the
// process is gone or is a kernel thread.
func readProcess(pid int) (Process, error) {
	p := Process{PID: pid, ExePath: filepath.Join(procRoot, strconv.Itoa(pid), "exe")}
	ticks, err := startTicks(pid)
	if err != nil {
		return p, err
	}
	exe, err := os.Readlink(p.ExePath)
	if err != nil {
		p.StartTicks = ticks // alive: kernel threads have no executable
		return p, err
	}
	p.StartTicks = ticks
	p.Exe = strings.TrimSuffix(exe, " (deleted)")
	var st syscall.Stat_t
	if err := syscall.Stat(p.ExePath, &st); err != nil {
		return p, err
	}
	p.File = FileKey{Dev: uint64(st.Dev), Ino: st.Ino, Size: st.Size, MtimeNs: st.Mtim.Nano()}
	return p, nil
}

// Alive reports whether p still runs (the same process, not a new one
// that reuses its PID).
func Alive(p Process) bool {
	ticks, err := startTicks(p.PID)
	return err == nil && ticks == p.StartTicks
}

// startTicks reads field 22 of /proc/PID/stat.
func startTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	const startField = 22 - 3 // fields[0] is field 3
	if len(fields) <= startField {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	return strconv.ParseUint(fields[startField], 10, 64)
}

// Environ returns the named variables of the process's environment (which
// the process may have changed since, but rarely does for these).
func Environ(pid int, names ...string) map[string]string {
	out := map[string]string{}
	var buf []byte
	// Right after an exec the kernel may not have set up the new
	// environment yet and the file reads empty: look again briefly.
	for try := 0; try < 5; try++ {
		f, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "environ"))
		if err != nil {
			return out
		}
		buf, _ = io.ReadAll(io.LimitReader(f, 1<<20)) // environments beyond 1 MiB are cut
		f.Close()
		if len(buf) > 0 {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	for _, kv := range bytes.Split(buf, []byte{0}) {
		k, v, ok := bytes.Cut(kv, []byte{'='})
		if !ok {
			continue
		}
		for _, name := range names {
			if string(k) == name {
				out[name] = string(v)
			}
		}
	}
	return out
}

// listPIDs returns the PIDs in /proc.
func listPIDs() ([]int, error) {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		if pid, err := strconv.Atoi(n); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
