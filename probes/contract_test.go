package probes

import (
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/blindspot-dev/blindspot/probes/goerror"
	"github.com/blindspot-dev/blindspot/probes/userfunc"
)

// What C and Go share, and how each part is kept true:
//
//   - structs bpf2go generates (-type, map keys and values) are the Go
//     types; TestSharedLayoutsMatchBTF compares them with every committed
//     object's BTF (both architectures) anyway, since a hand edit of a
//     generated file would go unnoticed otherwise;
//   - the few Go types that stand for C structs bpf2go emits only nested
//     inside others (eventHeader, goroutineKey, goerror.Error) are converted from
//     the generated types below, which compiles only while they are the
//     same, and compared with the BTF of every object;
//   - every family's programs, maps and globals the Go side names exist in
//     its object with the types Go reads and writes (TestFamiliesMatchTheirObjects);
//   - constants (event kinds, flags, operations, label types, outcomes)
//     are C enums, each made visible in BTF by an unused pointer to it, and
//     compared with the C sources and every object's BTF; the userfunc
//     limits are #defines, compared with the sources and with the array
//     lengths in BTF (TestSharedConstantsMatchC);
//   - the committed objects are what the sources compile to
//     (TestCommittedObjectsMatchSources, objects_test.go).

// The hand-written Go types for C structs are the types bpf2go generated
// for them where they appear nested in a generated type.
var (
	_ = [...]eventHeader{
		eventHeader(httpServerHttpServerEvent{}.Hdr),
		eventHeader(httpClientHttpClientEvent{}.Hdr),
		eventHeader(dbDbEvent{}.Hdr),
		eventHeader(userFuncUfEvent{}.Hdr),
	}
	_ = [...]goroutineKey{
		goroutineKey(httpServerGoroutineKey{}),
		goroutineKey(httpClientGoroutineKey{}),
		goroutineKey(dbGoroutineKey{}),
		goroutineKey(userFuncGoroutineKey{}),
	}
)

// goerror.Error is viewed through unsafe.Pointer in place of the types
// bpf2go generated for the events' Err fields (Go converts no struct with
// a blank field between packages): they must be the same, field by field.
func TestGoErrorIsTheGeneratedType(t *testing.T) {
	want := reflect.TypeOf(goerror.Error{})
	for _, gen := range []any{httpClientHttpClientEvent{}.Err, dbDbEvent{}.Err} {
		got := reflect.TypeOf(gen)
		if got.Size() != want.Size() || got.NumField() != want.NumField() {
			t.Fatalf("%v: size %d, %d fields; goerror.Error: size %d, %d fields", got, got.Size(), got.NumField(), want.Size(), want.NumField())
		}
		for i := 0; i < want.NumField(); i++ {
			g, w := got.Field(i), want.Field(i)
			if g.Name != w.Name || g.Offset != w.Offset || g.Type != w.Type {
				t.Errorf("field %d: %s %v at %d, goerror.Error has %s %v at %d", i, g.Name, g.Type, g.Offset, w.Name, w.Type, w.Offset)
			}
		}
	}
}

// bpfFamily is one committed BPF collection and what the Go side expects
// of it.
type bpfFamily struct {
	name string
	// stem names the objects: <stem>_x86_bpfel.o and <stem>_arm64_bpfel.o.
	stem string
	load func() (*ebpf.CollectionSpec, error)
	// event is the C struct of the family's events and the Go type the
	// decoder reads it as.
	event   string
	goEvent any
	// configMap is keyed by what the agent puts (PID or spec id) and holds
	// config, the Go type it writes.
	configMap string
	config    any
	startMap  string
	programs  []string
	// types are further C structs and the generated Go types used for them.
	types map[string]any
}

