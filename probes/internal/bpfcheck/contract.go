// Package bpfcheck checks the contract between a probe family's Go side and
// its BPF objects: every Go type that stands for a C struct against the
// objects' BTF (both architectures), the programs, maps and globals the Go
// side names, and the constants both sides share against the C sources
// and the BTF. Each family's tests describe the family (Family) and call
// Check; the committed objects are checked against the sources by this
// package's own test (TestCommittedObjectsMatchSources). It also holds the
// small reader of the BPF sources both use (csource.go).
package bpfcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// Family is one committed BPF collection and what the Go side expects of
// it.
type Family struct {
	Name string
	// Source is the .c file under bpf/ the objects are compiled from.
	Source string
	// Stem names the objects in the test's directory:
	// <Stem>_x86_bpfel.o and <Stem>_arm64_bpfel.o.
	Stem string
	// Load is the generated loader of this architecture's object.
	Load func() (*ebpf.CollectionSpec, error)
	// Event is the C struct of the family's events and GoEvent the Go type
	// the decoder reads it as.
	Event   string
	GoEvent any
	// ConfigMap is keyed by a u32 (PID or spec id) and holds Config, the
	// Go type the agent writes.
	ConfigMap string
	Config    any
	// StartMap holds the calls in flight: keyed by GoroutineKey, each
	// value starting with the call's u64 start time.
	StartMap string
	// InFlightMaps are the family's other maps of calls in flight
	// (Family.InFlightMaps), checked like StartMap.
	InFlightMaps []string
	Programs     []string
	// Types are further C structs and the Go types used for them, among
	// them event_header and goroutine_key (the manager's EventHeader and
	// GoroutineKey).
	Types map[string]any
	// LostEntries is the size of the lost-event counters the manager
	// creates for every collection (probes.MaxKinds).
	LostEntries int
	// Constants the Go side shares with the source: C enumerators or
	// #defines and the Go values.
	Constants []Constant
}

// Constant is one constant the BPF programs and the Go side both use.
type Constant struct {
	Name  string // the C enumerator or #define
	Value int64  // the Go side's value
}

// objectSuffix is bpf2go's name for an architecture in object names.
var objectSuffix = map[string]string{"amd64": "x86", "arm64": "arm64"}

// Specs returns the family's collection for every architecture, by
// bpf2go's suffix: the one its generated loader embeds for this one, the
// committed object for the other.
func (f Family) Specs(t *testing.T) map[string]*ebpf.CollectionSpec {
	t.Helper()
	out := map[string]*ebpf.CollectionSpec{}
	for goarch, suffix := range objectSuffix {
		var spec *ebpf.CollectionSpec
		var err error
		if goarch == runtime.GOARCH {
			spec, err = f.Load()
		} else {
			spec, err = ebpf.LoadCollectionSpec(f.Stem + "_" + suffix + "_bpfel.o")
		}
		if err != nil {
			t.Fatalf("%s (%s): %v", f.Name, suffix, err)
		}
		out[suffix] = spec
	}
	return out
}

// Check runs every check of the family.
func Check(t *testing.T, f Family) {
	t.Run("LayoutsMatchBTF", func(t *testing.T) { CheckLayouts(t, f) })
	t.Run("MatchesItsObjects", func(t *testing.T) { CheckObjects(t, f) })
	t.Run("ConstantsMatchC", func(t *testing.T) { CheckConstants(t, f) })
}

// CheckLayouts compares every Go type that stands for a C struct with that
// struct in every object's BTF: size, and each member's offset, size and
// name, recursively.
func CheckLayouts(t *testing.T, f Family) {
	for arch, spec := range f.Specs(t) {
		types := map[string]any{f.Event: f.GoEvent}
		for k, v := range f.Types {
			types[k] = v
		}
		for cname, gv := range types {
			var st *btf.Struct
			if err := spec.Types.TypeByName(cname, &st); err != nil {
				t.Errorf("%s (%s): struct %s: %v", f.Name, arch, cname, err)
				continue
			}
			for _, e := range compareLayout(cname, st, reflect.TypeOf(gv)) {
				t.Errorf("%s (%s): %s", f.Name, arch, e)
			}
		}
	}
}

