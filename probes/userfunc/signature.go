package userfunc

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"

	"github.com/blindspot-dev/blindspot/symbols"
)

// scalarTypes are the types a label can hold, with their kinds and sizes.
var scalarTypes = map[string]*symbols.Type{
	"string":  {Name: "string", Kind: symbols.KindString, Size: 16, Align: 8},
	"bool":    {Name: "bool", Kind: symbols.KindBool, Size: 1, Align: 1},
	"int":     {Name: "int", Kind: symbols.KindInt, Size: 8, Align: 8},
	"int8":    {Name: "int8", Kind: symbols.KindInt, Size: 1, Align: 1},
	"int16":   {Name: "int16", Kind: symbols.KindInt, Size: 2, Align: 2},
	"int32":   {Name: "int32", Kind: symbols.KindInt, Size: 4, Align: 4},
	"rune":    {Name: "rune", Kind: symbols.KindInt, Size: 4, Align: 4},
	"int64":   {Name: "int64", Kind: symbols.KindInt, Size: 8, Align: 8},
	"uint":    {Name: "uint", Kind: symbols.KindUint, Size: 8, Align: 8},
	"uint8":   {Name: "uint8", Kind: symbols.KindUint, Size: 1, Align: 1},
	"byte":    {Name: "byte", Kind: symbols.KindUint, Size: 1, Align: 1},
	"uint16":  {Name: "uint16", Kind: symbols.KindUint, Size: 2, Align: 2},
	"uint32":  {Name: "uint32", Kind: symbols.KindUint, Size: 4, Align: 4},
	"uint64":  {Name: "uint64", Kind: symbols.KindUint, Size: 8, Align: 8},
	"uintptr": {Name: "uintptr", Kind: symbols.KindUint, Size: 8, Align: 8},
}

// knownNamed are named types of the standard library whose layout a
// signature may use without spelling it out.
var knownNamed = map[string]*symbols.Type{
	"error":           {Name: "error", Kind: symbols.KindIface, Size: 16, Align: 8},
	"any":             {Name: "any", Kind: symbols.KindIface, Size: 16, Align: 8},
	"context.Context": {Name: "context.Context", Kind: symbols.KindIface, Size: 16, Align: 8},
	"time.Duration":   {Name: "time.Duration", Kind: symbols.KindInt, Size: 8, Align: 8},
	"float32":         {Name: "float32", Kind: symbols.KindFloat, Size: 4, Align: 4},
	"float64":         {Name: "float64", Kind: symbols.KindFloat, Size: 8, Align: 8},
	"complex64":       {Name: "complex64", Kind: symbols.KindComplex, Size: 8, Align: 4},
	"complex128":      {Name: "complex128", Kind: symbols.KindComplex, Size: 16, Align: 8},
	"unsafe.Pointer":  {Name: "unsafe.Pointer", Kind: symbols.KindPointer, Size: 8, Align: 8},
}

func init() {
	word := &symbols.Type{Name: "uint64", Kind: symbols.KindUint, Size: 8, Align: 8}
	ptr := &symbols.Type{Name: "*time.Location", Kind: symbols.KindPointer, Size: 8, Align: 8}
	knownNamed["time.Time"] = &symbols.Type{Name: "time.Time", Kind: symbols.KindStruct, Size: 24, Align: 8, Fields: []symbols.Field{
		{Name: "wall", Offset: 0, Type: word}, {Name: "ext", Offset: 8, Type: word}, {Name: "loc", Offset: 16, Type: ptr},
	}}
}

// ParseSignature parses a Go func type as the user writes it, e.g.
// "func(ctx context.Context, orderType string, qty int) error". Types are
// the predeclared ones, pointers (to anything, named or not), slices,
// maps, channels, funcs, interfaces, arrays, struct literals, and the
// standard library's error, context.Context, time.Duration and time.Time.
// Other named types must be written as their underlying type (a pointer to
// one may stay named).
func ParseSignature(s string) (symbols.Signature, error) {
	expr, err := parser.ParseExpr(strings.TrimSpace(s))
	if err != nil {
		return symbols.Signature{}, fmt.Errorf("%q does not parse as a Go func type: %v", s, err)
	}
	ft, ok := expr.(*ast.FuncType)
	if !ok {
		return symbols.Signature{}, fmt.Errorf("%q is not a func type (write func(a string, n int) error)", s)
	}
	var sig symbols.Signature
	params, err := fieldList(ft.Params, false)
	if err != nil {
		return symbols.Signature{}, err
	}
	results, err := fieldList(ft.Results, true)
	if err != nil {
		return symbols.Signature{}, err
	}
	sig.Params, sig.Results = params, results
	return sig, nil
}

func fieldList(fl *ast.FieldList, result bool) ([]symbols.Param, error) {
	if fl == nil {
		return nil, nil
	}
	var out []symbols.Param
	for _, f := range fl.List {
		t, err := convertAST(f.Type)
		if err != nil {
			return nil, err
		}
		if len(f.Names) == 0 {
			name := ""
			if result {
				name = "~r" + strconv.Itoa(len(out))
			}
			out = append(out, symbols.Param{Type: t, Result: result, Name: name})
			continue
		}
		for _, n := range f.Names {
			out = append(out, symbols.Param{Name: n.Name, Type: t, Result: result})
		}
	}
	return out, nil
}

