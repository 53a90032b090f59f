package probes

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
//     lengths in BTF (bpfcheck.CheckConstants, probes/userfunc's
//     TestContract);
//   - the committed objects are what the sources compile to
//     (TestCommittedObjectsMatchSources, probes/internal/bpfcheck).
//
// Every family checks its own contract in its package (TestContract).