// CheckObjects checks that what the family's Go side names and writes is
// in its objects: the programs it attaches, its config map (keyed by a
// u32, holding the Go type the agent writes), its map of calls in flight
// (keyed by goroutine_key, each value starting with the call's start time
// as the manager's sweep reads it), its event (starting with the header
// the readers decode), the rings and lost counters the manager creates for
// every family, and the wake-up threshold it sets.
func CheckObjects(t *testing.T, f Family) {
	for arch, spec := range f.Specs(t) {
		fail := func(format string, args ...any) {
			t.Errorf("%s (%s): %s", f.Name, arch, fmt.Sprintf(format, args...))
		}
		for _, p := range f.Programs {
			if spec.Programs[p] == nil {
				fail("no program %s", p)
			}
		}

		if ms := spec.Maps[f.ConfigMap]; ms == nil {
			fail("no config map %s", f.ConfigMap)
		} else {
			if btfTypeString(ms.Key) != "u32" {
				fail("config map %s: key %v, want u32", f.ConfigMap, ms.Key)
			}
			for _, e := range compareLayout(f.ConfigMap+" value", ms.Value, reflect.TypeOf(f.Config)) {
				fail("%s", e)
			}
		}

		for _, name := range append([]string{f.StartMap}, f.InFlightMaps...) {
			if ms := spec.Maps[name]; ms == nil {
				fail("no start map %s", name)
			} else if gk, ok := f.Types["goroutine_key"]; !ok {
				fail("no Go type for goroutine_key")
			} else {
				for _, e := range compareLayout(name+" key", ms.Key, reflect.TypeOf(gk)) {
					fail("%s", e)
				}
				if err := startsWithStartNs(ms.Value); err != nil {
					fail("start map %s: %v", name, err)
				}
			}
		}

		var ev *btf.Struct
		if err := spec.Types.TypeByName(f.Event, &ev); err != nil {
			fail("%v", err)
		} else if len(ev.Members) == 0 || ev.Members[0].Offset != 0 || btfTypeString(ev.Members[0].Type) != "struct event_header" {
			fail("%s does not start with struct event_header", f.Event)
		}

		// The maps the manager creates once and hands to every
		// collection (newRingSet): same type, key, value and size.
		if ms := spec.Maps["lost"]; ms == nil {
			fail("no map lost")
		} else if ms.Type != ebpf.PerCPUArray || ms.KeySize != 4 || ms.ValueSize != 8 || ms.MaxEntries != uint32(f.LostEntries) {
			fail("lost is %s key %d value %d max %d; the manager creates %s key 4 value 8 max %d",
				ms.Type, ms.KeySize, ms.ValueSize, ms.MaxEntries, ebpf.PerCPUArray, f.LostEntries)
		}
		if ms := spec.Maps["rings"]; ms == nil {
			fail("no map rings")
		} else if ms.Type != ebpf.ArrayOfMaps || ms.KeySize != 4 || ms.InnerMap == nil || ms.InnerMap.Type != ebpf.RingBuf {
			fail("rings is not an array of ring buffers keyed by u32")
		}
		if v := spec.Variables["wake_bytes"]; v == nil || v.Size() != 8 {
			fail("no 8-byte global wake_bytes")
		}
	}
}

// CheckConstants compares the Go side's constants with the C source
// (#define or enum), and with the committed objects' BTF. Every enumerator
// must be in the BTF of every object compiled from its source (the sources
// declare an unused pointer to each enum so that clang emits it), which
// also makes TestCommittedObjectsMatchSources compare its value with the
// source. A #define is not in BTF: the only ones shared are the userfunc
// limits, which are also array lengths and compared as such (ArrayLen).
func CheckConstants(t *testing.T, f Family) {
	u, err := ParseCUnit(filepath.Join(ModuleRoot(t), "bpf", f.Source), "__TARGET_ARCH_x86")
	if err != nil {
		t.Fatal(err)
	}
	specs := f.Specs(t)
	for _, c := range f.Constants {
		v, where, err := u.constant(c.Name)
		if err != nil {
			t.Error(err)
			continue
		}
		if v != c.Value {
			t.Errorf("%s (%s, in %s) is %d, the Go side uses %d", c.Name, where, f.Source, v, c.Value)
		}
		for _, spec := range specs {
			bv, ok := btfEnumerator(spec, c.Name)
			switch {
			case !ok && strings.HasPrefix(where, "enum "):
				// An enum only code uses is not in BTF: the source
				// declares a pointer to it (const enum x *unused_x).
				t.Errorf("%s (%s) is not in the BTF of the object compiled from %s: declare an unused pointer to the enum", c.Name, where, f.Source)
			case ok && bv != c.Value:
				t.Errorf("%s is %d in the object compiled from %s, the Go side uses %d", c.Name, bv, f.Source, c.Value)
			}
		}
	}
}

