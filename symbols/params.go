package symbols

import (
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"strings"
)

// ErrNoDWARF is returned when a question needs DWARF the binary lacks.
var ErrNoDWARF = errors.New("binary has no DWARF")

// Params reads the receiver, parameters and results of a function from
// the binary's DWARF (DW_TAG_formal_parameter children of its subprogram,
// in declaration order; results carry DW_AT_variable_parameter).
func (b *Binary) Params(funcName string) (sig Signature, err error) {
	if !b.HasDWARF {
		return Signature{}, ErrNoDWARF
	}
	d, err := b.dwarfData()
	if err != nil {
		return Signature{}, err
	}
	defer func() {
		if p := recover(); p != nil {
			sig, err = Signature{}, fmt.Errorf("read dwarf parameters of %s: internal error: %v", funcName, p)
		}
	}()
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return Signature{}, fmt.Errorf("read dwarf: %w", err)
		}
		if e == nil {
			return Signature{}, &wrapError{msg: fmt.Sprintf("function %q has no DWARF entry (inlined everywhere?)", funcName), err: ErrFuncNotFound}
		}
		if e.Tag == dwarf.TagCompileUnit {
			continue
		}
		if e.Tag != dwarf.TagSubprogram || e.Val(dwarf.AttrName) != funcName {
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		if _, inl := e.Val(dwarf.AttrInline).(int64); inl {
			// an abstract inlining origin; the concrete one follows
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		if !e.Children {
			return sig, nil
		}
		for {
			c, err := r.Next()
			if err != nil {
				return Signature{}, fmt.Errorf("read dwarf: %w", err)
			}
			if c == nil || c.Tag == 0 {
				return sig, nil
			}
			if c.Tag == dwarf.TagFormalParameter {
				name, _ := c.Val(dwarf.AttrName).(string)
				off, ok := c.Val(dwarf.AttrType).(dwarf.Offset)
				if !ok {
					return Signature{}, fmt.Errorf("parameter %s of %s has no type", name, funcName)
				}
				dt, err := d.Type(off)
				if err != nil {
					return Signature{}, fmt.Errorf("type of parameter %s of %s: %w", name, funcName, err)
				}
				t := convertDWARF(dt, map[dwarf.Type]*Type{}, 0)
				if err := checkType(t); err != nil {
					return Signature{}, fmt.Errorf("type of parameter %s of %s: %w", name, funcName, err)
				}
				result, _ := c.Val(dwarf.AttrVarParam).(bool)
				p := Param{Name: name, Type: t, Result: result}
				if result {
					sig.Results = append(sig.Results, p)
				} else {
					sig.Params = append(sig.Params, p)
				}
			}
			if c.Children {
				r.SkipChildren()
			}
		}
	}
}

func (b *Binary) dwarfData() (*dwarf.Data, error) {
	b.dwarfMu.Lock()
	defer b.dwarfMu.Unlock()
	if b.dwarf != nil || b.dwarfErr != nil {
		return b.dwarf, b.dwarfErr
	}
	func() {
		defer func() {
			if p := recover(); p != nil {
				b.dwarfErr = fmt.Errorf("internal error: %v", p)
			}
		}()
		if b.dwarfErr = b.checkDWARF(); b.dwarfErr == nil {
			b.dwarf, b.dwarfRaw, b.dwarfErr = b.lookupDWARF()
		}
	}()
	return b.dwarf, b.dwarfErr
}

