package probes

// invalid sums a family's invalid events by reason label, every reason
// the family can report present.
func (r *readers) invalid(f *family) map[string]uint64 {
	out := make(map[string]uint64, len(f.invalid))
	for _, reason := range f.invalid {
		out[reason] = 0
	}
	for v := invalidStatus; v < numVerdicts; v++ {
		n := r.sum(func(c *readerCounts) uint64 { return c.invalid[f.kind][v].Load() })
		if n != 0 {
			out[invalidReasons[v]] += n
		}
	}
	return out
}
