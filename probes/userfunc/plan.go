package userfunc

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/blindspot-dev/blindspot/symbols"
)

// LabelType is how a label's value is read and rendered: UF_STRING, UF_INT,
// UF_UINT and UF_BOOL of bpf/userfunc.c (compared with it by
// TestContract).
type LabelType uint8

// Label types.
const (
	LabelString LabelType = 1
	LabelInt    LabelType = 2
	LabelUint   LabelType = 3
	LabelBool   LabelType = 4
)

// OutcomeKind says what the outcome label is read from.
type OutcomeKind uint8

// Outcome kinds: 0 and UF_OUTCOME_* of bpf/userfunc.c (compared with it by
// TestContract).
const (
	OutcomeNone  OutcomeKind = 0
	OutcomeError OutcomeKind = 1 // an error result: its type word is 0 for nil
	OutcomeBool  OutcomeKind = 2 // a bool result
)

// Loc is where a word is: an integer register (index in the ABI's
// sequence) or, when Reg < 0, the stack argument area at byte Stack (SP+8
// at the function's entry and at its RET instructions).
type Loc struct {
	Reg   int
	Stack int64
}

func (l Loc) String() string {
	if l.Reg >= 0 {
		return fmt.Sprintf("r%d", l.Reg)
	}
	return fmt.Sprintf("sp+%d", 8+l.Stack)
}

// Label is where one label's value is read.
type Label struct {
	Name string
	Type LabelType
	// Size of an integer or bool in bytes.
	Size int
	// A is the parameter's word: the value itself, a string's pointer, or
	// the pointer the first field hop starts from.
	A Loc
	// B is a string parameter's length word (only without hops).
	B Loc
	// Hops are field offsets: the value is at ((A + Hops[0]) → +Hops[1] …),
	// each step but the last dereferencing a pointer field.
	Hops []int64
	// MaxLen bounds a string value.
	MaxLen int
}

// Plan is what probes need to measure one entry in one binary.
type Plan struct {
	Entry *Entry
	Func  symbols.Func
	Sites symbols.Sites
	// Sig is the signature used, with the receiver first for methods.
	Sig symbols.Signature
	// FromDWARF reports that Sig was read from the binary.
	FromDWARF bool
	Labels    []Label
	Outcome   OutcomeKind
	// Result is where the outcome word is at RET.
	Result Loc
}

// NeedsExit reports whether the plan probes the return instructions:
// duration always, count only with an outcome.
func (p *Plan) NeedsExit() bool { return p.Entry.IsDuration() || p.Outcome != OutcomeNone }

// ErrNotLinked says that the binary has neither the function nor its
// package: the entry does not concern the program.
var ErrNotLinked = errors.New("function's package not in program")

// ErrNotInProgram says that a main.* function of an entry without service
// is not in the program: every program has a main package, so this may be
// a program the entry does not concern, or a misspelt name.
var ErrNotInProgram = errors.New("not in this program")

// Resolve plans entry e for binary b: finds the function, reads its
// signature (DWARF first, else e.Signature; both: they must agree) and
// places each label and the outcome.
func Resolve(e *Entry, b *symbols.Binary) (*Plan, error) {
	f, err := b.LookupFunc(e.Function)
	if err != nil {
		if e.Service == "" && errors.Is(err, symbols.ErrFuncNotFound) && !hasPackage(b, e.Function) {
			if strings.HasPrefix(e.Function, "main.") {
				return nil, fmt.Errorf("%w: %v (without service: the entry applies to every program that has it)", ErrNotInProgram, err)
			}
			return nil, ErrNotLinked
		}
		return nil, fmt.Errorf("%v (check function:; names are as Go prints them, e.g. github.com/shop/payment.(*Gateway).Charge)", err)
	}
	sites, err := b.Sites(f)
	if err != nil {
		return nil, err
	}
	p := &Plan{Entry: e, Func: f, Sites: sites}
	if err := p.signature(b); err != nil {
		return nil, err
	}
	abi, err := symbols.ABIFor(b.Arch)
	if err != nil {
		return nil, err
	}
	params, results := abi.Assign(p.Sig)
	for _, n := range e.LabelNames() {
		l, err := placeLabel(n, e.Labels[n], params, e.StringMax())
		if err != nil {
			return nil, fmt.Errorf("labels.%s: %v (the function is %s)", n, err, p.Sig)
		}
		p.Labels = append(p.Labels, l)
	}
	if e.Outcome != "" {
		if len(results) == 0 {
			return nil, fmt.Errorf("outcome: %s returns nothing; outcome needs an error or bool result (remove outcome:)", e.Function)
		}
		r := results[len(results)-1]
		switch r.Type.Kind {
		case symbols.KindIface:
			p.Outcome = OutcomeError
		case symbols.KindBool:
			p.Outcome = OutcomeBool
		default:
			return nil, fmt.Errorf("outcome: the last result of %s is %s; outcome needs an error or bool last result (remove outcome:)", e.Function, r.Type.Name)
		}
		p.Result = loc(r.Parts[0])
	}
	return p, nil
}