func bpfFamilies() []bpfFamily {
	programs := func(f *Family) []string {
		var out []string
		for _, p := range f.Probes {
			out = append(out, p.Program)
		}
		return out
	}
	srv, cl, db := HTTPServerFamily(), HTTPClientFamily(nil), DBFamily(nil, nil)
	return []bpfFamily{
		{
			name: srv.Name, stem: "httpserver", load: srv.Spec,
			event: "http_server_event", goEvent: httpServerHttpServerEvent{},
			configMap: srv.ConfigMap, config: httpServerHttpServerOffsets{},
			startMap: srv.StartMap, programs: programs(srv),
		},
		{
			name: cl.Name, stem: "httpclient", load: cl.Spec,
			event: "http_client_event", goEvent: httpClientHttpClientEvent{},
			configMap: cl.ConfigMap, config: httpClientHttpClientOffsets{},
			startMap: cl.StartMap, programs: programs(cl),
			types: map[string]any{"go_error": goerror.Error{}},
		},
		{
			name: db.Name, stem: "db", load: db.Spec,
			event: "db_event", goEvent: dbDbEvent{},
			configMap: db.ConfigMap, config: dbDbOffsets{},
			startMap: db.StartMap, programs: programs(db),
			types: map[string]any{"go_error": goerror.Error{}},
		},
		{
			// As Manager.loadUserFuncs and userProc attach them.
			name: userFamilyName, stem: "userfunc", load: loadUserFunc,
			event: "uf_event", goEvent: userFuncUfEvent{},
			configMap: "uf_specs", config: userFuncUfSpec{},
			startMap: "uf_starts", programs: []string{"uprobe_uf_enter", "uprobe_uf_exit", "uprobe_uf_count"},
			types: map[string]any{"uf_label": userFuncUfLabel{}, "uf_loc": userFuncUfLoc{}},
		},
	}
}

// objectSuffix is bpf2go's name for an architecture in object names.
var objectSuffix = map[string]string{"amd64": "x86", "arm64": "arm64"}

// specs returns the family's collection for every architecture: the one
// its generated loader embeds for this one, the committed object for the
// other.
func (bf bpfFamily) specs(t *testing.T) map[string]*ebpf.CollectionSpec {
	t.Helper()
	out := map[string]*ebpf.CollectionSpec{}
	for goarch, suffix := range objectSuffix {
		var spec *ebpf.CollectionSpec
		var err error
		if goarch == runtime.GOARCH {
			spec, err = bf.load()
		} else {
			spec, err = ebpf.LoadCollectionSpec(bf.stem + "_" + suffix + "_bpfel.o")
		}
		if err != nil {
			t.Fatalf("%s (%s): %v", bf.name, suffix, err)
		}
		out[suffix] = spec
	}
	return out
}

// TestSharedLayoutsMatchBTF compares every Go type that stands for a C
// struct with that struct in every object's BTF: size, and each member's
// offset, size and name, recursively.
func TestSharedLayoutsMatchBTF(t *testing.T) {
	for _, bf := range bpfFamilies() {
		for arch, spec := range bf.specs(t) {
			types := map[string]any{
				"event_header":  eventHeader{},
				"goroutine_key": goroutineKey{},
				bf.event:        bf.goEvent,
			}
			for k, v := range bf.types {
				types[k] = v
			}
			for cname, gv := range types {
				var st *btf.Struct
				if err := spec.Types.TypeByName(cname, &st); err != nil {
					t.Errorf("%s (%s): struct %s: %v", bf.name, arch, cname, err)
					continue
				}
				for _, e := range compareLayout(cname, st, reflect.TypeOf(gv)) {
					t.Errorf("%s (%s): %s", bf.name, arch, e)
				}
			}
		}
	}
}