// SameLayout reports how two Go types that stand for one C struct differ
// (field names, types and offsets): a hand-written type and the one bpf2go
// generated in another package, which Go will not convert into each other
// (a blank field makes them different types).
func SameLayout(a, b any) []string {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	if ta.Size() != tb.Size() || ta.NumField() != tb.NumField() {
		return []string{fmt.Sprintf("%v: size %d, %d fields; %v: size %d, %d fields", ta, ta.Size(), ta.NumField(), tb, tb.Size(), tb.NumField())}
	}
	var errs []string
	for i := 0; i < ta.NumField(); i++ {
		fa, fb := ta.Field(i), tb.Field(i)
		if fa.Name != fb.Name || fa.Offset != fb.Offset || fa.Type != fb.Type {
			errs = append(errs, fmt.Sprintf("field %d: %s %v at %d in %v, %s %v at %d in %v", i, fa.Name, fa.Type, fa.Offset, ta, fb.Name, fb.Type, fb.Offset, tb))
		}
	}
	return errs
}

// CheckInFlightHashes checks that every map of the family's calls in
// flight is a plain hash: an LRU map would evict a call in flight silently,
// where a plain hash lets the program count a start it cannot store.
func CheckInFlightHashes(t *testing.T, f Family) {
	for arch, spec := range f.Specs(t) {
		for _, name := range append([]string{f.StartMap}, f.InFlightMaps...) {
			if ms := spec.Maps[name]; ms != nil && ms.Type != ebpf.Hash {
				t.Errorf("%s (%s): map of calls in flight %s is %s, want %s", f.Name, arch, name, ms.Type, ebpf.Hash)
			}
		}
	}
}

// startsWithStartNs checks that a start map's value is the call's start
// time or begins with it (dropStarts reads the first 8 bytes).
func startsWithStartNs(v btf.Type) error {
	switch u := btf.UnderlyingType(v).(type) {
	case *btf.Int:
		if u.Size == 8 {
			return nil
		}
	case *btf.Struct:
		if len(u.Members) > 0 && u.Members[0].Name == "start_ns" && u.Members[0].Offset == 0 {
			if n, err := btf.Sizeof(u.Members[0].Type); err == nil && n == 8 {
				return nil
			}
		}
	}
	return fmt.Errorf("value %v does not begin with a u64 start_ns", v)
}

// btfEnumerator looks an enumerator up in every enum of an object's BTF.
func btfEnumerator(spec *ebpf.CollectionSpec, name string) (int64, bool) {
	for typ, err := range spec.Types.All() {
		if err != nil {
			return 0, false
		}
		if e, ok := typ.(*btf.Enum); ok {
			for _, v := range e.Values {
				if v.Name == name {
					return int64(v.Value), true
				}
			}
		}
	}
	return 0, false
}

// ArrayLen returns the length of the array member "struct.member" (with
// a trailing "[]", of the array inside it).
func ArrayLen(spec *ebpf.CollectionSpec, path string) (int, error) {
	sname, mname, _ := strings.Cut(path, ".")
	inner := strings.HasSuffix(mname, "[]")
	mname = strings.TrimSuffix(mname, "[]")
	var st *btf.Struct
	if err := spec.Types.TypeByName(sname, &st); err != nil {
		return 0, err
	}
	for _, m := range st.Members {
		if m.Name != mname {
			continue
		}
		a, ok := m.Type.(*btf.Array)
		if ok && inner {
			a, ok = a.Type.(*btf.Array)
		}
		if !ok {
			return 0, fmt.Errorf("%s is not an array", path)
		}
		return int(a.Nelems), nil
	}
	return 0, fmt.Errorf("%s: no such member", path)
}

