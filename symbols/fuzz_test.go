package symbols

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"github.com/blindspot-dev/blindspot/test/crafted"
)

// makePclntab builds a small valid Go 1.18+ (or, with magic 0xfffffffa,
// 1.16) pclntab for the given names; function i starts at 0x40*i.
func makePclntab(magic uint32, textStart uint64, names []string) []byte {
	le := binary.LittleEndian
	var nameTab []byte
	nameOffs := make([]uint32, len(names))
	for i, n := range names {
		nameOffs[i] = uint32(len(nameTab))
		nameTab = append(append(nameTab, n...), 0)
	}
	nw := 8
	if magic == pclnMagic116 {
		nw = 7
	}
	hdrLen := uint64(8 + nw*8)
	funcnameOff := hdrLen
	pclnOff := funcnameOff + uint64(len(nameTab))
	var pcln []byte
	nf := len(names)
	if magic == pclnMagic116 {
		tab := make([]byte, (nf+1)*16)
		var funcs []byte
		for i := 0; i <= nf; i++ {
			le.PutUint64(tab[i*16:], textStart+uint64(0x40*i))
			if i < nf {
				le.PutUint64(tab[i*16+8:], uint64(len(tab)+len(funcs)))
				f := make([]byte, 12)
				le.PutUint64(f, textStart+uint64(0x40*i))
				le.PutUint32(f[8:], nameOffs[i])
				funcs = append(funcs, f...)
			}
		}
		pcln = append(tab, funcs...)
	} else {
		tab := make([]byte, (nf+1)*8)
		var funcs []byte
		for i := 0; i <= nf; i++ {
			le.PutUint32(tab[i*8:], uint32(0x40*i))
			if i < nf {
				le.PutUint32(tab[i*8+4:], uint32(len(tab)+len(funcs)))
				f := make([]byte, 40)
				if magic == pclnMagic120 {
					f = make([]byte, 44)
				}
				le.PutUint32(f, uint32(0x40*i))
				le.PutUint32(f[4:], nameOffs[i])
				funcs = append(funcs, f...)
			}
		}
		pcln = append(tab, funcs...)
	}
	out := make([]byte, hdrLen)
	le.PutUint32(out, magic)
	out[6], out[7] = 1, 8
	words := []uint64{uint64(nf), 0, textStart, funcnameOff, 0, 0, 0, pclnOff}
	if magic == pclnMagic116 {
		words = []uint64{uint64(nf), 0, funcnameOff, 0, 0, 0, pclnOff}
	}
	for i, w := range words {
		le.PutUint64(out[8+8*i:], w)
	}
	return append(append(out, nameTab...), pcln...)
}

func TestParsePclntabSynthetic(t *testing.T) {
	names := []string{"main.a", "main.b", "runtime.c"}
	for _, tc := range []struct {
		magic            uint32
		hdrText, fallbck uint64
	}{
		{pclnMagic118, 0x401000, 0},
		{pclnMagic120, 0, 0x401000}, // 1.20+ files leave textStart zero
		{pclnMagic116, 0x401000, 0},
	} {
		data := makePclntab(tc.magic, tc.hdrText, names)
		funcs, err := parsePclntab(data, tc.fallbck)
		if err != nil {
			t.Fatalf("%#x: %v", tc.magic, err)
		}
		if len(funcs) != 3 {
			t.Fatalf("%#x: %v", tc.magic, funcs)
		}
		for i, f := range funcs {
			want := Func{Name: names[i], Entry: 0x401000 + uint64(0x40*i), End: 0x401000 + uint64(0x40*(i+1))}
			if f.Func != want {
				t.Errorf("%#x: func %d = %+v, want %+v", tc.magic, i, f, want)
			}
		}
		for n := 0; n < len(data); n++ {
			if _, err := parsePclntab(data[:n], tc.fallbck); err == nil {
				t.Errorf("%#x: truncated to %d accepted", tc.magic, n)
			}
		}
	}
}

func FuzzPclntab(f *testing.F) {
	for _, m := range []uint32{pclnMagic116, pclnMagic118, pclnMagic120} {
		f.Add(makePclntab(m, 0x401000, []string{"main.main", "main.f", "runtime.g"}), uint64(0x401000))
	}
	f.Add([]byte{0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8}, uint64(0))
	f.Add(crafted.SharedNamePclntab(4096, 0x401000), uint64(0))
	f.Add(crafted.OverlappingNamesPclntab(4096, 0x401000), uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, text uint64) {
		var funcs []pclnFunc
		var err error
		n := allocated(func() {
			funcs, err = parsePclntab(data, text)
			if err == nil {
				nameABI0(funcs)
			}
		})
		// The function list (48 bytes a function, at most one a
		// function-table entry of 8 bytes), the names (one copy), the
		// ABI0 names (at most the names again) and the maps.
		if limit := uint64(parseFactor*len(data) + 64<<10); n > limit {
			t.Fatalf("parsing %d bytes allocated %d (%.1fx)", len(data), n, float64(n)/float64(len(data)))
		}
		if err != nil {
			return
		}
		for _, fn := range funcs {
			if fn.End < fn.Entry {
				t.Fatalf("end before entry: %+v", fn)
			}
		}
	})
}

// FuzzNewBinary parses whole files. Its inputs are megabytes, so run it
// with -fuzzminimizetime=0 (or a few seconds): minimizing a new input
// otherwise stalls the fuzzer for minutes.
func FuzzNewBinary(f *testing.F) {
	path := tinyTarget(f)
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data[:64])
	f.Add(data[:4096])
	f.Add(data[:len(data)/2])
	f.Add(data)
	mutated := bytes.Clone(data)
	// Corrupt the section header table offset region and the pclntab header.
	if i := bytes.Index(mutated, []byte{0xf1, 0xff, 0xff, 0xff, 0, 0}); i >= 0 {
		mutated[i+8] ^= 0xff
	}
	f.Add(mutated)
	for _, v := range crafted.Variants(64 << 10) {
		if d, err := v.Make(data); err == nil {
			f.Add(d)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Memory and time bounded by the input's size, whatever it claims.
		b, err := checkAllocBound(t, data, func(b *Binary) {
			for _, name := range b.FuncNames() {
				fn, err := b.LookupFunc(name)
				if err != nil {
					t.Fatalf("listed %s not found: %v", name, err)
				}
				b.Sites(fn)
				b.FileOffset(fn.Entry)
				b.CheckSite(fn.Entry)
				break
			}
			exercise(b)
		})
		if err != nil {
			return
		}
		if f, err := b.LookupFunc("main.main"); err == nil {
			b.CheckSite(f.Entry)
		}
	})
}
