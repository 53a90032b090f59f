package symbols

import (
	"debug/dwarf"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Source says where struct field offsets came from.
type Source int

const (
	// SourceDWARF means the offsets were read from DWARF debug info.
	SourceDWARF Source = iota + 1
	// SourceTypeData means the offsets were read from the runtime type
	// data Go keeps for reflection.
	SourceTypeData
	// SourceTable means the offsets came from the table generated per Go
	// release (offsets_table.go).
	SourceTable
	// SourceCode means the offsets were read from the machine code of the
	// runtime functions that use the fields (runtimecode.go).
	SourceCode
)

// String returns "dwarf", "type data" or "table".
func (s Source) String() string {
	switch s {
	case SourceDWARF:
		return "dwarf"
	case SourceTypeData:
		return "type data"
	case SourceTable:
		return "table"
	case SourceCode:
		return "runtime code"
	}
	return fmt.Sprintf("Source(%d)", int(s))
}

// StructFields returns the byte offsets of the named fields of a struct
// type, e.g. StructFields("net/http.response", "req", "status",
// "wroteHeader"). All requested fields must be found, else the error wraps
// ErrFieldNotFound and names the missing ones.
//
// Every source that can answer is asked: DWARF, the runtime type data (only
// a descriptor whose type name and package path are proven to be typeName
// counts) and the generated table (a row for the binary's own release, or,
// for a release between two rows, both neighbours when they agree). Where
// two answer, they must agree, else the error wraps ErrSourcesDisagree: an
// offset is never guessed. The source reported is the first that answered,
// in that order. If DWARF describes the struct but lacks a field, the field
// is missing.
func (b *Binary) StructFields(typeName string, fields ...string) (map[string]uint64, Source, error) {
	if len(fields) == 0 {
		return nil, 0, fmt.Errorf("struct %s: no fields requested", typeName)
	}
	type answer struct {
		src Source
		off map[string]uint64
	}
	var answers []answer
	var errs []error
	if b.HasDWARF {
		all, err := b.dwarfStructFields(typeName)
		switch {
		case err == nil:
			out, missing := pick(all, fields)
			if len(missing) > 0 {
				return nil, SourceDWARF, missingError(typeName, missing, "dwarf")
			}
			answers = append(answers, answer{SourceDWARF, out})
		case errors.Is(err, errNoStruct):
		default:
			errs = append(errs, fmt.Errorf("dwarf: %w", err))
		}
	}
	if out, err := b.typeDataStructFields(typeName, fields); err == nil {
		answers = append(answers, answer{SourceTypeData, out})
	} else {
		errs = append(errs, fmt.Errorf("type data: %w", err))
	}
	if out, err := b.tableStructFields(typeName, fields); err == nil {
		answers = append(answers, answer{SourceTable, out})
	} else {
		errs = append(errs, fmt.Errorf("table: %w", err))
	}
	if typeName == "runtime.mstats" {
		if out, err := b.codeStructFields(typeName, fields); err == nil {
			answers = append(answers, answer{SourceCode, out})
		} else {
			errs = append(errs, fmt.Errorf("runtime code: %w", err))
		}
	}
	if len(answers) == 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return nil, 0, fmt.Errorf("struct %s: %w (%s)", typeName, ErrFieldNotFound, strings.Join(msgs, "; "))
	}
	first := answers[0]
	for _, a := range answers[1:] {
		for _, f := range fields {
			if a.off[f] != first.off[f] {
				return nil, 0, fmt.Errorf("struct %s: %w: field %s at %d in %s but %d in %s",
					typeName, ErrSourcesDisagree, f, first.off[f], first.src, a.off[f], a.src)
			}
		}
	}
	return first.off, first.src, nil
}

var errNoStruct = errors.New("struct type not found")

func pick(all map[string]uint64, fields []string) (map[string]uint64, []string) {
	out := make(map[string]uint64, len(fields))
	var missing []string
	for _, f := range fields {
		if off, ok := all[f]; ok {
			out[f] = off
		} else {
			missing = append(missing, f)
		}
	}
	return out, missing
}

func missingError(typeName string, missing []string, where string) error {
	sort.Strings(missing)
	return &wrapError{
		msg: fmt.Sprintf("struct %s has no field %s in %s", typeName, strings.Join(missing, ", "), where),
		err: ErrFieldNotFound,
	}
}

