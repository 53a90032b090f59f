package symbols

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
)

// Func is one function of the executable.
type Func struct {
	// Name is the function's name as Go prints it, e.g.
	// "net/http.(*response).finishRequest".
	Name string
	// Entry is the virtual address of the first instruction.
	Entry uint64
	// End is the virtual address one past the last instruction: the next
	// function's entry in the pclntab function table (so it includes any
	// alignment padding), or entry plus symbol size for functions known
	// only to .symtab.
	End uint64
}

// loadFuncs builds the function table from .gopclntab and .symtab. Both are
// read when present; addresses from .symtab win, ends come from the
// pclntab so that stripped and unstripped builds report identical Funcs.
// Only the merged table stays: one record per name, sorted by entry, and
// an index of it sorted by name. Names are not kept: each record says
// where its name lies in the file, read again when asked for (an agent
// keeps a table per executable it observes, and the names were most of
// it); where the file cannot be read that way (a compressed section, a
// reader without offsets), one copy of the names is kept instead.
func (b *Binary) loadFuncs() error {
	symtab, symText, symErr := b.symtabFuncs()
	if symErr == nil {
		b.HasSymtab = true
	} else if !errors.Is(symErr, elf.ErrNoSymbols) {
		// A damaged .symtab is not needed: the pclntab names the
		// functions of stripped binaries too.
		b.symtabErr = fmt.Errorf("read symtab: %w", symErr)
		symtab = nil
	}
	pcln, pclnErr := b.pclnFuncs(symText)
	if pclnErr != nil {
		if errors.Is(pclnErr, errBudget) {
			return pclnErr
		}
		pcln = nil
	}
	if pcln == nil && symtab == nil {
		if b.symtabErr != nil {
			return fmt.Errorf("read pclntab: %w (and %w)", pclnErr, b.symtabErr)
		}
		return fmt.Errorf("read pclntab: %w", pclnErr)
	}
	b.hasPcln = pcln != nil
	t, err := b.buildFuncTable(pcln, symtab)
	if err != nil {
		return err
	}
	b.table.Store(t)
	return nil
}

// ReleaseFuncs lets the function table go (about 25 bytes a function: a
// quarter of a megabyte for a small server) once attaching is done: a
// later lookup builds it again from the file, identical, and keeps it
// until the next ReleaseFuncs. An agent observing many executables would
// otherwise keep every one's. It reports whether a table was let go.
func (b *Binary) ReleaseFuncs() bool {
	b.tableMu.Lock()
	defer b.tableMu.Unlock()
	return b.table.Swap(nil) != nil
}

// funcs returns the function table, built again from the file after
// ReleaseFuncs. Should that fail (the file became unreadable), the table
// is empty, which finds no function, and FuncsError says why.
func (b *Binary) funcs() *funcTable {
	if t := b.table.Load(); t != nil {
		return t
	}
	b.tableMu.Lock()
	defer b.tableMu.Unlock()
	if t := b.table.Load(); t != nil {
		return t
	}
	t, err := b.rebuildFuncs()
	if err != nil {
		b.tableErr = fmt.Errorf("read the function table again: %w", err)
		t = &funcTable{}
	}
	b.table.Store(t)
	return t
}

// FuncsError says why the function table could not be read again after
// ReleaseFuncs (nil if it could, or was not released).
func (b *Binary) FuncsError() error {
	b.tableMu.Lock()
	defer b.tableMu.Unlock()
	return b.tableErr
}