// hasPackage reports whether the binary has any function of fn's package.
func hasPackage(b *symbols.Binary, fn string) bool {
	pkg := fn
	slash := strings.LastIndex(fn, "/")
	if dot := strings.Index(fn[slash+1:], "."); dot >= 0 {
		pkg = fn[:slash+1+dot]
	}
	if pkg == "" || pkg == "main" {
		return false
	}
	for _, n := range b.FuncNames() {
		if strings.HasPrefix(n, pkg+".") {
			return true
		}
	}
	return false
}

var closureRe = regexp.MustCompile(`^(func|gowrap)\d+$`)

// receiverOf says whether fn is a method with a pointer receiver ("*T"),
// a value receiver ("T") or neither ("").
func receiverOf(fn string) string {
	rest := fn
	if i := strings.LastIndex(rest, "/"); i >= 0 {
		rest = rest[i+1:]
	}
	parts := strings.Split(rest, ".")
	if len(parts) < 3 {
		return ""
	}
	if strings.HasPrefix(parts[1], "(*") && strings.HasSuffix(parts[1], ")") {
		return parts[1][1 : len(parts[1])-1]
	}
	if closureRe.MatchString(parts[len(parts)-1]) {
		return ""
	}
	return parts[1]
}

func (p *Plan) signature(b *symbols.Binary) error {
	e := p.Entry
	var user *symbols.Signature
	if e.Signature != "" {
		s, err := ParseSignature(e.Signature)
		if err != nil {
			return fmt.Errorf("signature: %v", err)
		}
		if r := receiverOf(e.Function); strings.HasPrefix(r, "*") {
			recv := symbols.Param{Name: "~recv", Type: &symbols.Type{Name: r, Kind: symbols.KindPointer, Size: 8, Align: 8}}
			s.Params = append([]symbols.Param{recv}, s.Params...)
		}
		user = &s
	}
	if b.HasDWARF {
		d, err := b.Params(e.Function)
		if err == nil {
			p.Sig, p.FromDWARF = d, true
			if user != nil {
				if err := compareSig(*user, d); err != nil {
					return fmt.Errorf("signature: %v (fix signature: or remove it; the binary's DWARF says %s)", err, d)
				}
				// The user's names win: labels may refer to them.
				for i := range p.Sig.Params {
					if n := user.Params[i].Name; n != "" && n != "~recv" {
						p.Sig.Params[i].Name = n
					}
				}
			}
			return nil
		}
		if user == nil && e.ReadsArguments() {
			return fmt.Errorf("read parameters from DWARF: %v (add signature:)", err)
		}
	}
	if user == nil {
		if !e.ReadsArguments() {
			// A count or duration of the call alone: the probes sit on the
			// function's entry and RET sites, which .gopclntab and the
			// machine code give without any type information. Sig stays
			// empty: nothing is placed in it.
			return nil
		}
		return fmt.Errorf("signature: the binary has no DWARF, so the parameters and results that %s read are unknown (add signature: \"func(...) ...\" as in the source)", e.argumentReaders())
	}
	p.Sig = *user
	return nil
}

func compareSig(user, d symbols.Signature) error {
	if len(user.Params) != len(d.Params) {
		return fmt.Errorf("%d parameters given (receiver included), the function has %d", len(user.Params), len(d.Params))
	}
	for i := range user.Params {
		if us, ds := user.Params[i].Type.Shape(), d.Params[i].Type.Shape(); us != ds {
			return fmt.Errorf("parameter %d (%s) is %s, the function's (%s) is %s", i+1, user.Params[i].Name, user.Params[i].Type.Name, d.Params[i].Name, d.Params[i].Type.Name)
		}
	}
	if len(user.Results) != len(d.Results) {
		return fmt.Errorf("%d results given, the function has %d", len(user.Results), len(d.Results))
	}
	for i := range user.Results {
		if us, ds := user.Results[i].Type.Shape(), d.Results[i].Type.Shape(); us != ds {
			return fmt.Errorf("result %d is %s, the function's is %s", i+1, user.Results[i].Type.Name, d.Results[i].Type.Name)
		}
	}
	return nil
}

func loc(l symbols.Location) Loc {
	if l.Reg >= 0 {
		return Loc{Reg: l.Reg}
	}
	return Loc{Reg: -1, Stack: l.Stack}
}

func labelType(t *symbols.Type) (LabelType, bool) {
	switch t.Kind {
	case symbols.KindString:
		return LabelString, true
	case symbols.KindBool:
		return LabelBool, true
	case symbols.KindInt:
		return LabelInt, true
	case symbols.KindUint:
		return LabelUint, true
	}
	return 0, false
}