// lookupDWARF reads the DWARF sections that struct and parameter lookups
// need (entries, abbreviations, strings, and the DWARF 5 tables entries
// refer to), not the line tables, location and range lists or frames that
// debug/elf's reader decompresses too: most of the bytes, and of the time
// a new executable took to attach. A DWARF section with relocations to
// apply (in relocatable objects, not in executables Go links) is left to
// debug/elf, which applies them.
func (b *Binary) lookupDWARF() (*dwarf.Data, dwarfSections, error) {
	secs := map[string][]byte{"abbrev": nil, "info": nil, "str": nil, "addr": nil, "line_str": nil, "str_offsets": nil}
	for i, s := range b.ef.Sections {
		name, ok := strings.CutPrefix(s.Name, ".debug_")
		if !ok {
			name, ok = strings.CutPrefix(s.Name, ".zdebug_")
		}
		if _, want := secs[name]; !ok || !want {
			continue
		}
		if b.ef.Type != elf.ET_EXEC && relocated(b.ef, i) {
			d, err := b.ef.DWARF()
			return d, dwarfSections{}, err
		}
		data, err := s.Data()
		if err != nil && uint64(len(data)) < s.Size {
			return nil, dwarfSections{}, err
		}
		bytesRead.Add(uint64(len(data)))
		secs[name] = data
	}
	d, err := dwarf.New(secs["abbrev"], nil, nil, secs["info"], nil, nil, nil, secs["str"])
	if err != nil {
		return nil, dwarfSections{}, err
	}
	for _, name := range []string{"addr", "line_str", "str_offsets"} {
		if secs[name] != nil {
			if err := d.AddSection(".debug_"+name, secs[name]); err != nil {
				return nil, dwarfSections{}, err
			}
		}
	}
	raw := dwarfSections{abbrev: secs["abbrev"], info: secs["info"], str: secs["str"], lineStr: secs["line_str"], units: dwarfUnits(secs["info"])}
	return d, raw, nil
}

// relocated reports whether a relocation section applies to section i.
func relocated(f *elf.File, i int) bool {
	for _, r := range f.Sections {
		if (r.Type == elf.SHT_RELA || r.Type == elf.SHT_REL) && int(r.Info) == i {
			return true
		}
	}
	return false
}

// ReleaseDWARF lets the binary's decompressed DWARF go (a few MB for a
// typical server) once what was needed from it has been read: lookups made
// already stay cached, and a later one reads the DWARF again. An agent
// observing many executables would otherwise keep every one's.
func (b *Binary) ReleaseDWARF() {
	b.dwarfMu.Lock()
	if b.dwarfErr == nil {
		b.dwarf, b.dwarfRaw = nil, dwarfSections{}
	}
	b.dwarfMu.Unlock()
	// The index of its struct types too (a few hundred KB): built again
	// with the DWARF, if ever needed.
	b.dwarfIndexMu.Lock()
	if b.dwarfIndexErr == nil {
		b.dwarfIndex = nil
	}
	b.dwarfIndexMu.Unlock()
}

// convertDWARF reduces a DWARF type to a Type. Go describes strings,
// slices and interfaces as structs of words and maps, channels and funcs
// as pointers, which is also how the register ABI passes them.
func convertDWARF(dt dwarf.Type, seen map[dwarf.Type]*Type, depth int) *Type {
	if t, ok := seen[dt]; ok {
		return t
	}
	t := &Type{Name: dt.String(), Size: dt.Size()}
	seen[dt] = t
	if depth > 8 {
		// deep enough for labels; keep the size, treat as opaque words
		t.Kind = KindStruct
		t.Align = 8
		return t
	}
	switch x := dt.(type) {
	case *dwarf.TypedefType:
		u := convertDWARF(x.Type, seen, depth+1)
		*t = *u
		t.Name = x.Name
		if t.Size <= 0 {
			t.Size = u.Size
		}
	case *dwarf.BoolType:
		t.Kind = KindBool
	case *dwarf.IntType, *dwarf.CharType:
		t.Kind = KindInt
	case *dwarf.UintType, *dwarf.UcharType, *dwarf.AddrType:
		t.Kind = KindUint
	case *dwarf.FloatType:
		t.Kind = KindFloat
	case *dwarf.ComplexType:
		t.Kind = KindComplex
	case *dwarf.PtrType:
		t.Kind = KindPointer
		t.Size = 8
		if x.Type != nil {
			if _, void := x.Type.(*dwarf.VoidType); !void {
				t.Elem = convertDWARF(x.Type, seen, depth+1)
			}
		}
	case *dwarf.FuncType, *dwarf.UnspecifiedType:
		t.Kind = KindPointer
		t.Size = 8
	case *dwarf.ArrayType:
		t.Kind = KindArray
		t.Elem = convertDWARF(x.Type, seen, depth+1)
		t.Len = x.Count
		if t.Len < 0 {
			t.Len = 0
		}
		if t.Size < 0 {
			t.Size = t.Len * t.Elem.Size
		}
	case *dwarf.StructType:
		name := x.StructName
		t.Name = name
		switch {
		case name == "string":
			t.Kind = KindString
		case strings.HasPrefix(name, "[]"):
			t.Kind = KindSlice
		case name == "runtime.iface" || name == "runtime.eface":
			t.Kind = KindIface
		default:
			t.Kind = KindStruct
			for _, f := range x.Field {
				t.Fields = append(t.Fields, Field{Name: f.Name, Offset: f.ByteOffset, Type: convertDWARF(f.Type, seen, depth+1)})
			}
		}
	default:
		t.Kind = KindStruct // unknown: opaque bytes
	}
	if t.Size < 0 {
		t.Size = 0
	}
	t.Align = alignOf(t)
	return t
}

