package symbols

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Runtime type data layout, identical on 64-bit targets for Go 1.19
// through 1.27:
//
//	abi.Type       48 bytes: Size_ 0, TFlag 20, Kind_ 23, Str (nameOff) 40
//	abi.StructType Type; PkgPath Name (8 bytes); Fields []StructField
//	UncommonType   16 bytes, between StructType and the field array when
//	               the type is named or has methods; its first word is
//	               the nameOff of the package path of a named type
//	StructField    24 bytes: Name *byte, Typ *Type, Offset uintptr
//
// An encoded name is one flags byte (bit0 exported, bit1 has tag, bit2 has
// pkgPath, bit3 embedded), a uvarint length and the bytes.
const (
	rtypeSize       = 48
	rtypeTFlag      = 20
	rtypeKind       = 23
	rtypeStr        = 40
	structFieldsHdr = rtypeSize + 8 // offset of the Fields slice header
	structUncommon  = rtypeSize + 32
	fieldSize       = 24
	uncommonSize    = 16
	kindStruct      = 25
	tflagUncommon   = 1 << 0
	tflagExtraStar  = 1 << 1
	maxFields       = 4096
)

// Dynamic relocation types whose addend is the pointer's link-time value.
const (
	rX86_64Relative  = 8
	rAArch64Relative = 1027
)

// region is one read-only data section in memory.
type region struct {
	addr uint64
	size uint64
	data []byte // nil in a typeData that reads the file (names)
}

// typeData is the read-only data of an executable, loaded once, in which
// the runtime type descriptors live.
type typeData struct {
	regions   []region          // sorted by address
	relocs    map[uint64]uint64 // pointer location → link-time value (PIE)
	typesBase uint64            // base of type nameOffs (runtime.types)
	charged   uint64            // bytes of the read budget the regions took
	// file, when set, is read for each access instead of regions' data:
	// the view ReleaseTypeData leaves for reading single type names.
	file *Binary
}

type typeDataAnswer struct {
	offsets map[string]uint64
	err     error
}

func (b *Binary) loadTypeData() (*typeData, error) {
	b.typeMu.Lock()
	defer b.typeMu.Unlock()
	if b.types != nil || b.typesErr != nil {
		return b.types, b.typesErr
	}
	func() {
		defer func() {
			if p := recover(); p != nil {
				b.types, b.typesErr = nil, fmt.Errorf("internal error: %v", p)
			}
		}()
		b.types, b.typesErr = b.readTypeData()
	}()
	return b.types, b.typesErr
}

// ReleaseTypeData lets the copies of the read-only data sections that
// struct lookups scan go (about a megabyte for a small server), and a PIE's
// relocations (half a megabyte more), once what
// was needed from them has been read: lookups made already stay cached,
// and a later one reads the sections again. An agent observing many
// executables would otherwise keep every one's.
func (b *Binary) ReleaseTypeData() {
	b.releaseRelocations()
	b.typeMu.Lock()
	defer b.typeMu.Unlock()
	if b.types != nil {
		// The bytes go back to the read budget: it bounds what a binary
		// holds read at once, and they may be read again.
		b.budget.Add(int64(b.types.charged))
		// Type names (TypeName, asked as error events come) are then
		// read from the file, a few bytes each, within the same sections.
		view := &typeData{typesBase: b.types.typesBase, file: b}
		for _, r := range b.types.regions {
			view.regions = append(view.regions, region{addr: r.addr, size: r.size})
		}
		b.typeView = view
		b.types = nil
	}
}

// typeNames returns the type data to read single names from: the sections
// when held, else what ReleaseTypeData left.
func (b *Binary) typeNames() (*typeData, error) {
	b.typeMu.Lock()
	view := b.typeView
	b.typeMu.Unlock()
	if view != nil {
		return view, nil
	}
	return b.loadTypeData()
}

