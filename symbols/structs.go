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
	}
	return fmt.Sprintf("Source(%d)", int(s))
}

// StructFields returns the byte offsets of the named fields of a struct
// type, e.g. StructFields("net/http.response", "req", "status",
// "wroteHeader"). All requested fields must be found, else the error wraps
// ErrFieldNotFound and names the missing ones.
//
// Sources are tried in order: DWARF, runtime type data, the generated
// table. If DWARF describes the struct, it is authoritative: fields missing
// there are reported missing rather than looked up elsewhere. Type data is
// found by field names; if several distinct structs hold all requested
// fields at different offsets the result is ambiguous and an error: add
// sibling field names to the request to tell them apart.
func (b *Binary) StructFields(typeName string, fields ...string) (map[string]uint64, Source, error) {
	if len(fields) == 0 {
		return nil, 0, fmt.Errorf("struct %s: no fields requested", typeName)
	}
	var errs []error
	if b.HasDWARF {
		all, err := b.dwarfStructFields(typeName)
		switch {
		case err == nil:
			out, missing := pick(all, fields)
			if len(missing) > 0 {
				return nil, SourceDWARF, missingError(typeName, missing, "dwarf")
			}
			return out, SourceDWARF, nil
		case errors.Is(err, errNoStruct):
		default:
			errs = append(errs, fmt.Errorf("dwarf: %w", err))
		}
	}
	out, err := b.typeDataStructFields(typeName, fields)
	if err == nil {
		return out, SourceTypeData, nil
	}
	errs = append(errs, fmt.Errorf("type data: %w", err))
	out, err = b.tableStructFields(typeName, fields)
	if err == nil {
		return out, SourceTable, nil
	}
	errs = append(errs, fmt.Errorf("table: %w", err))
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return nil, 0, fmt.Errorf("struct %s: %w (%s)", typeName, ErrFieldNotFound, strings.Join(msgs, "; "))
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
	b.dwarfOnce.Do(func() {
		defer func() {
			if p := recover(); p != nil {
				b.dwarfErr = fmt.Errorf("internal error: %v", p)
			}
		}()
		b.dwarf, b.dwarfErr = b.ef.DWARF()
	})
	if b.dwarfErr != nil {
		return nil, b.dwarfErr
	}
	fields, err := findDWARFStruct(b.dwarf, typeName)
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

func findDWARFStruct(d *dwarf.Data, typeName string) (fields map[string]uint64, err error) {
	defer func() {
		if p := recover(); p != nil {
			fields, err = nil, fmt.Errorf("internal error: %v", p)
		}
	}()
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			return nil, errNoStruct
		}
		if e.Tag == dwarf.TagCompileUnit {
			continue
		}
		if e.Tag != dwarf.TagStructType || e.Val(dwarf.AttrName) != typeName {
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		if !e.Children {
			continue // a declaration
		}
		fields := make(map[string]uint64)
		for {
			m, err := r.Next()
			if err != nil {
				return nil, err
			}
			if m == nil || m.Tag == 0 {
				break
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
		return fields, nil
	}
}

// tableStructFields looks the fields up in the generated table, for the
// binary's Go release or else the nearest lower one present.
func (b *Binary) tableStructFields(typeName string, fields []string) (map[string]uint64, error) {
	major, minor, ok := b.Version()
	if !ok {
		return nil, fmt.Errorf("unknown go version %q", b.GoVersion)
	}
	var best *versionOffsets
	for i := range offsetTable {
		v := &offsetTable[i]
		if v.Major != major || v.Minor > minor {
			continue
		}
		if best == nil || v.Minor > best.Minor {
			best = v
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no table for go%d.%d", major, minor)
	}
	all, ok := best.Structs[typeName]
	if !ok {
		return nil, fmt.Errorf("struct %s not in table for go%d.%d", typeName, best.Major, best.Minor)
	}
	out, missing := pick(all, fields)
	if len(missing) > 0 {
		return nil, missingError(typeName, missing, fmt.Sprintf("table for go%d.%d", best.Major, best.Minor))
	}
	return out, nil
}

// versionOffsets holds the struct field offsets of one Go release.
type versionOffsets struct {
	Major, Minor int
	Structs      map[string]map[string]uint64
}
