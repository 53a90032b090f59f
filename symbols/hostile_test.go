package symbols

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/blindspot-dev/blindspot/test/crafted"
)

// What reading a binary may allocate: parsing it (NewBinary) parseFactor
// times its size, using it as the agent does on attach (DWARF decompressed
// and decoded, type data, disassembly) useFactor times, plus allocSlack
// for small inputs and for one 10 MiB chunk: debug/buildinfo reads a
// string whose length the file claims through internal/saferio, which
// allocates up to 10 MiB at once before finding the file shorter (once per
// file: failures are cached). Measured on intact binaries: parsing
// 0.9-1.6x (prometheus, the go command, the test targets), using 2.3-7.5x
// (most for small binaries with DWARF).
const (
	parseFactor = 4
	useFactor   = 16
	allocSlack  = 4<<20 + 10<<20
)

// allocated returns the bytes f allocates (the whole process's, so tests
// calling it do not run in parallel).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// checkAllocBound fails tb when reading data, or reading it and using the
// result as exercise does, allocates more than allowed.
func checkAllocBound(tb testing.TB, data []byte, exercise func(*Binary)) (*Binary, error) {
	tb.Helper()
	var b *Binary
	var err error
	parse := allocated(func() { b, err = NewBinary(bytes.NewReader(data), "crafted") })
	if limit := uint64(parseFactor*len(data) + allocSlack); parse > limit {
		tb.Fatalf("parsing %d bytes allocated %d (%.1fx), more than %d (err %v)", len(data), parse, float64(parse)/float64(len(data)), limit, err)
	}
	if err != nil || exercise == nil {
		return b, err
	}
	use := allocated(func() { exercise(b) })
	if limit := uint64(useFactor*len(data) + allocSlack); parse+use > limit {
		tb.Fatalf("parsing and using %d bytes allocated %d (%.1fx), more than %d", len(data), parse+use, float64(parse+use)/float64(len(data)), limit)
	}
	return b, err
}

// exercise uses a Binary as the agent does on attach.
func exercise(b *Binary) {
	if f, err := b.LookupFunc("main.main"); err == nil {
		b.Sites(f)
		b.CheckSite(f.Entry)
		b.Params(f.Name)
	}
	b.LookupFunc("main.mian")
	b.StructFields("runtime.g", "goid")
	b.StructFields("runtime.mstats", "numgc")
	b.GlobalAddrs("runtime.allgs", "runtime.allglen")
	b.GoWrappers()
}

var (
	symtabOnce sync.Once
	symtabErr  error
)

// tinyWithSymtab builds the minimal program with .symtab and DWARF.
func tinyWithSymtab(tb testing.TB) string {
	tb.Helper()
	tinyTarget(tb) // makes the source
	out := filepath.Join(buildDir, "tiny-symtab")
	symtabOnce.Do(func() {
		_, symtabErr = runGo(goBin(), filepath.Join(buildDir, "tiny-src"), nil, "build", "-o", out, ".")
	})
	if symtabErr != nil {
		tb.Fatal(symtabErr)
	}
	return out
}

func TestIntactBinaryAllocBound(t *testing.T) {
	for _, path := range []string{tinyTarget(t), tinyWithSymtab(t)} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var b *Binary
		n := allocated(func() {
			b, err = NewBinary(bytes.NewReader(data), path)
			if err == nil {
				exercise(b)
			}
		})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		t.Logf("%s: %d bytes, read and used with %d bytes allocated (%.2fx)", filepath.Base(path), len(data), n, float64(n)/float64(len(data)))
		checkAllocBound(t, data, exercise)
	}
}