// rebuildFuncs reads the function table again as loadFuncs read it. The
// sections it reads go back to the read budget: they are garbage once the
// table is built.
func (b *Binary) rebuildFuncs() (t *funcTable, err error) {
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("internal error: %v", p)
		}
	}()
	var charged uint64
	defer func() { b.budget.Add(int64(charged)) }()
	var symtab map[string]symFunc
	if b.HasSymtab {
		sec := b.ef.SectionByType(elf.SHT_SYMTAB)
		if symtab, _, err = b.symtabFuncs(); err != nil {
			return nil, fmt.Errorf("read symtab: %w", err)
		}
		charged += sec.Size + b.ef.Sections[sec.Link].Size
	}
	var pcln map[string]pclnFunc
	if b.hasPcln {
		sec := b.pclnSection()
		data, err := b.sectionData(sec)
		if err != nil {
			return nil, fmt.Errorf("read pclntab: %w", err)
		}
		charged += sec.Size
		if pcln, _, err = pclnByName(data, b.pclnText); err != nil {
			return nil, fmt.Errorf("read pclntab: %w", err)
		}
	}
	return b.buildFuncTable(pcln, symtab)
}

// funcTable is the function table of a Binary: built once, never changed.
type funcTable struct {
	funcs    []funcRec   // sorted by entry, one per name
	byName   []int32     // indexes into funcs, sorted by name
	nameFile io.ReaderAt // where the names are read (nil: nameMem)
	nameMem  string      // the names, when they are not read from the file
}

// buildFuncTable merges the functions of the pclntab and of .symtab into
// a table.
func (b *Binary) buildFuncTable(pcln map[string]pclnFunc, symtab map[string]symFunc) (*funcTable, error) {
	// Where names lie in the file: the pclntab's name table and .symtab's
	// string table, when both are stored as they are read.
	nameFile := io.ReaderAt(nil)
	var bases [numNameTables]uint64
	if r, ok := b.src.(io.ReaderAt); ok && b.size <= math.MaxUint32 {
		nameFile = r
		if sec := b.pclnSection(); sec != nil && pcln != nil {
			if bases[namesPcln], ok = fileOffset(sec, b.size); !ok {
				nameFile = nil
			}
		}
		if sec := b.strtabSection(); sec != nil && symtab != nil {
			if bases[namesSymtab], ok = fileOffset(sec, b.size); !ok {
				nameFile = nil
			}
		}
	}

	type named struct {
		rec  funcRec
		name string
	}
	all := make([]named, 0, len(pcln)+len(symtab)/16)
	add := func(name string, entry, end uint64, table uint8, at uint64, abi0 bool) {
		if end < entry || end-entry > math.MaxUint32 {
			return // no function is that large: not one to probe or name
		}
		n := len(name)
		if abi0 {
			n -= len(".abi0")
		}
		all = append(all, named{rec: funcRec{entry: entry, size: uint32(end - entry), table: table, at: uint32(at), n: uint32(n), abi0: abi0}, name: name})
	}
	for name, f := range pcln {
		entry, end := f.Entry, f.End
		if s, ok := symtab[name]; ok && s.Entry != f.Entry {
			// Trust the symbol table's address; keep its own end (and
			// the pclntab's name).
			entry, end = s.Entry, s.End
		}
		add(name, entry, end, namesPcln, uint64(f.nameAt), f.abi0)
	}
	for name, s := range symtab {
		if _, ok := pcln[name]; !ok && s.End > s.Entry {
			add(name, s.Entry, s.End, namesSymtab, s.nameOff, false) // e.g. C functions in cgo binaries
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].rec.entry != all[j].rec.entry {
			return all[i].rec.entry < all[j].rec.entry
		}
		return all[i].name < all[j].name
	})
	t := &funcTable{byName: make([]int32, len(all)), nameFile: nameFile}
	for i := range t.byName {
		t.byName[i] = int32(i)
	}
	sort.Slice(t.byName, func(i, j int) bool { return all[t.byName[i]].name < all[t.byName[j]].name })

	t.funcs = make([]funcRec, len(all))
	var mem strings.Builder
	if nameFile == nil {
		size := 0
		for _, f := range all {
			size += len(f.name)
		}
		if size > math.MaxUint32 {
			return nil, errors.New("function names: more than 4 GiB")
		}
		mem.Grow(size)
	}
	for i, f := range all {
		r := f.rec
		if nameFile != nil {
			r.at += uint32(bases[r.table]) // within the file: less than 4 GiB
		} else {
			r.table, r.at, r.n, r.abi0 = namesMemory, uint32(mem.Len()), uint32(len(f.name)), false
			mem.WriteString(f.name)
		}
		t.funcs[i] = r
	}
	t.nameMem = mem.String()
	return t, nil
}

