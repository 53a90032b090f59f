package symbols

import (
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

var (
	// ErrNotGo is returned for ELF files without Go build info.
	ErrNotGo = errors.New("not a Go executable")
	// ErrFuncNotFound is returned when a function is not in the executable.
	ErrFuncNotFound = errors.New("function not found")
	// ErrFieldNotFound is returned when struct fields cannot be located.
	ErrFieldNotFound = errors.New("struct field not found")
	// ErrSourcesDisagree is returned when two sources of struct field
	// offsets (DWARF, type data, table) give different answers.
	ErrSourcesDisagree = errors.New("offset sources disagree")
	// ErrUnsupportedArch is returned for executables that are neither
	// amd64 nor arm64.
	ErrUnsupportedArch = errors.New("unsupported architecture")
)

// maxSectionSize bounds every section read into memory, so corrupt headers
// cannot make the parser allocate without limit.
const maxSectionSize = 1 << 30

// Binary is one parsed Go executable. It is safe for concurrent use after
// Open or NewBinary returns.
type Binary struct {
	// Path is the path the executable was opened from (informational).
	Path string
	// GoVersion is the toolchain version from the build info, e.g.
	// "go1.26.8" or "go1.19.8".
	GoVersion string
	// Arch is the target architecture: "amd64" or "arm64".
	Arch string
	// PIE reports a position-independent executable (ELF type ET_DYN).
	PIE bool
	// HasSymtab reports whether the executable has a .symtab section, and
	// one that could be read (a damaged one is ignored: .gopclntab names
	// the functions too).
	HasSymtab bool
	// HasDWARF reports whether the executable has DWARF debug info.
	HasDWARF bool
	// MainModule is the main module path from the build info; it may be
	// empty (e.g. for binaries built from a file list).
	MainModule string
	// Deps are the versions of the modules linked in, by module path, from
	// the build info (a replacement's version where one replaced it).
	Deps map[string]string

	ef     *elf.File
	closer io.Closer
	loads  []*elf.Prog
	budget *atomic.Int64 // bytes sections may still claim (sectionData)
	size   int64         // of the file, -1 if unknown

	src       io.ReaderAt // what the executable is read from
	symtabErr error       // why a .symtab present in the file was not used
	hasPcln   bool        // the functions came from a usable .gopclntab

	table    atomic.Pointer[funcTable] // the function table (nil after ReleaseFuncs)
	tableMu  sync.Mutex                // serialises building it again, guards tableErr
	tableErr error                     // why it could not be built again
	lookupMu sync.Mutex                // guards lookups
	lookups  map[string]lookup         // LookupFunc's answers, by name

	dwarfMu  sync.Mutex // guards dwarf and dwarfErr (ReleaseDWARF drops dwarf)
	dwarf    *dwarf.Data
	dwarfErr error
	// dwarfRaw are the sections dwarf was made of and its units (empty
	// when unknown): the struct index reads the runtime's unit alone.
	dwarfRaw dwarfSections

	dwarfIndexMu  sync.Mutex              // guards dwarfIndex and dwarfIndexErr (ReleaseDWARF drops the index)
	dwarfIndex    map[string]dwarf.Offset // struct types with members, by name
	dwarfIndexErr error

	typeMu   sync.Mutex // guards types, typesErr and typeView (ReleaseTypeData drops types)
	types    *typeData
	typesErr error
	typeView *typeData // reads type names from the file once types is released

	relocMu        sync.Mutex        // guards the fields below (ReleaseTypeData drops relocs)
	relocs         map[uint64]uint64 // PIE pointer locations → link-time values
	relocErr       error
	relocCharged   uint64 // bytes of the read budget relocs took
	relocsReleased bool   // relocs are read when asked for, not kept

	pclnText  uint64          // what pclntab function entries are relative to
	asm       map[uint64]bool // entries of assembly functions
	module    moduleData      // runtime.firstmoduledata, when found
	moduleErr error           // why it was not

	mstatsOnce sync.Once
	mstatsCode map[string]uint64 // runtime.mstats fields read from the runtime's code
	mstatsErr  error

	cacheMu        sync.Mutex
	dwarfStruct    map[string]map[string]uint64    // DWARF struct lookups by type name
	typeLookup     map[string]typeDataAnswer       // type data struct lookups: the scan is costly and the data never changes
	sites          map[uint64]checkedSite          // CheckSite results by address
	globals        map[string]uint64               // .symtab addresses of globals asked for (0: absent)
	versionStrings map[string]versionStringsResult // ReadVersionStrings by prefix
}

// Open opens and parses the Go executable at path. Non-ELF files yield a
// plain error; ELF files without Go build info yield an error wrapping
// ErrNotGo; other architectures than amd64 and arm64 an error wrapping
// ErrUnsupportedArch. The caller must Close the Binary.
func Open(path string) (*Binary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open executable: %w", err)
	}
	b, err := NewBinary(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	b.closer = f
	return b, nil
}

// NewBinary parses a Go executable from r; path is only recorded. It never
// panics, whatever r holds. Close does not close r.
func NewBinary(r io.ReaderAt, path string) (b *Binary, err error) {
	defer func() {
		// The parsers of this package are bounds-checked; this guards
		// against panics in the standard library's ELF, DWARF and build
		// info readers on hostile input.
		if p := recover(); p != nil {
			b, err = nil, fmt.Errorf("parse executable: internal error: %v", p)
		}
	}()
	size := readerSize(r)
	if err := checkELF(r, size); err != nil {
		return nil, fmt.Errorf("parse elf: %w", err)
	}
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("parse elf: %w", err)
	}
	b = &Binary{Path: path, ef: ef, PIE: ef.Type == elf.ET_DYN, budget: newReadBudget(size), size: size, src: r}
	switch ef.Machine {
	case elf.EM_X86_64:
		b.Arch = "amd64"
	case elf.EM_AARCH64:
		b.Arch = "arm64"
	default:
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedArch, ef.Machine)
	}
	if ef.Class != elf.ELFCLASS64 || ef.ByteOrder.String() != "LittleEndian" {
		return nil, fmt.Errorf("%w: %v %v", ErrUnsupportedArch, ef.Class, ef.ByteOrder)
	}
	bi, err := buildinfo.Read(r)
	if err != nil {
		return nil, fmt.Errorf("read build info: %w: %w", ErrNotGo, err)
	}
	b.GoVersion = bi.GoVersion
	b.MainModule = bi.Main.Path
	b.Deps = make(map[string]string, len(bi.Deps))
	for _, d := range bi.Deps {
		if d.Replace != nil {
			b.Deps[d.Path] = d.Replace.Version
		} else {
			b.Deps[d.Path] = d.Version
		}
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			b.loads = append(b.loads, p)
		}
	}
	b.HasDWARF = ef.Section(".debug_info") != nil || ef.Section(".zdebug_info") != nil
	if err := b.loadFuncs(); err != nil {
		return nil, err
	}
	if _, ok := b.lookupName("runtime.main"); !ok {
		// A C program can carry a .go.buildinfo section (copied, or from
		// a Go library it links): without the Go runtime there is
		// nothing to observe.
		return nil, fmt.Errorf("%w: Go build info, but no Go runtime (runtime.main)", ErrNotGo)
	}
	return b, nil
}