// dwarfStructFields returns every member offset of the struct typeName as
// DWARF describes it, or errNoStruct.
func (b *Binary) dwarfStructFields(typeName string) (map[string]uint64, error) {
	b.cacheMu.Lock()
	cached, ok := b.dwarfStruct[typeName]
	b.cacheMu.Unlock()
	if ok {
		if cached == nil {
			return nil, errNoStruct
		}
		return cached, nil
	}
	d, err := b.dwarfData()
	if err != nil {
		return nil, err
	}
	fields, err := b.findDWARFStruct(d, typeName)
	if err != nil && !errors.Is(err, errNoStruct) {
		return nil, err
	}
	b.cacheMu.Lock()
	if b.dwarfStruct == nil {
		b.dwarfStruct = make(map[string]map[string]uint64)
	}
	b.dwarfStruct[typeName] = fields
	b.cacheMu.Unlock()
	return fields, err
}

// findDWARFStruct reads the members of the first struct type named
// typeName that has members, or returns errNoStruct.
func (b *Binary) findDWARFStruct(d *dwarf.Data, typeName string) (fields map[string]uint64, err error) {
	defer func() {
		if p := recover(); p != nil {
			fields, err = nil, fmt.Errorf("internal error: %v", p)
		}
	}()
	b.dwarfMu.Lock()
	raw := b.dwarfRaw
	b.dwarfMu.Unlock()
	b.dwarfIndexMu.Lock()
	if b.dwarfIndex == nil && b.dwarfIndexErr == nil {
		b.dwarfIndex, b.dwarfIndexErr = indexDWARFStructs(d, raw)
	}
	idx, err := b.dwarfIndex, b.dwarfIndexErr
	b.dwarfIndexMu.Unlock()
	if err != nil {
		return nil, err
	}
	off, ok := idx[typeName]
	if !ok {
		return nil, errNoStruct
	}
	r := d.Reader()
	r.Seek(off)
	if e, err := r.Next(); err != nil {
		return nil, err
	} else if e == nil || e.Tag != dwarf.TagStructType {
		return nil, errNoStruct
	}
	return DWARFMembers(r)
}

// indexDWARFStructs finds where the first struct type of each name that
// has members starts. The families ask a binary for some twenty struct
// types, several absent: each lookup was a scan of all of .debug_info,
// most of the time it took to attach to a new executable. units, when
// known, are the offsets of .debug_info's units: the Go linker writes
// every type into the unit of package runtime, so that unit alone is read
// (the others hold the functions, most of the entries), unless it does not
// hold runtime.g, which every Go program's does, and then all are. That
// unit is walked in place (walkRuntimeStructs) when the sections are
// known, with debug/dwarf when the walk refuses them.
func indexDWARFStructs(d *dwarf.Data, raw dwarfSections) (idx map[string]dwarf.Offset, err error) {
	defer func() {
		if p := recover(); p != nil {
			idx, err = nil, fmt.Errorf("internal error: %v", p)
		}
	}()
	if raw.info != nil {
		if idx, err := walkRuntimeStructs(raw.abbrev, raw.info, raw.str, raw.lineStr); err == nil {
			if _, ok := idx["runtime.g"]; ok {
				return idx, nil
			}
		}
	}
	if idx, ok := indexRuntimeUnit(d, raw.units); ok {
		return idx, nil
	}
	idx = make(map[string]dwarf.Offset)
	if err := indexStructs(d.Reader(), idx, false); err != nil {
		return nil, err
	}
	return idx, nil
}

// dwarfSections are the DWARF sections the struct index reads in place,
// and the offsets of the units' first entries.
type dwarfSections struct {
	abbrev, info, str, lineStr []byte
	units                      []dwarf.Offset
}

// indexRuntimeUnit indexes the struct types of the runtime's unit, and
// reports whether it holds runtime.g (if not, all units are to be read).
func indexRuntimeUnit(d *dwarf.Data, units []dwarf.Offset) (map[string]dwarf.Offset, bool) {
	idx := make(map[string]dwarf.Offset)
	r := d.Reader()
	for _, u := range units {
		r.Seek(u)
		cu, err := r.Next()
		if err != nil || cu == nil || cu.Tag != dwarf.TagCompileUnit {
			return nil, false
		}
		if name, _ := cu.Val(dwarf.AttrName).(string); name != "runtime" || !cu.Children {
			continue
		}
		if err := indexStructs(r, idx, true); err != nil {
			return nil, false
		}
	}
	_, ok := idx["runtime.g"]
	return idx, ok
}

// indexStructs adds the struct types r reads to idx, up to the end of the
// unit it is in (unit) or of the data.
func indexStructs(r *dwarf.Reader, idx map[string]dwarf.Offset, unit bool) error {
	for {
		e, err := r.Next()
		if err != nil {
			return err
		}
		if e == nil || unit && e.Tag == 0 {
			return nil
		}
		if e.Tag == dwarf.TagCompileUnit {
			continue
		}
		if e.Tag == dwarf.TagStructType && e.Children {
			if name, ok := e.Val(dwarf.AttrName).(string); ok {
				if _, seen := idx[name]; !seen {
					idx[name] = e.Offset
				}
			}
		}
		if e.Children {
			r.SkipChildren()
		}
	}
}

