package symbols

import (
	"strings"
	"testing"
)

// A parameter type that contains itself by value (only hostile DWARF can
// say so) or claims too many scalars is refused before the ABI's walkers
// see it: they would recurse without end. A type that reaches itself
// through a pointer, as a linked list does, is fine.
func TestCheckType(t *testing.T) {
	word := &Type{Name: "int", Kind: KindInt, Size: 8, Align: 8}
	list := &Type{Name: "main.Node", Kind: KindStruct, Size: 16, Align: 8}
	list.Fields = []Field{{Name: "v", Type: word}, {Name: "next", Offset: 8, Type: &Type{Name: "*main.Node", Kind: KindPointer, Size: 8, Align: 8, Elem: list}}}
	self := &Type{Name: "main.Self", Kind: KindStruct, Size: 8, Align: 8}
	self.Fields = []Field{{Name: "x", Type: self}}
	arr := &Type{Name: "[2]main.A", Kind: KindArray, Len: 2, Size: 16, Align: 8}
	arr.Elem = arr
	viaPtr := &Type{Name: "*main.Self", Kind: KindPointer, Size: 8, Align: 8, Elem: self}
	huge := &Type{Name: "[1099511627776]int", Kind: KindArray, Len: 1 << 40, Elem: word, Size: 8 << 40, Align: 8}
	for _, c := range []struct {
		t    *Type
		want string // "" when accepted
	}{
		{word, ""},
		{list, ""},
		{self, "contains itself"},
		{arr, "contains itself"},
		{viaPtr, "contains itself"}, // a pointer to a broken type: the type is still broken
		{huge, "more than"},
	} {
		err := checkType(c.t)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.t.Name, err, c.want)
		}
	}
	abi, err := ABIFor("amd64")
	if err != nil {
		t.Fatal(err)
	}
	abi.Assign(Signature{Params: []Param{{Name: "l", Type: list}}}) // ends
}
