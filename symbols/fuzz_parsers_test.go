package symbols

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"os"
	"testing"
)

// Fuzz targets for the parsers a whole-file input reaches too slowly:
// section headers, disassembly of probe sites, runtime type data and
// DWARF. Each must not panic, and allocate at most a small multiple of
// its input.

// FuzzSectionHeaders checks ELF headers and section names as NewBinary does
// before debug/elf reads them.
func FuzzSectionHeaders(f *testing.F) {
	data := readFile(f, tinyTarget(f))
	if ef, err := elf.Open(tinyTarget(f)); err == nil {
		// The ELF header, then the section headers and their names.
		sh := data[len(data)-len(ef.Sections)*64:]
		f.Add(append(append([]byte{}, data[:64]...), sh...))
		ef.Close()
	}
	f.Add(data[:64])
	f.Fuzz(func(t *testing.T, data []byte) {
		n := allocated(func() {
			if checkELF(bytesReader(data), int64(len(data))) == nil {
				NewBinary(bytesReader(data), "fuzz")
			}
		})
		if limit := uint64(parseFactor*len(data) + allocSlack); n > limit {
			t.Fatalf("%d bytes: allocated %d", len(data), n)
		}
	})
}

// FuzzSites disassembles arbitrary code as the probe-site finders,
// the site checker and the call-site finder do.
func FuzzSites(f *testing.F) {
	b, err := Open(tinyTarget(f))
	if err != nil {
		f.Fatal(err)
	}
	defer b.Close()
	main, err := b.LookupFunc("main.main")
	if err != nil {
		f.Fatal(err)
	}
	code, err := b.readAt(main.Entry, main.End-main.Entry)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(code, false)
	f.Add([]byte{0x10, 0x0b, 0x40, 0xf9, 0xff, 0x63, 0x30, 0xeb, 0xc0, 0x03, 0x5f, 0xd6}, true)
	f.Fuzz(func(t *testing.T, code []byte, arm bool) {
		if len(code) > maxFuncSize {
			return
		}
		n := allocated(func() {
			var s Sites
			if arm {
				s = sitesARM64(code, 0x401000)
				instStarts("arm64", code)
			} else {
				s = sitesAMD64(code, 0x401000)
				instStarts("amd64", code)
				callSitesAMD64(code, 0x401000, 0x402000)
			}
			for _, r := range s.Returns {
				if r < 0x401000 || r >= 0x401000+uint64(len(code)) {
					t.Fatalf("return site %#x outside the code", r)
				}
			}
			pcValueBoundaries(code, 1)
		})
		// Each instruction decoded is a few hundred bytes of garbage.
		if limit := uint64(1024*len(code) + 64<<10); n > limit {
			t.Fatalf("%d bytes of code: allocated %d", len(code), n)
		}
	})
}

// FuzzTypeData looks for struct types in arbitrary read-only data, as
// StructFields does when DWARF is missing.
func FuzzTypeData(f *testing.F) {
	b, err := Open(tinyTarget(f))
	if err != nil {
		f.Fatal(err)
	}
	defer b.Close()
	td, err := b.loadTypeData()
	if err != nil {
		f.Fatal(err)
	}
	// The region holding runtime.g's field names, cut to 64 KiB around
	// the first.
	seeded := false
	for _, r := range td.regions {
		if addrs := td.findNames("atomicstatus"); len(addrs) > 0 && addrs[0] >= r.addr && addrs[0] < r.addr+uint64(len(r.data)) {
			lo := max(int(addrs[0]-r.addr)-32<<10, 0)
			hi := min(lo+64<<10, len(r.data))
			f.Add(r.data[lo:hi], uint64(int(r.addr)+lo-int(td.typesBase)))
			seeded = true
		}
	}
	if !seeded {
		f.Fatal("no runtime.g field names in the type data")
	}
	f.Add(make([]byte, 256), uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, base uint64) {
		td := &typeData{regions: []region{{addr: 0x500000 + base%(1<<20), data: data}}, typesBase: 0x500000}
		n := allocated(func() {
			td.structFields("runtime.g", []string{"atomicstatus", "goid"})
			td.structFields("net/http.response", []string{"wroteHeader", "status"})
		})
		if limit := uint64(16*len(data) + 64<<10); n > limit {
			t.Fatalf("%d bytes: allocated %d", len(data), n)
		}
	})
}

// FuzzDWARF reads parameters and struct fields from arbitrary DWARF
// sections, as Params and StructFields do.
func FuzzDWARF(f *testing.F) {
	ef, err := elf.Open(tinyWithSymtab(f))
	if err != nil {
		f.Fatal(err)
	}
	sec := func(name string) []byte {
		s := ef.Section(name)
		if s == nil {
			return nil // .debug_str: not every release writes one
		}
		d, err := s.Data()
		if err != nil {
			f.Fatal(err)
		}
		return d
	}
	abbrev, info, str := sec(".debug_abbrev"), sec(".debug_info"), sec(".debug_str")
	ef.Close()
	// The first compilation units: main's come first.
	f.Add(abbrev, info[:min(len(info), 32<<10)], str[:min(len(str), 4<<10)])
	f.Fuzz(func(t *testing.T, abbrev, info, str []byte) {
		size := len(abbrev) + len(info) + len(str)
		n := allocated(func() {
			d, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, str)
			if err != nil {
				return
			}
			b := &Binary{HasDWARF: true}
			b.dwarf = d // dwarfData returns it as read
			b.Params("main.main")
			b.dwarfStructFields("runtime.g")
		})
		if limit := uint64(64*size + 1<<20); n > limit {
			t.Fatalf("%d bytes: allocated %d", size, n)
		}
	})
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// FuzzBuildInfo overwrites the build info of a real program in place (its
// section is read through the loaded segment holding it) and parses the
// program.
func FuzzBuildInfo(f *testing.F) {
	exe := readFile(f, tinyTarget(f))
	ef, err := elf.NewFile(bytesReader(exe))
	if err != nil {
		f.Fatal(err)
	}
	sec := ef.Section(".go.buildinfo")
	if sec == nil {
		f.Fatal("no .go.buildinfo")
	}
	off, size := int(sec.Offset), int(sec.Size)
	f.Add(bytes.Clone(exe[off : off+min(size, 512)]))
	f.Add([]byte("\xff Go buildinf:\x08\x02"))
	f.Fuzz(func(t *testing.T, bi []byte) {
		data := bytes.Clone(exe)
		copy(data[off:off+size], bi)
		var b *Binary
		n := allocated(func() { b, err = NewBinary(bytesReader(data), "fuzz") })
		if limit := uint64(parseFactor*len(data) + allocSlack); n > limit {
			t.Fatalf("allocated %d for %d bytes", n, len(data))
		}
		if err == nil && b.GoVersion == "" {
			t.Fatal("read without a Go version")
		}
	})
}