// dwarfUnits returns the offsets of the first entry (the compile unit's)
// of each unit of a .debug_info section, as far as their headers are well
// formed: where debug/dwarf's Reader.Seek goes to a unit. The header's own
// offset is not one: Seek refuses it ("offset out of range") for every
// unit but the first.
func dwarfUnits(info []byte) []dwarf.Offset {
	var out []dwarf.Offset
	for off := uint64(0); ; {
		u, ok := parseUnitHeader(info, off)
		if !ok {
			return out
		}
		out = append(out, dwarf.Offset(u.entries))
		off = u.end
	}
}

// DWARFMembers reads the members of the struct type whose entry r has just
// returned, up to the end of its children: name → byte offset.
func DWARFMembers(r *dwarf.Reader) (map[string]uint64, error) {
	fields := make(map[string]uint64)
	for {
		m, err := r.Next()
		if err != nil {
			return nil, err
		}
		if m == nil || m.Tag == 0 {
			return fields, nil
		}
		if m.Tag == dwarf.TagMember {
			name, _ := m.Val(dwarf.AttrName).(string)
			if off, ok := m.Val(dwarf.AttrDataMemberLoc).(int64); ok && name != "" && off >= 0 {
				fields[name] = uint64(off)
			}
		}
		if m.Children {
			r.SkipChildren()
		}
	}
}

// tableStructFields looks the fields up in the generated table: in the row
// of the binary's own Go release, or, for a release that has none but lies
// between two rows, in both neighbours if they agree on every field. A
// release newer than every row is not answered: its layout is unknown.
func (b *Binary) tableStructFields(typeName string, fields []string) (map[string]uint64, error) {
	major, minor, ok := b.Version()
	if !ok {
		return nil, fmt.Errorf("unknown go version %q", b.GoVersion)
	}
	var below, above *versionOffsets
	for i := range offsetTable {
		v := &offsetTable[i]
		if v.Major != major {
			continue
		}
		if v.Minor == minor {
			return tableRowFields(v, typeName, fields)
		}
		if v.Minor < minor && (below == nil || v.Minor > below.Minor) {
			below = v
		}
		if v.Minor > minor && (above == nil || v.Minor < above.Minor) {
			above = v
		}
	}
	if below == nil || above == nil {
		return nil, fmt.Errorf("no table for go%d.%d", major, minor)
	}
	lo, err := tableRowFields(below, typeName, fields)
	if err != nil {
		return nil, fmt.Errorf("no table for go%d.%d, and go%d.%d: %w", major, minor, below.Major, below.Minor, err)
	}
	hi, err := tableRowFields(above, typeName, fields)
	if err != nil {
		return nil, fmt.Errorf("no table for go%d.%d, and go%d.%d: %w", major, minor, above.Major, above.Minor, err)
	}
	for _, f := range fields {
		if lo[f] != hi[f] {
			return nil, fmt.Errorf("no table for go%d.%d, and %s.%s moved between go%d.%d (%d) and go%d.%d (%d)",
				major, minor, typeName, f, below.Major, below.Minor, lo[f], above.Major, above.Minor, hi[f])
		}
	}
	return lo, nil
}

func tableRowFields(v *versionOffsets, typeName string, fields []string) (map[string]uint64, error) {
	all, ok := v.Structs[typeName]
	if !ok {
		return nil, fmt.Errorf("struct %s not in table for go%d.%d", typeName, v.Major, v.Minor)
	}
	out, missing := pick(all, fields)
	if len(missing) > 0 {
		return nil, missingError(typeName, missing, fmt.Sprintf("table for go%d.%d", v.Major, v.Minor))
	}
	return out, nil
}

// versionOffsets holds the struct field offsets of one Go release.
type versionOffsets struct {
	Major, Minor int
	Structs      map[string]map[string]uint64
}

// StructSpec names a struct type and the fields of it whose offsets the
// offset table of Go releases (offsets_table.go) records. The table is
// generated by probes/internal/gentable from the specs each probe family
// declares.
type StructSpec struct {
	// Type is the full Go type name, e.g. "net/http.response".
	Type string
	// Fields are the field names to record. Fields a Go release lacks are
	// left out of that release's table entry.
	Fields []string
	// Internal types are never converted to an interface, so a stripped
	// binary keeps no type data for them: only DWARF or the table know them.
	Internal bool
}