func (b *Binary) readTypeData() (*typeData, error) {
	// Names are offsets from runtime.types, which is not the start of any
	// section when an external linker put C data first: take it from the
	// symbol table or the module descriptor, and if both exist they must
	// agree. Without it no type's name can be proven.
	var symTypes uint64
	if b.HasSymtab {
		if syms, err := b.symbols(); err == nil {
			for _, s := range syms {
				if s.Name == "runtime.types" && s.Value != 0 {
					symTypes = s.Value
				}
			}
		}
	}
	td := &typeData{}
	switch {
	case symTypes != 0 && b.moduleErr == nil && symTypes != b.module.types:
		return nil, fmt.Errorf("runtime.types is %#x in .symtab but %#x in the module descriptor", symTypes, b.module.types)
	case symTypes != 0:
		td.typesBase = symTypes
	case b.moduleErr == nil:
		td.typesBase = b.module.types
	default:
		return nil, fmt.Errorf("cannot resolve type names: %w", b.moduleErr)
	}
	relocs, err := b.relocations()
	if err != nil {
		return nil, err
	}
	td.relocs = relocs
	for _, s := range b.ef.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_ALLOC == 0 || s.Flags&elf.SHF_EXECINSTR != 0 {
			continue
		}
		switch {
		case s.Name == ".rodata", s.Name == ".data.rel.ro":
		case strings.HasPrefix(s.Name, ".rodata"), strings.HasPrefix(s.Name, ".go.type"):
		default:
			continue
		}
		data, err := b.sectionData(s)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.Name, err)
		}
		td.regions = append(td.regions, region{addr: s.Addr, size: uint64(len(data)), data: data})
		td.charged += s.Size
	}
	if len(td.regions) == 0 {
		return nil, errors.New("no read-only data sections")
	}
	sort.Slice(td.regions, func(i, j int) bool { return td.regions[i].addr < td.regions[j].addr })
	return td, nil
}

// mem returns n bytes at addr, or nil.
func (td *typeData) mem(addr, n uint64) []byte {
	i := sort.Search(len(td.regions), func(i int) bool { return td.regions[i].addr > addr }) - 1
	if i < 0 {
		return nil
	}
	r := td.regions[i]
	off := addr - r.addr
	if off >= r.size || r.size-off < n {
		return nil
	}
	if td.file != nil {
		b, err := td.file.readAt(addr, n)
		if err != nil {
			return nil
		}
		return b
	}
	return r.data[off : off+n]
}

// word reads a plain 8-byte value.
func (td *typeData) word(addr uint64) (uint64, bool) {
	m := td.mem(addr, 8)
	if m == nil {
		return 0, false
	}
	return binary.LittleEndian.Uint64(m), true
}

// ptr reads a pointer, from its relocation when there is one.
func (td *typeData) ptr(addr uint64) (uint64, bool) {
	if v, ok := td.relocs[addr]; ok {
		return v, true
	}
	return td.word(addr)
}

// decodeName decodes the encoded name at addr. ident requires a Go
// identifier; otherwise type-string characters are allowed.
func (td *typeData) decodeName(addr uint64, ident bool) (string, bool) {
	hdr := td.mem(addr, 1)
	if hdr == nil || hdr[0]&0xf0 != 0 {
		return "", false
	}
	var lenBuf []byte
	for n := uint64(1); n <= 3; n++ {
		m := td.mem(addr+1, n)
		if m == nil {
			break
		}
		lenBuf = m
	}
	l, n := binary.Uvarint(lenBuf)
	if n <= 0 || l == 0 || l > 1024 {
		return "", false
	}
	s := td.mem(addr+1+uint64(n), l)
	if s == nil || !utf8.Valid(s) {
		return "", false
	}
	for i, r := range string(s) {
		switch {
		case r == '_' || unicode.IsLetter(r):
		case unicode.IsDigit(r) && (i > 0 || !ident):
		case !ident && r > ' ' && r < 0x7f:
		default:
			return "", false
		}
	}
	return string(s), true
}

// fieldEntry is one decoded StructField.
type fieldEntry struct {
	name   string
	offset uint64
}

func (td *typeData) entry(addr uint64) (fieldEntry, bool) {
	np, ok1 := td.ptr(addr)
	tp, ok2 := td.ptr(addr + 8)
	off, ok3 := td.word(addr + 16)
	if !ok1 || !ok2 || !ok3 || off >= 1<<40 || td.mem(tp, rtypeSize) == nil {
		return fieldEntry{}, false
	}
	name, ok := td.decodeName(np, true)
	if !ok {
		return fieldEntry{}, false
	}
	return fieldEntry{name: name, offset: off}, true
}

// fieldArray is one recovered []StructField.
type fieldArray struct {
	start   uint64
	entries []fieldEntry
	id      typeIdentity // the struct type's own, zero if not found
}

// typeIdentity is what a type descriptor says of its own name.
type typeIdentity struct {
	str     string // the type string, e.g. "http.response"
	pkgPath string // the package path of a named type, e.g. "net/http"
}

