package discover

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/blindspot-dev/blindspot/symbols"
)

// copyFile copies src to dst.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// A file whose contents do not parse is read once: the failure is kept
// under its key (device, inode, size, mtime), as a success is.
func TestBinariesCacheFailures(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "damaged")
	// ELF magic, then nothing a parser can use.
	if err := os.WriteFile(path, append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 100)...), 0o755); err != nil {
		t.Fatal(err)
	}
	c := NewBinaries(nil)
	p := Process{PID: 1, Exe: path, ExePath: path, File: FileKey{Dev: 1, Ino: 2, Size: 107, MtimeNs: 3}}
	_, err := c.Acquire(p)
	if err == nil || errors.Is(err, symbols.ErrNotGo) {
		t.Fatalf("damaged file: err = %v, want a read error", err)
	}
	// The same key with readable contents behind the path: still the
	// failure, so the file was not read again.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, self, path)
	if _, err2 := c.Acquire(p); err2 == nil {
		t.Fatal("the failure was not kept: the file was read again")
	} else {
		t.Logf("again: %v", err2)
	}
	// Another key (the file changed): read again.
	p.File.MtimeNs++
	bin, err := c.Acquire(p)
	if err != nil {
		t.Fatalf("changed file: %v", err)
	}
	c.Release(p.File)
	if bin.GoVersion == "" {
		t.Error("no Go version")
	}
}

// A file that could not be opened (the process exited, descriptors ran
// out) is tried again next time.
func TestBinariesRetryOpenErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "later")
	c := NewBinaries(nil)
	p := Process{PID: 1, Exe: path, ExePath: path, File: FileKey{Dev: 1, Ino: 2, Size: 3, MtimeNs: 4}}
	if _, err := c.Acquire(p); err == nil {
		t.Fatal("missing file read")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, self, path)
	if _, err := c.Acquire(p); err != nil {
		t.Fatalf("open error was kept: %v", err)
	}
	c.Release(p.File)
}

// A second process of an executable gets the Binary the first one's read
// made, without the file being read again: whatever the path now holds,
// the same key is the same parsed executable until its last process is
// released and its time in the cache is up.
func TestBinariesSecondProcessReuses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, self, path)
	c := NewBinaries(nil)
	key := FileKey{Dev: 1, Ino: 2, Size: 3, MtimeNs: 4}
	first, err := c.Acquire(Process{PID: 10, Exe: path, ExePath: path, File: key})
	if err != nil {
		t.Fatal(err)
	}
	// Were it read again, this would fail.
	if err := os.WriteFile(path, []byte("not an executable"), 0o755); err != nil {
		t.Fatal(err)
	}
	second, err := c.Acquire(Process{PID: 11, Exe: path, ExePath: path, File: key})
	if err != nil || second != first {
		t.Fatalf("second process: %p, %v; want the first one's %p", second, err, first)
	}
	if c.Release(key) {
		t.Error("released while a process still runs it")
	}
	if !c.Release(key) {
		t.Error("not released after its last process")
	}
	// Started again soon: still the same, from the cache of recent ones.
	again, err := c.Acquire(Process{PID: 12, Exe: path, ExePath: path, File: key})
	if err != nil || again != first {
		t.Fatalf("started again: %p, %v; want %p", again, err, first)
	}
	c.Release(key)
	if c.Len() != 1 {
		t.Errorf("%d binaries held, want 1", c.Len())
	}
}