// Where the names of funcRecs are read.
const (
	namesMemory = iota // b.nameMem
	namesPcln          // the file, from the pclntab's name table
	namesSymtab        // the file, from .symtab's string table
	numNameTables
)

// funcRec is one function of the table: where it is, and where its name
// is (a few bytes less than a Func, and no name).
type funcRec struct {
	entry uint64
	size  uint32
	n     uint32 // the name's length (without the ".abi0" abi0 adds)
	at    uint32 // the name's offset in the file (or in b.nameMem)
	table uint8
	abi0  bool // ".abi0" follows the name (nameABI0)
}

// fileOffset returns the offset in the file of a section whose bytes are
// stored there as they are read.
func fileOffset(s *elf.Section, size int64) (uint64, bool) {
	if s.Type == elf.SHT_NOBITS || s.Flags&elf.SHF_COMPRESSED != 0 || s.FileSize != s.Size ||
		size < 0 || s.Offset > uint64(size) || s.Size > uint64(size)-s.Offset {
		return 0, false
	}
	return s.Offset, true
}

// funcAt returns the i-th function of t, its name read.
func (b *Binary) funcAt(t *funcTable, i int) (Func, bool) {
	r := &t.funcs[i]
	name, ok := b.funcName(t, r)
	return Func{Name: name, Entry: r.entry, End: r.entry + uint64(r.size)}, ok
}

// funcHolding returns the function holding the link-time address addr.
func (b *Binary) funcHolding(addr uint64) (Func, bool) {
	t := b.funcs()
	i := sort.Search(len(t.funcs), func(i int) bool { return t.funcs[i].entry > addr }) - 1
	if i < 0 || addr-t.funcs[i].entry >= uint64(t.funcs[i].size) {
		return Func{}, false
	}
	return b.funcAt(t, i)
}

// funcName reads the name of r. A name read from the file must still be
// the NUL-terminated string it was when the table was built: otherwise
// (the file changed under the agent) ok is false and the name unknown.
func (b *Binary) funcName(t *funcTable, r *funcRec) (string, bool) {
	if r.table == namesMemory {
		return t.nameMem[r.at : r.at+r.n], true
	}
	buf := make([]byte, r.n+1, int(r.n)+1+len(".abi0"))
	if _, err := t.nameFile.ReadAt(buf, int64(r.at)); err != nil || buf[r.n] != 0 || bytes.IndexByte(buf[:r.n], 0) >= 0 {
		return "", false
	}
	buf = buf[:r.n]
	if r.abi0 {
		buf = append(buf, ".abi0"...)
	}
	return string(buf), true
}

// nameOf returns the name of the i-th function of t in name order (""
// when it cannot be read).
func (b *Binary) nameOf(t *funcTable, i int) string {
	name, _ := b.funcName(t, &t.funcs[t.byName[i]])
	return name
}

// pclnSection returns the executable's .gopclntab (nil if none).
func (b *Binary) pclnSection() *elf.Section {
	if sec := b.ef.Section(".gopclntab"); sec != nil {
		return sec
	}
	return b.ef.Section(".data.rel.ro.gopclntab")
}

// symFunc is a function of .symtab and where its name is in the string
// table.
type symFunc struct {
	Func
	nameOff uint64
}

// symtabFuncs reads the functions of .symtab, by name (names are
// substrings of the string table), and runtime.text (0 if absent). The
// error wraps elf.ErrNoSymbols when there is no .symtab.
func (b *Binary) symtabFuncs() (map[string]symFunc, uint64, error) {
	syms, err := b.symbols()
	if err != nil {
		return nil, 0, err
	}
	var symText uint64
	funcs := make(map[string]symFunc)
	for _, s := range syms {
		if s.Name == "runtime.text" && s.Value != 0 {
			symText = s.Value
		}
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 || s.Name == "" {
			continue
		}
		// A few names occur twice (an assembly function and its ABI
		// wrapper); like the pclntab lookup, keep the lowest address.
		if prev, dup := funcs[s.Name]; dup && prev.Entry <= s.Value {
			continue
		}
		funcs[s.Name] = symFunc{Func{Name: s.Name, Entry: s.Value, End: s.Value + s.Size}, s.NameOff}
	}
	return funcs, symText, nil
}