// arrayAt recovers the field array holding the StructField at loc.
func (td *typeData) arrayAt(loc uint64) (fieldArray, bool) {
	first, ok := td.entry(loc)
	if !ok {
		return fieldArray{}, false
	}
	start, end := loc, loc+fieldSize
	for prev := first; start >= fieldSize && (end-start)/fieldSize < maxFields; {
		e, ok := td.entry(start - fieldSize)
		if !ok || e.offset > prev.offset {
			break
		}
		start, prev = start-fieldSize, e
	}
	for last := first; (end-start)/fieldSize < maxFields; {
		e, ok := td.entry(end)
		if !ok || e.offset < last.offset {
			break
		}
		end, last = end+fieldSize, e
	}
	// The run may span more than one array; the StructType's slice header
	// pins the real one down.
	arr := fieldArray{start: start}
	arrEnd := end
	for cand := loc; cand >= start; cand -= fieldSize {
		if hdr, n, ok := td.sliceHeader(cand); ok && cand+n*fieldSize <= end && loc < cand+n*fieldSize {
			arr.start, arrEnd = cand, cand+n*fieldSize
			arr.id = td.structIdentity(hdr - structFieldsHdr)
			break
		}
		if cand < fieldSize {
			break
		}
	}
	for a := arr.start; a < arrEnd; a += fieldSize {
		e, _ := td.entry(a)
		arr.entries = append(arr.entries, e)
	}
	return arr, true
}

// sliceHeader looks for the StructType.Fields header of an array at start:
// right before it, or before the 16-byte UncommonType.
func (td *typeData) sliceHeader(start uint64) (hdr, n uint64, ok bool) {
	for _, gap := range []uint64{3 * 8, 3*8 + uncommonSize} {
		if start < gap {
			continue
		}
		h := start - gap
		p, ok1 := td.ptr(h)
		l, ok2 := td.word(h + 8)
		c, ok3 := td.word(h + 16)
		if ok1 && ok2 && ok3 && p == start && l == c && l > 0 && l <= maxFields {
			return h, l, true
		}
	}
	return 0, 0, false
}

// structIdentity returns the type string and package path of the named
// struct type at rtype, or a zero identity if it is not one.
func (td *typeData) structIdentity(rtype uint64) typeIdentity {
	t := td.mem(rtype, structUncommon+uncommonSize)
	if t == nil || t[rtypeKind]&0x1f != kindStruct || t[rtypeTFlag]&tflagUncommon == 0 {
		return typeIdentity{}
	}
	str := int64(int32(binary.LittleEndian.Uint32(t[rtypeStr:])))
	name, ok := td.decodeName(td.typesBase+uint64(str), false)
	if !ok {
		return typeIdentity{}
	}
	if t[rtypeTFlag]&tflagExtraStar != 0 {
		name = strings.TrimPrefix(name, "*")
	}
	pkg := int64(int32(binary.LittleEndian.Uint32(t[structUncommon:])))
	pkgPath, ok := td.decodeName(td.typesBase+uint64(pkg), false)
	if !ok || pkg == 0 {
		return typeIdentity{}
	}
	return typeIdentity{str: name, pkgPath: pkgPath}
}

// proves reports whether id is the identity of the Go type typeName, e.g.
// "net/http.response": the package path must be the same, and the type
// string the package's name (an identifier) and the same type name.
func (id typeIdentity) proves(typeName string) bool {
	slash := strings.LastIndex(typeName, "/")
	dot := strings.LastIndex(typeName[slash+1:], ".")
	if dot < 0 || id.pkgPath == "" {
		return false
	}
	pkgPath, short := typeName[:slash+1+dot], typeName[slash+1+dot+1:]
	pkgName, got, ok := strings.Cut(id.str, ".")
	if !ok || got != short || id.pkgPath != pkgPath || pkgName == "" {
		return false
	}
	for i, r := range pkgName {
		if !(r == '_' || unicode.IsLetter(r) || i > 0 && unicode.IsDigit(r)) {
			return false
		}
	}
	return true
}

// findNames returns the addresses of encoded names equal to field.
func (td *typeData) findNames(field string) []uint64 {
	pat := binary.AppendUvarint(nil, uint64(len(field)))
	pat = append(pat, field...)
	var out []uint64
	for _, r := range td.regions {
		for from := 1; from < len(r.data); {
			i := bytes.Index(r.data[from:], pat)
			if i < 0 {
				break
			}
			at := from + i
			if r.data[at-1]&0xf0 == 0 {
				out = append(out, r.addr+uint64(at-1))
			}
			from = at + 1
		}
	}
	return out
}