// compareLayout compares a BTF type with the Go type that stands for it:
// sizes; for structs, every member's offset and name (bpf2go's spelling
// of it; a blank Go field for a C member named _…), recursively; for
// arrays, lengths; for integers, signedness (except char). Go fields of
// size 0 (structs.HostLayout) and blank padding where C has a gap are
// skipped.
func compareLayout(path string, bt btf.Type, gt reflect.Type) []string {
	var errs []string
	fail := func(format string, args ...any) {
		errs = append(errs, path+": "+fmt.Sprintf(format, args...))
	}
	bt = btf.UnderlyingType(bt)
	size, err := btf.Sizeof(bt)
	if err != nil {
		fail("%v", err)
		return errs
	}
	if uintptr(size) != gt.Size() {
		fail("%d bytes in C, %d in Go (%s)", size, gt.Size(), gt)
		return errs
	}
	switch b := bt.(type) {
	case *btf.Struct:
		if gt.Kind() != reflect.Struct {
			fail("a struct in C, %s in Go", gt)
			return errs
		}
		var fields []reflect.StructField
		for i := 0; i < gt.NumField(); i++ {
			if f := gt.Field(i); f.Type.Size() != 0 {
				fields = append(fields, f)
			}
		}
		j := 0
		for _, m := range b.Members {
			if m.BitfieldSize != 0 {
				fail("bitfield %s", m.Name)
				continue
			}
			off := uintptr(m.Offset.Bytes())
			for j < len(fields) && fields[j].Offset < off && fields[j].Name == "_" {
				j++ // padding bpf2go adds for a gap in C
			}
			if j >= len(fields) || fields[j].Offset != off {
				fail("member %s at %d has no Go field at that offset", m.Name, off)
				continue
			}
			f := fields[j]
			j++
			switch {
			case f.Name == "_" && strings.HasPrefix(m.Name, "_"):
			case normName(f.Name) != normName(m.Name):
				fail("member %s at %d is %s in Go", m.Name, off, f.Name)
				continue
			}
			errs = append(errs, compareLayout(path+"."+m.Name, m.Type, f.Type)...)
		}
		for ; j < len(fields); j++ {
			if fields[j].Name != "_" {
				fail("Go field %s at %d is not in C", fields[j].Name, fields[j].Offset)
			}
		}
	case *btf.Array:
		if gt.Kind() != reflect.Array || gt.Len() != int(b.Nelems) {
			fail("[%d] in C, %s in Go", b.Nelems, gt)
			return errs
		}
		errs = append(errs, compareLayout(path+"[]", b.Type, gt.Elem())...)
	case *btf.Int:
		signed := false
		switch gt.Kind() {
		case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			signed = true
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Bool:
		default:
			fail("an integer in C, %s in Go", gt)
			return errs
		}
		if b.Encoding&btf.Char == 0 && (b.Encoding&btf.Signed != 0) != signed {
			fail("%s in C, %s in Go", b.Name, gt)
		}
	case *btf.Enum:
		switch gt.Kind() {
		case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		default:
			fail("enum %s in C, %s in Go", b.Name, gt)
		}
	case *btf.Pointer:
		if gt.Kind() != reflect.Uint64 && gt.Kind() != reflect.Uintptr && gt.Kind() != reflect.Pointer {
			fail("a pointer in C, %s in Go", gt)
		}
	default:
		fail("%s is not compared", bt)
	}
	return errs
}

// normName is a member's name as C and bpf2go's Go spelling of it share
// it: g_panic and G_panic, inner2_type and Inner2Type.
func normName(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "_", ""))
}

// btfTypeString spells a type as it is declared in C: typedef and struct
// names, pointers as a trailing *, array lengths outermost first.
func btfTypeString(t btf.Type) string {
	switch t := t.(type) {
	case *btf.Typedef:
		return t.Name
	case *btf.Int:
		return t.Name
	case *btf.Struct:
		if t.Name == "" {
			return "struct {…}"
		}
		return "struct " + t.Name
	case *btf.Union:
		return "union " + t.Name
	case *btf.Enum:
		return "enum " + t.Name
	case *btf.Pointer:
		return btfTypeString(t.Target) + "*"
	case *btf.Const:
		return "const " + btfTypeString(t.Type)
	case *btf.Volatile:
		return "volatile " + btfTypeString(t.Type)
	case *btf.Array:
		dims := ""
		var elem btf.Type = t
		for {
			a, ok := elem.(*btf.Array)
			if !ok {
				break
			}
			dims += fmt.Sprintf("[%d]", a.Nelems)
			elem = a.Type
		}
		return btfTypeString(elem) + dims
	}
	return fmt.Sprintf("%T", t)
}

// ModuleRoot returns the directory of blindspot's go.mod, above the
// test's working directory.
func ModuleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