// TestCraftedBinaries reads every damaged copy of a real Go program that
// package crafted makes: each is refused with a reason or read with what
// is intact, within the allocation bound, and never panics.
func TestCraftedBinaries(t *testing.T) {
	stripped, err := os.ReadFile(tinyTarget(t))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := os.ReadFile(tinyWithSymtab(t))
	if err != nil {
		t.Fatal(err)
	}
	type damaged struct {
		name string
		exe  []byte
		make func([]byte) ([]byte, error)
	}
	var all []damaged
	for _, v := range crafted.Variants(512 << 10) {
		all = append(all, damaged{v.Name, stripped, v.Make})
	}
	all = append(all, damaged{"truncated", plain, crafted.Truncated})
	for _, v := range all {
		t.Run(v.name, func(t *testing.T) {
			data, err := v.make(v.exe)
			if err != nil {
				t.Fatal(err)
			}
			b, err := checkAllocBound(t, data, exercise)
			if err == nil {
				// Only damage to what the stripped program does not need
				// may leave it readable, and then its functions are intact.
				if _, lerr := b.LookupFunc("main.main"); lerr != nil {
					t.Errorf("read without error, but: %v", lerr)
				}
				t.Logf("read: %d functions", len(b.FuncNames()))
				return
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestCraftedPclntabRefused checks the reasons for the tables of the
// finding: functions sharing one long name, or pointing into each other's.
func TestCraftedPclntabRefused(t *testing.T) {
	for _, data := range [][]byte{
		crafted.SharedNamePclntab(512<<10, 0x401000),
		crafted.OverlappingNamesPclntab(512<<10, 0x401000),
	} {
		var err error
		n := allocated(func() { _, err = parsePclntab(data, 0) })
		if !errors.Is(err, errNamesOverlap) {
			t.Errorf("err = %v, want %v", err, errNamesOverlap)
		}
		if limit := uint64(parseFactor * len(data)); n > limit {
			t.Errorf("parsing %d bytes allocated %d", len(data), n)
		}
	}
}

// TestDamagedSymtab: a .symtab whose names overlap, or that names no
// string table, is ignored; the pclntab still names every function.
func TestDamagedSymtab(t *testing.T) {
	plain, err := os.ReadFile(tinyWithSymtab(t))
	if err != nil {
		t.Fatal(err)
	}
	intact, err := NewBinary(bytes.NewReader(plain), "intact")
	if err != nil {
		t.Fatal(err)
	}
	want, err := intact.LookupFunc("main.main")
	if err != nil {
		t.Fatal(err)
	}
	for name, damage := range map[string]func([]byte) ([]byte, error){
		"overlapping-names": crafted.OverlappingSymbolNames,
		"broken-link":       crafted.BrokenSymtabLink,
	} {
		t.Run(name, func(t *testing.T) {
			data, err := damage(plain)
			if err != nil {
				t.Fatal(err)
			}
			b, err := checkAllocBound(t, data, exercise)
			if err != nil {
				t.Fatalf("refused although .gopclntab is intact: %v", err)
			}
			if b.HasSymtab || b.symtabErr == nil {
				t.Errorf("HasSymtab %v, symtabErr %v: the damaged table was used", b.HasSymtab, b.symtabErr)
			}
			t.Logf("symtab ignored: %v", b.symtabErr)
			if got, err := b.LookupFunc("main.main"); err != nil || got != want {
				t.Errorf("main.main = %+v, %v; want %+v", got, err, want)
			}
		})
	}
}

// A C program carrying a .go.buildinfo section (here, a copy of a Go
// program's) is no Go program: there is no Go runtime to observe.
func TestCProgramWithBuildInfo(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("gcc missing")
		}
		t.Skip("gcc missing")
	}
	ef, err := elf.Open(tinyTarget(t))
	if err != nil {
		t.Fatal(err)
	}
	bi, err := ef.Section(".go.buildinfo").Data()
	ef.Close()
	if err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	src.WriteString("__attribute__((section(\".go.buildinfo\"), aligned(16), used))\nconst unsigned char buildinfo[] = {")
	for _, c := range bi {
		fmt.Fprintf(&src, "%d,", c)
	}
	src.WriteString("};\nint main(void) { return 0; }\n")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "c.c"), []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "c")
	if out, err := exec.Command(gcc, "-O1", "-o", exe, filepath.Join(dir, "c.c")).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	if out, err := exec.Command(exe).CombinedOutput(); err != nil {
		t.Fatalf("the C program does not run: %v\n%s", err, out)
	}
	if _, err := buildinfo.ReadFile(exe); err != nil {
		t.Fatalf("the C program carries no build info Go reads: %v", err)
	}
	_, err = Open(exe)
	if !errors.Is(err, ErrNotGo) {
		t.Fatalf("err = %v, want %v", err, ErrNotGo)
	}
	t.Log(err)
}