// Close releases the file opened by Open. It is a no-op for a Binary made
// by NewBinary.
func (b *Binary) Close() error {
	if b.closer == nil {
		return nil
	}
	return b.closer.Close()
}

// Version returns the Go release as numbers, e.g. go1.26.8 → (1, 26).
// Development and unparsable versions yield ok=false.
func (b *Binary) Version() (major, minor int, ok bool) {
	return parseGoVersion(b.GoVersion)
}

func parseGoVersion(v string) (major, minor int, ok bool) {
	s, found := strings.CutPrefix(v, "go")
	if !found {
		return 0, 0, false
	}
	end := 0
	for end < len(s) && (s[end] >= '0' && s[end] <= '9' || s[end] == '.') {
		end++
	}
	parts := strings.Split(s[:end], ".")
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return major, minor, true
}

// FileOffset converts a virtual address to the file offset uprobes need,
// via the PT_LOAD segment holding it.
func (b *Binary) FileOffset(addr uint64) (uint64, error) {
	for _, p := range b.loads {
		if addr >= p.Vaddr && addr-p.Vaddr < p.Filesz {
			return addr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no loaded segment", addr)
}

// OffsetAddr converts a file offset inside a loaded segment back to its
// virtual address.
func (b *Binary) OffsetAddr(off uint64) (uint64, error) {
	for _, p := range b.loads {
		if off >= p.Off && off-p.Off < p.Filesz {
			return off - p.Off + p.Vaddr, nil
		}
	}
	return 0, fmt.Errorf("file offset %#x is in no loaded segment", off)
}

// readAt reads n bytes at virtual address addr from the segment holding it.
func (b *Binary) readAt(addr, n uint64) ([]byte, error) {
	if n > maxSectionSize {
		return nil, fmt.Errorf("range %#x+%d too large", addr, n)
	}
	for _, p := range b.loads {
		if addr >= p.Vaddr && addr-p.Vaddr < p.Filesz {
			if n > p.Filesz-(addr-p.Vaddr) {
				return nil, fmt.Errorf("range %#x+%d crosses a segment end", addr, n)
			}
			buf := make([]byte, n)
			if _, err := p.ReadAt(buf, int64(addr-p.Vaddr)); err != nil {
				return nil, err
			}
			return buf, nil
		}
	}
	return nil, fmt.Errorf("address %#x is in no loaded segment", addr)
}

func sortedUnique(names []string) []string {
	sort.Strings(names)
	out := names[:0]
	for i, n := range names {
		if i > 0 && n == names[i-1] {
			continue
		}
		out = append(out, n)
	}
	return out
}
