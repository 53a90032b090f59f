package discover

import (
	"errors"
	"fmt"
	"sync"

	"github.com/blindspot-dev/blindspot/symbols"
)

// Binaries keeps one parsed copy of each executable for as long as some
// process runs it, and remembers which files are not Go programs so that
// they are not read again.
type Binaries struct {
	mu    sync.Mutex
	open  map[FileKey]*entry
	notGo map[FileKey]bool
}

type entry struct {
	bin  *symbols.Binary
	refs int
}

// notGoLimit bounds the memory of files known not to be Go programs.
const notGoLimit = 8192

// NewBinaries returns an empty cache.
func NewBinaries() *Binaries {
	return &Binaries{open: map[FileKey]*entry{}, notGo: map[FileKey]bool{}}
}

// Acquire returns the parsed executable of p, reading it on first use.
// The error wraps symbols.ErrNotGo for programs that are not Go. Each
// successful Acquire is paired with a Release.
func (c *Binaries) Acquire(p Process) (*symbols.Binary, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.open[p.File]; ok {
		e.refs++
		return e.bin, nil
	}
	if c.notGo[p.File] {
		return nil, symbols.ErrNotGo
	}
	bin, err := symbols.Open(p.ExePath)
	if err != nil {
		if errors.Is(err, symbols.ErrNotGo) {
			if len(c.notGo) >= notGoLimit {
				c.notGo = map[FileKey]bool{}
			}
			c.notGo[p.File] = true
			return nil, err
		}
		// Not an ELF file we can read is no Go program either, but say why.
		return nil, fmt.Errorf("read executable %s: %w", p.Exe, err)
	}
	c.open[p.File] = &entry{bin: bin, refs: 1}
	return bin, nil
}

// Release drops one reference; the last one closes the file. It reports
// whether the binary was closed.
func (c *Binaries) Release(key FileKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.open[key]
	if !ok {
		return false
	}
	e.refs--
	if e.refs > 0 {
		return false
	}
	delete(c.open, key)
	e.bin.Close()
	return true
}

// Len returns how many executables are held open.
func (c *Binaries) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.open)
}
