package probes

import (
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/blindspot-dev/blindspot/probes/internal/bpfcheck"
	"github.com/blindspot-dev/blindspot/probes/userfunc"
)

// What C and Go share, and how each part is kept true:
//
//   - structs bpf2go generates (-type, map keys and values) are the Go
//     types; each family's tests compare them with every committed
//     object's BTF (both architectures) anyway (bpfcheck.CheckLayouts),
//     since a hand edit of a generated file would go unnoticed otherwise;
//   - the few Go types that stand for C structs bpf2go emits only nested
//     inside others (EventHeader, GoroutineKey, goerror.Error) are
//     compared with the generated types field by field and with the BTF
//     of every object;
//   - every family's programs, maps and globals the Go side names exist in
//     its object with the types Go reads and writes (bpfcheck.CheckObjects);
//   - constants (event kinds, flags, operations, label types, outcomes)
//     are C enums, each made visible in BTF by an unused pointer to it, and
//     compared with the C sources and every object's BTF; the userfunc
//     limits are #defines, compared with the sources and with the array
//     lengths in BTF (bpfcheck.CheckConstants, TestUserFuncContract);
//   - the committed objects are what the sources compile to
//     (TestCommittedObjectsMatchSources, probes/internal/bpfcheck).
//
// This file checks the business functions' family, which the manager
// owns; every other family checks its own.

// The hand-written Go types for C structs are the types bpf2go generated
// for them where they appear nested in a generated type.
var (
	_ = EventHeader(userFuncUfEvent{}.Hdr)
	_ = GoroutineKey(userFuncGoroutineKey{})
)

// userFuncContract is the business functions' collection, as
// Manager.loadUserFuncs and userProc attach it.
func userFuncContract() bpfcheck.Family {
	return bpfcheck.Family{
		Name: userFamilyName, Source: "userfunc.c", Stem: "userfunc", Load: loadUserFunc,
		Event: "uf_event", GoEvent: userFuncUfEvent{},
		ConfigMap: "uf_specs", Config: userFuncUfSpec{},
		StartMap: "uf_starts", Programs: []string{"uprobe_uf_enter", "uprobe_uf_exit", "uprobe_uf_count"},
		Types: map[string]any{
			"event_header": EventHeader{}, "goroutine_key": GoroutineKey{},
			"uf_label": userFuncUfLabel{}, "uf_loc": userFuncUfLoc{},
		},
		LostEntries: MaxKinds,
		Constants: []bpfcheck.Constant{
			// The event kind: the first field of every event, and the
			// index of the lost counters (of which there are FAMILY_MAX).
			{Name: "FAMILY_USER_FUNC", Value: kindUserFunc},
			{Name: "FAMILY_MAX", Value: MaxKinds},
			// uf_label.type, uf_spec.outcome, uf_event.outcome and the limits.
			{Name: "UF_STRING", Value: int64(userfunc.LabelString)},
			{Name: "UF_INT", Value: int64(userfunc.LabelInt)},
			{Name: "UF_UINT", Value: int64(userfunc.LabelUint)},
			{Name: "UF_BOOL", Value: int64(userfunc.LabelBool)},
			{Name: "UF_OUTCOME_ERROR", Value: int64(userfunc.OutcomeError)},
			{Name: "UF_OUTCOME_BOOL", Value: int64(userfunc.OutcomeBool)},
			{Name: "UF_SUCCESS", Value: ufSuccess},
			{Name: "UF_FAILURE", Value: ufFailure},
			{Name: "UF_MAX_LABELS", Value: userfunc.MaxLabels},
			{Name: "UF_MAX_HOPS", Value: userfunc.MaxHops},
			{Name: "UF_STR_MAX", Value: userfunc.MaxString},
		},
	}
}

func TestUserFuncContract(t *testing.T) {
	f := userFuncContract()
	bpfcheck.Check(t, f)
	// The limits are also array lengths in the objects' BTF.
	for arch, spec := range f.Specs(t) {
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
			if n, err := bpfcheck.ArrayLen(spec, l.path); err != nil {
				t.Errorf("%s: %v", arch, err)
			} else if n != l.want {
				t.Errorf("%s: %s has %d elements, the Go side's limit is %d", arch, l.path, n, l.want)
			}
		}
	}
}

// TestDropStartsReadsKeyAndStart runs dropStarts on a real map of calls
// in flight, written with the generated key and value types (the business
// functions': every start map's value begins with start_ns): it must see
// each entry's PID and start time.
func TestDropStartsReadsKeyAndStart(t *testing.T) {
	requireBPF(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Type:       ebpf.Hash,
		KeySize:    uint32(unsafe.Sizeof(userFuncGoroutineKey{})),
		ValueSize:  uint32(unsafe.Sizeof(userFuncUfStart{})),
		MaxEntries: 16,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	put := func(tgid, pad uint32, g, start uint64) {
		k := userFuncGoroutineKey{Tgid: tgid, Pad: pad, G: g}
		if err := m.Put(k, userFuncUfStart{StartNs: start, Depth: ^uint64(0)}); err != nil {
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
	var k userFuncGoroutineKey
	var v userFuncUfStart
	var left []userFuncGoroutineKey
	for it := m.Iterate(); it.Next(&k, &v); {
		left = append(left, k)
	}
	if len(left) != 1 || left[0] != (userFuncGoroutineKey{Tgid: 9, Pad: 1, G: 0x3000}) {
		t.Errorf("left %+v, want only {9 1 0x3000}", left)
	}
}
