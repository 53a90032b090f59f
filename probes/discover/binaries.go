package discover

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"time"

	"github.com/blindspot-dev/blindspot/symbols"
)

// Binaries keeps one parsed copy of each executable for as long as some
// process runs it, and remembers which files are not Go programs, or could
// not be read, so that they are not read again: a program whose binary is
// damaged costs one read, however often it starts.
type Binaries struct {
	mu     sync.Mutex
	open   map[FileKey]*entry
	notGo  map[FileKey]bool
	failed map[FileKey]error // why reading the file failed
	// recent holds binaries no process runs now, newest last: programs
	// that start again and again (build tools, cron jobs) are read once.
	recent []FileKey
	// closed is told of every binary closed for good.
	closed func(*symbols.Binary)
}

type entry struct {
	bin      *symbols.Binary
	refs     int
	released time.Time
}

// Recently released binaries stay parsed this long, this many at most.
const (
	recentTTL   = 2 * time.Minute
	recentLimit = 8
)

// notGoLimit bounds the memory of files known not to be Go programs, and
// failedLimit that of files that could not be read.
const (
	notGoLimit  = 8192
	failedLimit = 1024
)

// NewBinaries returns an empty cache. closed, if not nil, is called for
// every binary the cache closes, so that what was derived from it can go too.
func NewBinaries(closed func(*symbols.Binary)) *Binaries {
	return &Binaries{open: map[FileKey]*entry{}, notGo: map[FileKey]bool{}, failed: map[FileKey]error{}, closed: closed}
}

// Acquire returns the parsed executable of p, reading it on first use.
// The error wraps symbols.ErrNotGo for programs that are not Go. Each
// successful Acquire is paired with a Release.
func (c *Binaries) Acquire(p Process) (*symbols.Binary, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trim(time.Now())
	if e, ok := c.open[p.File]; ok {
		if e.refs == 0 {
			c.recent = slices.DeleteFunc(c.recent, func(k FileKey) bool { return k == p.File })
		}
		e.refs++
		return e.bin, nil
	}
	if c.notGo[p.File] {
		return nil, symbols.ErrNotGo
	}
	if err, ok := c.failed[p.File]; ok {
		return nil, fmt.Errorf("read executable %s: %w (cached: the file is unchanged)", p.Exe, err)
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
		// A file that could not be opened or read (the process exited,
		// descriptors ran out, an I/O error) may read next time; one
		// whose contents do not parse will not, while its key holds.
		var pathErr *fs.PathError
		if !errors.As(err, &pathErr) {
			if len(c.failed) >= failedLimit {
				c.failed = map[FileKey]error{}
			}
			c.failed[p.File] = err
		}
		// Not an ELF file we can read is no Go program either, but say why.
		return nil, fmt.Errorf("read executable %s: %w", p.Exe, err)
	}
	c.open[p.File] = &entry{bin: bin, refs: 1}
	return bin, nil
}

// Release drops one reference. After the last one the binary stays parsed
// for a while in case the program starts again. It reports whether no
// process runs the binary any more.
func (c *Binaries) Release(key FileKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.open[key]
	if !ok || e.refs == 0 {
		return false
	}
	e.refs--
	if e.refs > 0 {
		return false
	}
	e.released = time.Now()
	c.recent = append(c.recent, key)
	c.trim(e.released)
	return true
}

// Expire closes the recently released binaries whose time is up; call it
// now and then, so that an idle host does not keep them open.
func (c *Binaries) Expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trim(now)
}

// trim closes the recently released binaries past their time or count.
func (c *Binaries) trim(now time.Time) {
	for len(c.recent) > 0 {
		k := c.recent[0]
		e := c.open[k]
		if len(c.recent) <= recentLimit && now.Sub(e.released) < recentTTL {
			return
		}
		c.recent = c.recent[1:]
		delete(c.open, k)
		e.bin.Close()
		if c.closed != nil {
			c.closed(e.bin)
		}
	}
}

// Len returns how many executables are held parsed, in use or recent.
func (c *Binaries) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.open)
}