// TestFamiliesMatchTheirObjects checks that what each family's Go side
// names and writes is in its objects: the programs it attaches, its config
// map (keyed by a u32, holding the Go type the agent writes), its map of
// calls in flight (keyed by goroutineKey, each value starting with the
// call's start time as dropStarts reads it), its event (starting with the
// header the readers decode), the rings and lost counters the manager
// creates for every family, and the wake-up threshold it sets.
func TestFamiliesMatchTheirObjects(t *testing.T) {
	for _, bf := range bpfFamilies() {
		for arch, spec := range bf.specs(t) {
			fail := func(format string, args ...any) {
				t.Errorf("%s (%s): %s", bf.name, arch, fmt.Sprintf(format, args...))
			}
			for _, p := range bf.programs {
				if spec.Programs[p] == nil {
					fail("no program %s", p)
				}
			}

			if ms := spec.Maps[bf.configMap]; ms == nil {
				fail("no config map %s", bf.configMap)
			} else {
				if btfTypeString(ms.Key) != "u32" {
					fail("config map %s: key %v, want u32", bf.configMap, ms.Key)
				}
				for _, e := range compareLayout(bf.configMap+" value", ms.Value, reflect.TypeOf(bf.config)) {
					fail("%s", e)
				}
			}

			if ms := spec.Maps[bf.startMap]; ms == nil {
				fail("no start map %s", bf.startMap)
			} else {
				for _, e := range compareLayout(bf.startMap+" key", ms.Key, reflect.TypeOf(goroutineKey{})) {
					fail("%s", e)
				}
				if err := startsWithStartNs(ms.Value); err != nil {
					fail("start map %s: %v", bf.startMap, err)
				}
			}

			var ev *btf.Struct
			if err := spec.Types.TypeByName(bf.event, &ev); err != nil {
				fail("%v", err)
			} else if len(ev.Members) == 0 || ev.Members[0].Offset != 0 || btfTypeString(ev.Members[0].Type) != "struct event_header" {
				fail("%s does not start with struct event_header", bf.event)
			}

			// The maps the manager creates once and hands to every
			// collection (newRingSet): same type, key, value and size.
			if ms := spec.Maps["lost"]; ms == nil {
				fail("no map lost")
			} else if ms.Type != ebpf.PerCPUArray || ms.KeySize != 4 || ms.ValueSize != 8 || ms.MaxEntries != maxKinds {
				fail("lost is %s key %d value %d max %d; the manager creates %s key 4 value 8 max %d",
					ms.Type, ms.KeySize, ms.ValueSize, ms.MaxEntries, ebpf.PerCPUArray, maxKinds)
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

// TestDropStartsReadsKeyAndStart runs dropStarts on a real map of calls
// in flight, written with the generated key and value types: it must see
// each entry's PID and start time.
func TestDropStartsReadsKeyAndStart(t *testing.T) {
	requireBPF(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Type:       ebpf.Hash,
		KeySize:    uint32(unsafe.Sizeof(httpServerGoroutineKey{})),
		ValueSize:  uint32(unsafe.Sizeof(httpServerHttpStart{})),
		MaxEntries: 16,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	put := func(tgid, pad uint32, g, start uint64) {
		k := httpServerGoroutineKey{Tgid: tgid, Pad: pad, G: g}
		if err := m.Put(k, httpServerHttpStart{StartNs: start, W: ^uint64(0), Req: ^uint64(0)}); err != nil {
			t.Fatal(err)
		}
	}
	put(7, 0, 0x1000, 100)
	put(7, 3, 0x2000, 900)
	put(8, 0, 0x1000, 200)
	put(9, 1, 0x3000, 5000)
	f := &loadedFamily{starts: m}
	type seen struct {
		tgid  uint32
		start uint64
	}
	var got []seen
	f.dropStarts(func(tgid uint32, start uint64) bool {
		got = append(got, seen{tgid, start})
		return tgid == 7 || start < 300
	})
	want := map[seen]bool{{7, 100}: true, {7, 900}: true, {8, 200}: true, {9, 5000}: true}
	if len(got) != len(want) {
		t.Fatalf("dropStarts saw %v, want %v", got, want)
	}
	for _, s := range got {
		if !want[s] {
			t.Errorf("dropStarts saw %+v, want one of %v", s, want)
		}
	}
	var k httpServerGoroutineKey
	var v httpServerHttpStart
	var left []httpServerGoroutineKey
	for it := m.Iterate(); it.Next(&k, &v); {
		left = append(left, k)
	}
	if len(left) != 1 || left[0] != (httpServerGoroutineKey{Tgid: 9, Pad: 1, G: 0x3000}) {
		t.Errorf("left %+v, want only {9 1 0x3000}", left)
	}
}

// sharedConstant is a constant the BPF programs and the Go side both use.
type sharedConstant struct {
	source string // the .c file whose translation unit declares it
	name   string // the C enumerator or #define
	value  int64  // the Go side's value
}

var sharedConstants = []sharedConstant{
	// Event kinds: the first field of every event, and the index of the
	// lost counters (of which there are FAMILY_MAX).
	{"http_server.c", "FAMILY_HTTP_SERVER", kindHTTPServer},
	{"http_client.c", "FAMILY_HTTP_CLIENT", kindHTTPClient},
	{"db.c", "FAMILY_DB", kindDB},
	{"userfunc.c", "FAMILY_USER_FUNC", kindUserFunc},
	{"http_server.c", "FAMILY_MAX", maxKinds},
	// Flags of the events' header.
	{"http_server.c", "HTTP_FLAG_PANIC", httpFlagPanic},
	{"http_server.c", "HTTP_FLAG_STATUS", httpFlagStatus},
	{"http_server.c", "HTTP_FLAG_HTTP2", httpFlagHTTP2},
	{"http_client.c", "HTTPC_FLAG_RESPONSE", httpcFlagResponse},
	// db_event.op.
	{"db.c", "DB_OP_QUERY", dbOpQuery},
	{"db.c", "DB_OP_BEGIN", dbOpBegin},
	{"db.c", "DB_OP_COMMIT", dbOpCommit},
	{"db.c", "DB_OP_ROLLBACK", dbOpRollback},
	{"db.c", "DB_OP_WAIT", dbOpWait},
	// uf_label.type, uf_spec.outcome, uf_event.outcome and the limits.
	{"userfunc.c", "UF_STRING", int64(userfunc.LabelString)},
	{"userfunc.c", "UF_INT", int64(userfunc.LabelInt)},
	{"userfunc.c", "UF_UINT", int64(userfunc.LabelUint)},
	{"userfunc.c", "UF_BOOL", int64(userfunc.LabelBool)},
	{"userfunc.c", "UF_OUTCOME_ERROR", int64(userfunc.OutcomeError)},
	{"userfunc.c", "UF_OUTCOME_BOOL", int64(userfunc.OutcomeBool)},
	{"userfunc.c", "UF_SUCCESS", ufSuccess},
	{"userfunc.c", "UF_FAILURE", ufFailure},
	{"userfunc.c", "UF_MAX_LABELS", userfunc.MaxLabels},
	{"userfunc.c", "UF_MAX_HOPS", userfunc.MaxHops},
	{"userfunc.c", "UF_STR_MAX", userfunc.MaxString},
}

// TestSharedConstantsMatchC compares the Go side's constants with the C
// sources (#define or enum), and with the committed objects' BTF. Every
// enumerator must be in the BTF of every object compiled from its source
// (the sources declare an unused pointer to each enum so that clang emits
// it), which also makes TestCommittedObjectsMatchSources compare its value
// with the source. A #define is not in BTF: the only ones left are the
// userfunc limits, which are also array lengths and compared as such.
func TestSharedConstantsMatchC(t *testing.T) {
	root := moduleRoot(t)
	units := map[string]*cUnit{}
	objects := map[string][]*ebpf.CollectionSpec{}
	for _, bf := range bpfFamilies() {
		for _, spec := range bf.specs(t) {
			objects[bf.source()] = append(objects[bf.source()], spec)
		}
	}
	for _, c := range sharedConstants {
		u := units[c.source]
		if u == nil {
			var err error
			if u, err = parseCUnit(filepath.Join(root, "bpf", c.source), "__TARGET_ARCH_x86"); err != nil {
				t.Fatal(err)
			}
			units[c.source] = u
		}
		v, where, err := u.constant(c.name)
		if err != nil {
			t.Error(err)
			continue
		}
		if v != c.value {
			t.Errorf("%s (%s, in %s) is %d, the Go side uses %d", c.name, where, c.source, v, c.value)
		}
		for _, spec := range objects[c.source] {
			bv, ok := btfEnumerator(spec, c.name)
			switch {
			case !ok && strings.HasPrefix(where, "enum "):
				// An enum only code uses is not in BTF: the source
				// declares a pointer to it (const enum x *unused_x).
				t.Errorf("%s (%s) is not in the BTF of the object compiled from %s: declare an unused pointer to the enum", c.name, where, c.source)
			case ok && bv != c.value:
				t.Errorf("%s is %d in the object compiled from %s, the Go side uses %d", c.name, bv, c.source, c.value)
			}
		}
	}

	// The limits are also array lengths in the objects' BTF.
	for _, spec := range objects["userfunc.c"] {
		for _, l := range []struct {
			path string
			want int
		}{
			{"uf_spec.labels", userfunc.MaxLabels},
			{"uf_label.off", userfunc.MaxHops},
			{"uf_values.num", userfunc.MaxLabels},
			{"uf_values.str", userfunc.MaxLabels},
			{"uf_values.str[]", userfunc.MaxString},
		} {
			if n, err := btfArrayLen(spec, l.path); err != nil {
				t.Error(err)
			} else if n != l.want {
				t.Errorf("%s has %d elements, the Go side's limit is %d", l.path, n, l.want)
			}
		}
	}
}

// source is the .c file the family's objects are compiled from.
func (bf bpfFamily) source() string {
	return map[string]string{
		"httpserver": "http_server.c", "httpclient": "http_client.c", "db": "db.c", "userfunc": "userfunc.c",
	}[bf.stem]
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

// btfArrayLen returns the length of the array member "struct.member" (with
// a trailing "[]", of the array inside it).
func btfArrayLen(spec *ebpf.CollectionSpec, path string) (int, error) {
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
