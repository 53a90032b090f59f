package symbols

import "testing"

// BenchmarkIndexDWARFStructs: the struct index of a real server, from its
// DWARF already read (what each new executable pays once).
func BenchmarkIndexDWARFStructs(b *testing.B) {
	bin := open(b, "go126")
	d, err := bin.dwarfData()
	if err != nil {
		b.Fatal(err)
	}
	raw := bin.dwarfRaw
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := indexDWARFStructs(d, raw); err != nil {
			b.Fatal(err)
		}
	}
}
