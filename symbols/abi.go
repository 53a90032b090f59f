package symbols

import (
	"fmt"
	"strings"
)

// TypeKind is the shape of a Go type as far as the register ABI and label
// reading care.
type TypeKind uint8

// Type kinds.
const (
	KindInvalid TypeKind = iota
	KindBool
	KindInt     // signed integer of Size bytes
	KindUint    // unsigned integer (and uintptr) of Size bytes
	KindFloat   // float32, float64
	KindComplex // complex64, complex128
	KindPointer // pointers, unsafe.Pointer, maps, channels, funcs: one word
	KindString  // two words: pointer, length
	KindSlice   // three words: pointer, length, capacity
	KindIface   // two words: type or itab, data
	KindStruct
	KindArray
)

// Type is a Go type reduced to what parameter passing and label reading
// need. It comes from DWARF (Binary.Params) or from a signature the user
// wrote.
type Type struct {
	// Name is the type as Go prints it ("string", "*main.Order",
	// "context.Context"); informational.
	Name string
	Kind TypeKind
	// Size and Align are in bytes.
	Size, Align int64
	// Fields of a struct, in order.
	Fields []Field
	// Elem is the element type of an array, or the pointee of a pointer
	// when known (nil for an opaque pointer).
	Elem *Type
	// Len is an array's length.
	Len int64
}

// Field is one field of a struct type.
type Field struct {
	Name   string
	Offset int64
	Type   *Type
}