// pointersTo returns, for each target address, the locations of pointers
// to it: aligned words in the data, and relocations.
func (td *typeData) pointersTo(targets map[uint64]bool) map[uint64][]uint64 {
	out := make(map[uint64][]uint64)
	seen := make(map[uint64]bool)
	for loc, v := range td.relocs {
		if targets[v] {
			out[v] = append(out[v], loc)
			seen[loc] = true
		}
	}
	for _, r := range td.regions {
		skip := (8 - r.addr%8) % 8
		for i := skip; i+8 <= uint64(len(r.data)); i += 8 {
			v := binary.LittleEndian.Uint64(r.data[i:])
			if targets[v] && !seen[r.addr+i] {
				out[v] = append(out[v], r.addr+i)
			}
		}
	}
	return out
}

// typeDataStructFields recovers the field offsets of typeName from the
// runtime type data.
func (b *Binary) typeDataStructFields(typeName string, fields []string) (map[string]uint64, error) {
	key := typeName + "\x00" + strings.Join(fields, "\x00")
	b.cacheMu.Lock()
	a, ok := b.typeLookup[key]
	b.cacheMu.Unlock()
	if !ok {
		td, err := b.loadTypeData()
		if err != nil {
			return nil, err
		}
		a.offsets, a.err = td.structFields(typeName, fields)
		b.cacheMu.Lock()
		if b.typeLookup == nil {
			b.typeLookup = map[string]typeDataAnswer{}
		}
		b.typeLookup[key] = a
		b.cacheMu.Unlock()
	}
	if a.err != nil {
		return nil, a.err
	}
	out := make(map[string]uint64, len(a.offsets))
	for f, off := range a.offsets {
		out[f] = off
	}
	return out, nil
}

func (td *typeData) structFields(typeName string, fields []string) (map[string]uint64, error) {
	// Field names are shared between structs: find the names, then the
	// StructFields pointing at them, then the arrays around those.
	targets := make(map[uint64]bool)
	nameOf := make(map[uint64]string)
	for _, f := range fields {
		for _, a := range td.findNames(f) {
			targets[a] = true
			nameOf[a] = f
		}
	}
	locsByName := make(map[string][]uint64)
	for target, locs := range td.pointersTo(targets) {
		locsByName[nameOf[target]] = append(locsByName[nameOf[target]], locs...)
	}
	var missing []string
	rarest := ""
	for _, f := range fields {
		if len(locsByName[f]) == 0 {
			missing = append(missing, f)
		} else if rarest == "" || len(locsByName[f]) < len(locsByName[rarest]) {
			rarest = f
		}
	}
	if len(missing) > 0 {
		return nil, missingError(typeName, missing, "type data")
	}
	locs := locsByName[rarest]
	sort.Slice(locs, func(i, j int) bool { return locs[i] < locs[j] })

	type result struct {
		offsets map[string]uint64
		start   uint64
	}
	var proven []result
	var others []string // identities of structs that hold the fields but are not typeName
	done := make(map[uint64]bool)
	for _, loc := range locs {
		arr, ok := td.arrayAt(loc)
		if !ok || done[arr.start] {
			continue
		}
		done[arr.start] = true
		all := make(map[string]uint64, len(arr.entries))
		for _, e := range arr.entries {
			if _, dup := all[e.name]; !dup {
				all[e.name] = e.offset
			}
		}
		got, miss := pick(all, fields)
		if len(miss) > 0 {
			continue
		}
		if !arr.id.proves(typeName) {
			// Same field names, another (or an unnamed) struct: never used.
			if len(others) < 4 {
				others = append(others, fmt.Sprintf("%q of %q", arr.id.str, arr.id.pkgPath))
			}
			continue
		}
		proven = append(proven, result{offsets: got, start: arr.start})
	}
	if len(proven) == 0 {
		err := missingError(typeName, append([]string(nil), fields...), "type data")
		if len(others) > 0 {
			return nil, fmt.Errorf("%w (structs with these fields are not %s: %s)", err, typeName, strings.Join(others, ", "))
		}
		return nil, err
	}
	cands := proven
	for _, c := range cands[1:] {
		for f, off := range c.offsets {
			if cands[0].offsets[f] != off {
				return nil, fmt.Errorf("ambiguous: %d structs named %s hold fields %s at different offsets",
					len(cands), typeName, strings.Join(fields, ", "))
			}
		}
	}
	return cands[0].offsets, nil
}