func paramNames(params []symbols.Assignment) string {
	var n []string
	for _, p := range params {
		if p.Name != "" && p.Name != "_" && p.Name != "~recv" {
			n = append(n, p.Name)
		}
	}
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

// placeLabel finds where the value named by src lives.
func placeLabel(name, srcText string, params []symbols.Assignment, maxLen int) (Label, error) {
	src, err := ParseSource(srcText)
	if err != nil {
		return Label{}, err
	}
	var a *symbols.Assignment
	for i := range params {
		if params[i].Name == src.Param {
			a = &params[i]
		}
	}
	if a == nil {
		return Label{}, fmt.Errorf("no parameter %q (parameters: %s)", src.Param, paramNames(params))
	}
	l := Label{Name: name, MaxLen: maxLen}
	partAt := func(o int64) (Loc, bool) {
		for _, pt := range a.Parts {
			if pt.Offset == o && pt.Float < 0 {
				return loc(pt), true
			}
		}
		return Loc{}, false
	}
	path, err := walkFields(src, srcText, a.Type, partAt)
	if err != nil {
		return Label{}, err
	}
	t, inValue, off, hops, base := path.t, path.inValue, path.off, path.hops, path.base
	lt, ok := labelType(t)
	if !ok {
		return Label{}, fmt.Errorf("%s has type %s; a label can be a string, bool or integer, or such a field of a struct behind a pointer (%s.Field)", srcText, t.Name, srcText)
	}
	if src.Type != "" && !src.HasOffset {
		if want := scalarTypes[src.Type]; want.Shape() != t.Shape() {
			return Label{}, fmt.Errorf("%s is %s, not %s", srcText, t.Name, src.Type)
		}
	}
	l.Type, l.Size = lt, int(t.Size)
	if !inValue {
		l.A, l.Hops = base, hops
		return l, nil
	}
	if a.Stack && len(a.Parts) == 0 {
		return Label{}, fmt.Errorf("%s: cannot locate parameter", srcText)
	}
	w, ok := partAt(off)
	if !ok {
		return Label{}, fmt.Errorf("%s: cannot locate parameter", srcText)
	}
	l.A = w
	if lt == LabelString {
		n, ok := partAt(off + 8)
		if !ok {
			return Label{}, fmt.Errorf("%s: cannot locate the string's length", srcText)
		}
		l.B = n
	}
	return l, nil
}

// fieldPath is where a label's value is once its field path is walked:
// inside the parameter's value (at off), or past a pointer in memory (from
// the pointer word base, through hops).
type fieldPath struct {
	t       *symbols.Type
	inValue bool
	off     int64
	hops    []int64
	base    Loc
}

// walkFields follows src's fields from the parameter's type t; partAt
// locates a word of the parameter's value.
func walkFields(src Source, srcText string, t *symbols.Type, partAt func(int64) (Loc, bool)) (fieldPath, error) {
	inValue := true
	var off int64
	var hops []int64
	var base Loc
	for i, fname := range src.Fields {
		last := i == len(src.Fields)-1
		if t.Kind == symbols.KindPointer {
			// Step through the pointer: its word is the next hop's base.
			if inValue {
				w, ok := partAt(off)
				if !ok {
					return fieldPath{}, fmt.Errorf("%s: cannot locate pointer %s", srcText, src.Param)
				}
				base, inValue = w, false
				hops = append(hops, 0)
			} else {
				hops = append(hops, 0)
			}
			if last && src.HasOffset {
				hops[len(hops)-1] += src.Offset
				ty := src.Type
				if ty == "" {
					ty = "string"
				}
				if t.Elem != nil {
					if f, ok := t.Elem.FieldByName(fname); ok {
						if f.Offset != src.Offset {
							return fieldPath{}, fmt.Errorf("%s: the binary says field %s is at offset %d, not %d (drop @%d)", srcText, fname, f.Offset, src.Offset, src.Offset)
						}
						if src.Type == "" {
							t = f.Type
							break
						}
					}
				}
				t = scalarTypes[ty]
				break
			}
			if t.Elem == nil || t.Elem.Kind != symbols.KindStruct {
				return fieldPath{}, fmt.Errorf("%s: the type %s of %s is unknown here (no DWARF): give the field's offset and type, e.g. %s.%s@16:string, or spell the struct in signature:", srcText, t.Name, strings.Join(append([]string{src.Param}, src.Fields[:i]...), "."), strings.Join(append([]string{src.Param}, src.Fields[:i]...), "."), fname)
			}
			t = t.Elem
		} else if t.Kind != symbols.KindStruct {
			return fieldPath{}, fmt.Errorf("%s: %s is a %s, which has no field %s", srcText, strings.Join(append([]string{src.Param}, src.Fields[:i]...), "."), t.Name, fname)
		}
		if last && src.HasOffset && inValue {
			return fieldPath{}, fmt.Errorf("%s: an @offset is only for fields behind a pointer", srcText)
		}
		f, ok := t.FieldByName(fname)
		if !ok {
			var names []string
			for _, f := range t.Fields {
				names = append(names, f.Name)
			}
			return fieldPath{}, fmt.Errorf("%s: %s has no field %s (fields: %s)", srcText, t.Name, fname, strings.Join(names, ", "))
		}
		if inValue {
			off += f.Offset
		} else {
			hops[len(hops)-1] += f.Offset
		}
		t = f.Type
	}
	return fieldPath{t: t, inValue: inValue, off: off, hops: hops, base: base}, nil
}