// maxScalars bounds the scalars a parameter's type may hold: the ABI's
// walkers list them one by one (a hostile DWARF can claim an array of 2^40).
const maxScalars = 1 << 16

// checkType refuses a type the ABI's walkers (ABI.Assign, Shape) could not
// finish: one that contains itself by value (through struct fields or
// array elements; through a pointer is fine, as in a linked list), which
// no Go type can, and one with more than maxScalars scalars. Only hostile
// or corrupt DWARF has them.
func checkType(root *Type) error {
	// Every type reachable, through pointers too; then the value edges
	// alone, with the usual three colours.
	var all []*Type
	seen := map[*Type]bool{}
	for stack := []*Type{root}; len(stack) > 0; {
		t := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if t == nil || seen[t] {
			continue
		}
		seen[t] = true
		all = append(all, t)
		for _, f := range t.Fields {
			stack = append(stack, f.Type)
		}
		stack = append(stack, t.Elem)
	}
	const (
		white = iota
		grey
		black
	)
	colour := map[*Type]int{}
	scalarsOf := map[*Type]int64{}
	var visit func(t *Type) error
	visit = func(t *Type) error {
		switch colour[t] {
		case grey:
			return fmt.Errorf("cyclic type data: %s contains itself", t.Name)
		case black:
			return nil
		}
		colour[t] = grey
		n := int64(1)
		switch t.Kind {
		case KindStruct:
			n = 0
			for _, f := range t.Fields {
				if f.Type == nil {
					continue
				}
				if err := visit(f.Type); err != nil {
					return err
				}
				n += scalarsOf[f.Type]
			}
		case KindArray:
			n = 0
			if t.Elem != nil {
				if err := visit(t.Elem); err != nil {
					return err
				}
				if e := scalarsOf[t.Elem]; e > 0 && t.Len > maxScalars/e {
					n = maxScalars + 1
				} else {
					n = t.Len * e
				}
			}
		}
		if n > maxScalars {
			return fmt.Errorf("type %s holds more than %d scalars", t.Name, maxScalars)
		}
		scalarsOf[t] = n
		colour[t] = black
		return nil
	}
	for _, t := range all {
		if err := visit(t); err != nil {
			return err
		}
	}
	return nil
}

func alignOf(t *Type) int64 {
	switch t.Kind {
	case KindBool, KindInt, KindUint, KindFloat:
		if t.Size > 0 {
			return t.Size
		}
		return 1
	case KindComplex:
		return t.Size / 2
	case KindPointer, KindString, KindSlice, KindIface:
		return 8
	case KindArray:
		if t.Elem != nil {
			return t.Elem.Align
		}
		return 1
	case KindStruct:
		a := int64(1)
		for _, f := range t.Fields {
			if f.Type.Align > a {
				a = f.Type.Align
			}
		}
		if len(t.Fields) == 0 && t.Size >= 8 {
			a = 8
		}
		return a
	}
	return 1
}