// pclnFuncs reads the functions of .gopclntab, by name, and with them the
// module descriptor, the text base and the assembly functions (b.module,
// b.pclnText, b.asm). symText is runtime.text from .symtab (0 if unknown).
func (b *Binary) pclnFuncs(symText uint64) (map[string]pclnFunc, error) {
	sec := b.pclnSection()
	if sec == nil {
		b.moduleErr = errNoModuleData
		return nil, errors.New("no .gopclntab section")
	}
	data, err := b.sectionData(sec)
	if err != nil {
		b.moduleErr = errNoModuleData
		return nil, err
	}
	b.module, b.moduleErr = b.findModuleData(sec.Addr, pclnFuncnameOffset(data))
	if errors.Is(b.moduleErr, errBudget) {
		return nil, b.moduleErr
	}
	b.pclnText = pclnHeaderText(data)
	if b.pclnText == 0 {
		b.pclnText = b.textStart(symText)
	}
	out, asm, err := pclnByName(data, b.pclnText)
	if err != nil {
		return nil, err
	}
	b.asm = asm
	return out, nil
}

// pclnByName parses the pclntab data, whose function entries are relative
// to text: its functions by name, and the entries of the assembly ones.
func pclnByName(data []byte, text uint64) (map[string]pclnFunc, map[uint64]bool, error) {
	funcs, err := parsePclntab(data, text)
	if err != nil {
		return nil, nil, err
	}
	nameABI0(funcs)
	out := make(map[string]pclnFunc, len(funcs))
	asm := make(map[uint64]bool)
	for _, f := range funcs {
		if f.asm {
			asm[f.Entry] = true
		}
		if _, dup := out[f.Name]; !dup {
			out[f.Name] = f
		}
	}
	return out, asm, nil
}

// lookupName returns the function named name.
func (b *Binary) lookupName(name string) (Func, bool) {
	t := b.funcs()
	i := sort.Search(len(t.byName), func(i int) bool { return b.nameOf(t, i) >= name })
	if i < len(t.byName) && b.nameOf(t, i) == name {
		return b.funcAt(t, int(t.byName[i]))
	}
	return Func{}, false
}

// textStart returns the address function entries in the pclntab are
// relative to (Go 1.20 and later store 0 in the header for it): runtime.text
// from .symtab, else from the module descriptor. With external linking it
// is not the start of .text, so no section address is taken for it.
func (b *Binary) textStart(symText uint64) uint64 {
	switch {
	case symText != 0:
		return symText
	case b.moduleErr == nil:
		return b.module.text
	}
	return 0 // only a Go 1.18/1.19 header, which holds it, will do
}

// nameABI0 names the ABI0 half of duplicated pclntab names. The pclntab
// names a function and the ABI wrapper the toolchain generates for it
// alike: an assembly function (ABI0) gets an ABIInternal wrapper, a Go
// function called from assembly gets an ABI0 wrapper. .symtab calls the
// ABI0 one name+".abi0"; the same names are given here so that stripped
// and unstripped builds agree. The ABI0 one is the assembly function if
// either is, else the wrapper (the one with a non-zero funcID).
func nameABI0(funcs []pclnFunc) {
	idx := make(map[string][]int)
	for i, f := range funcs {
		idx[f.Name] = append(idx[f.Name], i)
	}
	for name, is := range idx {
		if len(is) != 2 {
			continue
		}
		if _, taken := idx[name+".abi0"]; taken {
			continue
		}
		a, b := &funcs[is[0]], &funcs[is[1]]
		switch {
		case a.asm != b.asm:
			if b.asm {
				a, b = b, a
			}
		case (a.funcID != 0) != (b.funcID != 0):
			if b.funcID != 0 {
				a, b = b, a
			}
		default:
			continue
		}
		a.Name, a.abi0 = name+".abi0", true
	}
}