// FieldByName returns the named field of a struct, or false.
func (t *Type) FieldByName(name string) (Field, bool) {
	if t == nil {
		return Field{}, false
	}
	for _, f := range t.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// Param is one receiver, parameter or result of a function.
type Param struct {
	// Name is the parameter's name ("" or "_" when unnamed; results are
	// "~r0", "~r1", ... when unnamed).
	Name string
	Type *Type
	// Result marks a result.
	Result bool
}

// Signature is a function's receiver and parameters followed by its
// results, in ABI order.
type Signature struct {
	Params  []Param // receiver (if any) first, then parameters
	Results []Param
}

// String renders the signature as a func type.
func (s Signature) String() string {
	var b strings.Builder
	b.WriteString("func(")
	for i, p := range s.Params {
		if i > 0 {
			b.WriteString(", ")
		}
		if p.Name != "" {
			b.WriteString(p.Name + " ")
		}
		b.WriteString(p.Type.Name)
	}
	b.WriteString(")")
	switch len(s.Results) {
	case 0:
	case 1:
		b.WriteString(" " + s.Results[0].Type.Name)
	default:
		b.WriteString(" (")
		for i, r := range s.Results {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(r.Type.Name)
		}
		b.WriteString(")")
	}
	return b.String()
}

// Location says where one word (or smaller scalar) of a value is at the
// function's entry (for parameters) or at its return instructions (for
// results).
type Location struct {
	// Reg is the index into the architecture's integer register sequence
	// (amd64: RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11; arm64: X0..X15),
	// or -1 when the word is on the stack or in a floating-point register.
	Reg int
	// Float is the floating-point register index, or -1.
	Float int
	// Stack is the byte offset of the word from the start of the stack
	// argument area (amd64 and arm64: SP+8 at the entry and at RET), when
	// Reg and Float are -1.
	Stack int64
	// Size of the scalar in bytes.
	Size int64
	// Offset of the scalar inside the whole parameter value.
	Offset int64
}

// Assignment is where one parameter or result lives: one Location per
// scalar of its value, in memory order.
type Assignment struct {
	Param
	Parts []Location
	// Stack is true when the whole value is passed on the stack.
	Stack bool
}

// ABI is an architecture's register sequences.
type ABI struct {
	IntRegs, FloatRegs int
	PtrSize            int64
}

// ABIFor returns the ABIInternal register counts of an architecture.
func ABIFor(arch string) (ABI, error) {
	switch arch {
	case "amd64":
		return ABI{IntRegs: 9, FloatRegs: 15, PtrSize: 8}, nil
	case "arm64":
		return ABI{IntRegs: 16, FloatRegs: 16, PtrSize: 8}, nil
	}
	return ABI{}, fmt.Errorf("register abi: %w: %s", ErrUnsupportedArch, arch)
}

// Assign computes where the receiver, parameters and results of sig live,
// following the algorithm of Go's internal ABI
// (cmd/compile/abi-internal.md, "Function call argument and result
// passing"): each value goes entirely to registers or entirely to the stack
// sequence; parameters and results restart at register 0; the stack holds
// the stack-assigned parameters, a pointer alignment, then the
// stack-assigned results.
func (abi ABI) Assign(sig Signature) (params, results []Assignment) {
	var stack int64
	assignAll := func(ps []Param) []Assignment {
		var out []Assignment
		ri, rf := 0, 0
		for _, p := range ps {
			a := Assignment{Param: p}
			if p.Type.Size == 0 {
				stack = alignUp(stack, p.Type.Align)
				a.Stack = true
				out = append(out, a)
				continue
			}
			i, f := ri, rf
			parts, ok := abi.regAssign(p.Type, 0, &i, &f)
			if ok {
				ri, rf = i, f
				a.Parts = parts
			} else {
				stack = alignUp(stack, p.Type.Align)
				a.Stack = true
				for _, s := range scalars(p.Type, 0) {
					s.Stack += stack
					a.Parts = append(a.Parts, s)
				}
				stack += p.Type.Size
			}
			out = append(out, a)
		}
		return out
	}
	params = assignAll(sig.Params)
	stack = alignUp(stack, abi.PtrSize)
	results = assignAll(sig.Results)
	return params, results
}

// regAssign register-assigns a value of type t at offset off, advancing the
// register indexes; false means it does not fit.
func (abi ABI) regAssign(t *Type, off int64, i, f *int) ([]Location, bool) {
	intReg := func(size int64) ([]Location, bool) {
		if *i >= abi.IntRegs {
			return nil, false
		}
		*i++
		return []Location{{Reg: *i - 1, Float: -1, Size: size, Offset: off}}, true
	}
	switch t.Kind {
	case KindBool, KindInt, KindUint:
		if t.Size > abi.PtrSize {
			return nil, false // no 128-bit integers in Go
		}
		return intReg(t.Size)
	case KindPointer:
		return intReg(abi.PtrSize)
	case KindFloat:
		if *f >= abi.FloatRegs {
			return nil, false
		}
		*f++
		return []Location{{Reg: -1, Float: *f - 1, Size: t.Size, Offset: off}}, true
	case KindComplex:
		half := &Type{Kind: KindFloat, Size: t.Size / 2, Align: t.Size / 2}
		a, ok := abi.regAssign(half, off, i, f)
		if !ok {
			return nil, false
		}
		b, ok := abi.regAssign(half, off+t.Size/2, i, f)
		return append(a, b...), ok
	case KindString, KindIface, KindSlice:
		n := int64(2)
		if t.Kind == KindSlice {
			n = 3
		}
		var out []Location
		for k := int64(0); k < n; k++ {
			w := &Type{Kind: KindUint, Size: abi.PtrSize, Align: abi.PtrSize}
			l, ok := abi.regAssign(w, off+k*abi.PtrSize, i, f)
			if !ok {
				return nil, false
			}
			out = append(out, l...)
		}
		return out, true
	case KindStruct:
		var out []Location
		for _, fd := range t.Fields {
			if fd.Type.Size == 0 {
				continue
			}
			l, ok := abi.regAssign(fd.Type, off+fd.Offset, i, f)
			if !ok {
				return nil, false
			}
			out = append(out, l...)
		}
		return out, true
	case KindArray:
		switch t.Len {
		case 0:
			return nil, true
		case 1:
			return abi.regAssign(t.Elem, off, i, f)
		}
		return nil, false
	}
	return nil, false
}

// scalars lists the memory scalars of a stack-assigned value of type t at
// offset off (Location.Stack and Offset both set to off-relative values).
func scalars(t *Type, off int64) []Location {
	word := func(size int64) []Location {
		return []Location{{Reg: -1, Float: -1, Stack: off, Size: size, Offset: off}}
	}
	switch t.Kind {
	case KindBool, KindInt, KindUint, KindFloat, KindPointer:
		return word(t.Size)
	case KindComplex:
		return append(word(t.Size/2), scalars(&Type{Kind: KindFloat, Size: t.Size / 2}, off+t.Size/2)...)
	case KindString, KindIface, KindSlice:
		n := int64(2)
		if t.Kind == KindSlice {
			n = 3
		}
		var out []Location
		for k := int64(0); k < n; k++ {
			out = append(out, Location{Reg: -1, Float: -1, Stack: off + 8*k, Size: 8, Offset: off + 8*k})
		}
		return out
	case KindStruct:
		var out []Location
		for _, fd := range t.Fields {
			out = append(out, scalars(fd.Type, off+fd.Offset)...)
		}
		return out
	case KindArray:
		var out []Location
		if t.Elem == nil {
			return nil
		}
		for k := int64(0); k < t.Len; k++ {
			out = append(out, scalars(t.Elem, off+k*t.Elem.Size)...)
		}
		return out
	}
	return nil
}

func alignUp(n, a int64) int64 {
	if a <= 1 {
		return n
	}
	return (n + a - 1) / a * a
}

// Shape renders a type's ABI shape ("int64", "string", "struct{int64,string}"),
// for comparing a signature the user wrote with the binary's DWARF: two
// types with the same shape are passed identically.
func (t *Type) Shape() string {
	if t == nil {
		return "?"
	}
	switch t.Kind {
	case KindBool:
		return "bool"
	case KindInt:
		return fmt.Sprintf("int%d", t.Size*8)
	case KindUint:
		return fmt.Sprintf("uint%d", t.Size*8)
	case KindFloat:
		return fmt.Sprintf("float%d", t.Size*8)
	case KindComplex:
		return fmt.Sprintf("complex%d", t.Size*8)
	case KindPointer:
		return "pointer"
	case KindString:
		return "string"
	case KindSlice:
		return "slice"
	case KindIface:
		return "interface"
	case KindStruct:
		parts := make([]string, 0, len(t.Fields))
		for _, f := range t.Fields {
			parts = append(parts, f.Type.Shape())
		}
		return "struct{" + strings.Join(parts, ",") + "}"
	case KindArray:
		return fmt.Sprintf("[%d]%s", t.Len, t.Elem.Shape())
	}
	return "?"
}
