package probes

// A Field is one field of a struct as a BPF program reads it: its proven
// offset and its size in bytes.
type Field struct {
	Off, Size uint64
}

// Window returns the span of a struct that holds all the given fields, for
// a BPF program to read them with one bpf_probe_read_user (each read costs
// ~45 ns here whatever its size up to a few hundred bytes; see
// read_window in bpf/common.h): from the lowest field's offset rounded down
// to 8, so that the fields' words stay aligned in the copy, to the end of
// the highest field. ok is false, and the program reads each field alone,
// when there is no field, a field is empty, or the span is longer than limit
// (the program's room for it).
//
// The span lies inside the struct: every field does, and the struct's
// alignment, 8 on 64-bit for any struct holding a pointer, an int or a
// string (every struct the families read), keeps the rounded start in it.
func Window(limit uint64, fields ...Field) (off, n uint64, ok bool) {
	if len(fields) == 0 {
		return 0, 0, false
	}
	lo, hi := ^uint64(0), uint64(0)
	for _, f := range fields {
		end := f.Off + f.Size
		if f.Size == 0 || end < f.Off {
			return 0, 0, false
		}
		lo, hi = min(lo, f.Off), max(hi, end)
	}
	lo &^= 7
	if hi-lo > limit {
		return 0, 0, false
	}
	return lo, hi - lo, true
}