// LookupFunc finds a function by its full Go name. If it is not found, the
// error wraps ErrFuncNotFound and suggests up to 3 close names.
func (b *Binary) LookupFunc(name string) (Func, error) {
	// Every process of an executable asks for the same few names (each
	// family's functions, the runtime's): the answers are kept, so that
	// they need no function table once it is let go.
	b.lookupMu.Lock()
	f, ok := b.lookups[name]
	b.lookupMu.Unlock()
	if !ok {
		f.Func, f.found = b.lookupName(name)
		b.lookupMu.Lock()
		if b.lookups == nil {
			b.lookups = map[string]lookup{}
		}
		if len(b.lookups) < maxLookups {
			b.lookups[name] = f
		}
		b.lookupMu.Unlock()
	}
	if f.found {
		return f.Func, nil
	}
	// The suggestions are worked out when the message is read: most
	// lookups that fail (a family's anchor, an optional probe) only ask
	// whether the function is there, and comparing a name with every
	// other one costs tens of milliseconds in a large program.
	return Func{}, &notFoundError{name: name, b: b}
}

// lookup is a LookupFunc answer kept.
type lookup struct {
	Func
	found bool
}

// maxLookups bounds the LookupFunc answers a Binary keeps.
const maxLookups = 1024

// notFoundError says that a function is absent, with up to 3 close names
// when there are any. It wraps ErrFuncNotFound.
type notFoundError struct {
	name string
	b    *Binary
	once sync.Once
	msg  string
}

func (e *notFoundError) Error() string {
	e.once.Do(func() {
		b, t := e.b, e.b.funcs()
		if s := suggestFrom(e.name, len(t.byName), func(i int) string { return b.nameOf(t, i) }, 3); len(s) > 0 {
			e.msg = fmt.Sprintf("function %q not found; did you mean %s?", e.name, joinOr(s))
		} else {
			e.msg = fmt.Sprintf("function %q not found", e.name)
		}
		e.b = nil
	})
	return e.msg
}

func (e *notFoundError) Unwrap() error { return ErrFuncNotFound }

// wrapError carries its own message and wraps a sentinel error.
type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg }
func (e *wrapError) Unwrap() error { return e.err }

// FuncNames returns every function name, sorted.
func (b *Binary) FuncNames() []string {
	t := b.funcs()
	out := make([]string, len(t.byName))
	for i := range t.byName {
		out[i] = b.nameOf(t, i)
	}
	return out
}

func joinOr(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// suggest returns up to n names closest to name by edit distance, among
// those close enough to be plausible typos.
func suggest(name string, names []string, n int) []string {
	return suggestFrom(name, len(names), func(i int) string { return names[i] }, n)
}

// suggestFrom is suggest over count names, the i-th given by at.
func suggestFrom(name string, count int, at func(int) string, n int) []string {
	maxDist := len(name)/3 + 1
	if maxDist > 6 {
		maxDist = 6
	}
	type cand struct {
		name string
		d    int
	}
	var cands []cand
	for i := 0; i < count; i++ {
		c := at(i)
		if diff := len(c) - len(name); diff > maxDist || -diff > maxDist {
			continue
		}
		if d := editDistance(name, c, maxDist); d <= maxDist {
			cands = append(cands, cand{c, d})
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].d != cands[j].d {
			return cands[i].d < cands[j].d
		}
		return cands[i].name < cands[j].name
	})
	var out []string
	for i := 0; i < len(cands) && i < n; i++ {
		out = append(out, cands[i].name)
	}
	return out
}

// editDistance is the Levenshtein distance of a and b, stopping early
// (returning limit+1) once it must exceed limit.
func editDistance(a, b string, limit int) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin > limit {
			return limit + 1
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