func typeString(e ast.Expr) string {
	var b strings.Builder
	writeExpr(&b, e)
	return b.String()
}

func writeExpr(b *strings.Builder, e ast.Expr) {
	switch x := e.(type) {
	case *ast.Ident:
		b.WriteString(x.Name)
	case *ast.SelectorExpr:
		writeExpr(b, x.X)
		b.WriteString("." + x.Sel.Name)
	case *ast.StarExpr:
		b.WriteString("*")
		writeExpr(b, x.X)
	case *ast.ArrayType:
		b.WriteString("[")
		if x.Len != nil {
			writeExpr(b, x.Len)
		}
		b.WriteString("]")
		writeExpr(b, x.Elt)
	case *ast.BasicLit:
		b.WriteString(x.Value)
	case *ast.MapType:
		b.WriteString("map[")
		writeExpr(b, x.Key)
		b.WriteString("]")
		writeExpr(b, x.Value)
	case *ast.ChanType:
		b.WriteString("chan ")
		writeExpr(b, x.Value)
	case *ast.FuncType:
		b.WriteString("func(...)")
	case *ast.InterfaceType:
		b.WriteString("interface{...}")
	case *ast.StructType:
		b.WriteString("struct{...}")
	case *ast.Ellipsis:
		b.WriteString("...")
		writeExpr(b, x.Elt)
	default:
		b.WriteString("?")
	}
}

func convertAST(e ast.Expr) (*symbols.Type, error) {
	name := typeString(e)
	word := func(k symbols.TypeKind, size int64) *symbols.Type {
		return &symbols.Type{Name: name, Kind: k, Size: size, Align: 8}
	}
	switch x := e.(type) {
	case *ast.Ident:
		if t, ok := scalarTypes[x.Name]; ok {
			c := *t
			return &c, nil
		}
		if t, ok := knownNamed[x.Name]; ok {
			c := *t
			return &c, nil
		}
		return nil, fmt.Errorf("type %s: unknown here; write its underlying type (e.g. struct{ID int; Name string} or int64), or give the binary DWARF", x.Name)
	case *ast.SelectorExpr:
		if t, ok := knownNamed[name]; ok {
			c := *t
			return &c, nil
		}
		return nil, fmt.Errorf("type %s: unknown here; write its underlying type (a pointer *%s may stay named), or give the binary DWARF", name, name)
	case *ast.StarExpr:
		t := word(symbols.KindPointer, 8)
		if el, err := convertAST(x.X); err == nil {
			t.Elem = el
		}
		return t, nil
	case *ast.MapType, *ast.ChanType, *ast.FuncType:
		return word(symbols.KindPointer, 8), nil
	case *ast.InterfaceType:
		return word(symbols.KindIface, 16), nil
	case *ast.Ellipsis:
		return word(symbols.KindSlice, 24), nil
	case *ast.ArrayType:
		if x.Len == nil {
			return word(symbols.KindSlice, 24), nil
		}
		lit, ok := x.Len.(*ast.BasicLit)
		if !ok || lit.Kind != token.INT {
			return nil, fmt.Errorf("type %s: array length must be a number", name)
		}
		n, err := strconv.ParseInt(lit.Value, 0, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("type %s: bad array length", name)
		}
		el, err := convertAST(x.Elt)
		if err != nil {
			return nil, err
		}
		return &symbols.Type{Name: name, Kind: symbols.KindArray, Elem: el, Len: n, Size: n * el.Size, Align: el.Align}, nil
	case *ast.StructType:
		t := &symbols.Type{Name: name, Kind: symbols.KindStruct, Align: 1}
		var off int64
		for _, f := range x.Fields.List {
			ft, err := convertAST(f.Type)
			if err != nil {
				return nil, err
			}
			names := []string{typeString(f.Type)}
			if len(f.Names) > 0 {
				names = names[:0]
				for _, n := range f.Names {
					names = append(names, n.Name)
				}
			}
			for _, n := range names {
				off = alignUp(off, ft.Align)
				t.Fields = append(t.Fields, symbols.Field{Name: n, Offset: off, Type: ft})
				off += ft.Size
				if ft.Align > t.Align {
					t.Align = ft.Align
				}
			}
		}
		// A final zero-size field gets a byte of padding, as gc lays it out.
		if n := len(t.Fields); n > 0 && t.Fields[n-1].Type.Size == 0 && off > 0 {
			off++
		}
		t.Size = alignUp(off, t.Align)
		return t, nil
	case *ast.ParenExpr:
		return convertAST(x.X)
	}
	return nil, fmt.Errorf("type %s: not supported in a signature", name)
}

func alignUp(n, a int64) int64 {
	if a <= 1 {
		return n
	}
	return (n + a - 1) / a * a
}
