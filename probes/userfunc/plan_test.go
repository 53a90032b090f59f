package userfunc

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/blindspot-dev/blindspot/symbols"
)

func assign(t *testing.T, sig string, method bool) ([]symbols.Assignment, []symbols.Assignment) {
	t.Helper()
	s, err := ParseSignature(sig)
	if err != nil {
		t.Fatal(err)
	}
	if method {
		s.Params = append([]symbols.Param{{Name: "~recv", Type: &symbols.Type{Kind: symbols.KindPointer, Size: 8, Align: 8}}}, s.Params...)
	}
	abi, _ := symbols.ABIFor("amd64")
	return abi.Assign(s)
}

func where(a symbols.Assignment) string {
	var parts []string
	for _, p := range a.Parts {
		if p.Reg >= 0 {
			parts = append(parts, fmt.Sprintf("r%d", p.Reg))
		} else if p.Float >= 0 {
			parts = append(parts, fmt.Sprintf("f%d", p.Float))
		} else {
			parts = append(parts, fmt.Sprintf("s%d", p.Stack))
		}
	}
	return strings.Join(parts, ",")
}

// TestABIAssignment checks register and stack assignment against the
// rules of cmd/compile/abi-internal.md.
func TestABIAssignment(t *testing.T) {
	for _, tc := range []struct {
		sig    string
		method bool
		params []string
		result []string
	}{
		{"func(ctx context.Context, orderType string, qty int) error", true,
			[]string{"r1,r2", "r3,r4", "r5"}, []string{"r0,r1"}},
		// 7 words, then a string in the last two registers, then the stack.
		{"func(note string, items []string, meta any, region string, priority int, vip bool) error", false,
			[]string{"r0,r1", "r2,r3,r4", "r5,r6", "r7,r8", "s0", "s8"}, []string{"r0,r1"}},
		{"func(a, b, c, d, e, f, g, h, i, j int, k string, code int8) int", false,
			[]string{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "s0", "s8,s16", "s24"}, []string{"r0"}},
		// A string that does not fit goes to the stack, and the int after it
		// still gets a register.
		{"func(a, b, c, d, e, f, g, h int, s string, n int) (int, error)", false,
			[]string{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "s0,s8", "r8"}, []string{"r0", "r1,r2"}},
		// Arrays of more than one element are never in registers; small
		// ints pack on the stack by alignment; results follow the
		// parameters on the stack after pointer alignment.
		{"func(x [2]int, b bool, c int8, d int16) [2]int", false,
			[]string{"s0,s8", "r0", "r1", "r2"}, []string{"s16,s24"}},
		{"func(p struct{A int32; B string}, f float64) bool", false,
			[]string{"r0,r1,r2", "f0"}, []string{"r0"}},
	} {
		ps, rs := assign(t, tc.sig, tc.method)
		if tc.method {
			ps = ps[1:]
		}
		for i, want := range tc.params {
			if got := where(ps[i]); got != want {
				t.Errorf("%s: param %d (%s) at %q, want %q", tc.sig, i, ps[i].Name, got, want)
			}
		}
		for i, want := range tc.result {
			if got := where(rs[i]); got != want {
				t.Errorf("%s: result %d at %q, want %q", tc.sig, i, got, want)
			}
		}
	}
}

func TestPlaceLabelErrors(t *testing.T) {
	ps, _ := assign(t, "func(ctx context.Context, o *Order, items []string, f float64, p *struct{A int; B *struct{C string}}) error", false)
	for _, tc := range []struct{ src, want string }{
		{"nope", `no parameter "nope" (parameters: ctx, o, items, f, p)`},
		{"items", "has type []string; a label can be a string, bool or integer"},
		{"f", "has type float64"},
		{"ctx", "has type context.Context"},
		{"o.Type", "is unknown here (no DWARF): give the field's offset and type, e.g. o.Type@16:string"},
		{"p.X", "has no field X (fields: A, B)"},
		{"p.A.Z", "p.A is a int, which has no field Z"},
		{"p.B", "has type *struct{...}"},
	} {
		_, err := placeLabel("l", tc.src, ps, 64)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.src, err, tc.want)
		}
	}
	l, err := placeLabel("l", "p.B.C", ps, 64)
	if err != nil || l.Type != LabelString || len(l.Hops) != 2 || l.Hops[0] != 8 || l.Hops[1] != 0 || l.A.Reg != 6 {
		t.Errorf("p.B.C: %+v %v", l, err)
	}
	l, err = placeLabel("l", "o.Qty@24:int32", ps, 64)
	if err != nil || l.Type != LabelInt || l.Size != 4 || len(l.Hops) != 1 || l.Hops[0] != 24 || l.A.Reg != 2 {
		t.Errorf("o.Qty@24:int32: %+v %v", l, err)
	}
}

func TestReceiverOf(t *testing.T) {
	for fn, want := range map[string]string{
		"github.com/shop/payment.(*Gateway).Charge": "*Gateway",
		"main.Shop.Name":          "Shop",
		"main.processOrder":       "",
		"main.processOrder.func1": "",
	} {
		if got := receiverOf(fn); got != want {
			t.Errorf("%s: %q, want %q", fn, got, want)
		}
	}
}

func TestCompareSig(t *testing.T) {
	d, _ := ParseSignature("func(ctx context.Context, orderType string, qty int) error")
	u, _ := ParseSignature("func(ctx context.Context, orderType string, qty int32) error")
	if err := compareSig(u, d); err == nil || !strings.Contains(err.Error(), "parameter 3 (qty) is int32") {
		t.Errorf("got %v", err)
	}
	u, _ = ParseSignature("func(ctx context.Context, orderType string) error")
	if err := compareSig(u, d); err == nil || !strings.Contains(err.Error(), "2 parameters given") {
		t.Errorf("got %v", err)
	}
	u, _ = ParseSignature("func(ctx context.Context, orderType string, qty int) bool")
	if err := compareSig(u, d); err == nil || !strings.Contains(err.Error(), "result 1 is bool") {
		t.Errorf("got %v", err)
	}
}

// An entry without service skips programs that do not link the function's
// package, but every program has a main package: a main.* function it
// lacks is said (with the closest names), not skipped silently.
func TestResolveMissingFunction(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := symbols.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = Resolve(&Entry{Function: "main.mian"}, b)
	if !errors.Is(err, ErrNotInProgram) || !strings.Contains(err.Error(), "main.main") {
		t.Errorf("main.mian: err = %v, want %v naming main.main", err, ErrNotInProgram)
	}
	if _, err := Resolve(&Entry{Function: "example.com/nothere.Handle"}, b); !errors.Is(err, ErrNotLinked) {
		t.Errorf("unlinked package: err = %v, want %v", err, ErrNotLinked)
	}
	if _, err := Resolve(&Entry{Function: "main.mian", Service: "shop"}, b); err == nil || errors.Is(err, ErrNotInProgram) {
		t.Errorf("with service: err = %v, want an attach error", err)
	}
}
