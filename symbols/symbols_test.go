package symbols

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

func TestOpen(t *testing.T) {
	for _, bd := range builds {
		t.Run(bd.name, func(t *testing.T) {
			b := open(t, bd.name)
			if maj, min, ok := b.Version(); !ok || maj != 1 || min != bd.minor {
				t.Errorf("Version() = %d, %d, %v; GoVersion %q", maj, min, ok, b.GoVersion)
			}
			wantArch := "amd64"
			if bd.goarch != "" {
				wantArch = bd.goarch
			}
			if b.Arch != wantArch || b.PIE != bd.pie || b.HasSymtab == bd.stripped || b.HasDWARF == bd.stripped {
				t.Errorf("got Arch=%s PIE=%v HasSymtab=%v HasDWARF=%v", b.Arch, b.PIE, b.HasSymtab, b.HasDWARF)
			}
			if b.MainModule != "example.com/target" {
				t.Errorf("MainModule = %q", b.MainModule)
			}
			pcln, symtab := funcTables(t, b)
			if !b.HasSymtab && symtab != nil || pcln == nil || !b.hasPcln {
				t.Errorf("symtab %v pclntab %v (%v)", symtab != nil, pcln != nil, b.hasPcln)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "text")
	os.WriteFile(text, []byte("#!/bin/sh\necho hi\n"), 0o755)
	if _, err := Open(text); err == nil || errors.Is(err, ErrNotGo) {
		t.Errorf("non-ELF: err = %v, want a plain error", err)
	}
	if _, err := Open(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
	// A C program: ELF, but not Go.
	for _, p := range []string{"/bin/true", "/usr/bin/true", "/bin/ls"} {
		if f, err := elf.Open(p); err == nil {
			f.Close()
			if _, err := Open(p); !errors.Is(err, ErrNotGo) {
				t.Errorf("%s: err = %v, want ErrNotGo", p, err)
			}
			return
		}
	}
	t.Log("no C executable to test ErrNotGo with")
}

func TestParseGoVersion(t *testing.T) {
	for _, tc := range []struct {
		in         string
		maj, minor int
		ok         bool
	}{
		{"go1.26.8", 1, 26, true},
		{"go1.19.8", 1, 19, true},
		{"go1.21", 1, 21, true},
		{"go1.27rc1", 1, 27, true},
		{"go1.22.0-X:nocoverageredesign", 1, 22, true},
		{"devel go1.27-abcdef", 0, 0, false},
		{"", 0, 0, false},
		{"go", 0, 0, false},
		{"go1", 0, 0, false},
	} {
		maj, minor, ok := parseGoVersion(tc.in)
		if maj != tc.maj || minor != tc.minor || ok != tc.ok {
			t.Errorf("parseGoVersion(%q) = %d, %d, %v", tc.in, maj, minor, ok)
		}
	}
}

// TestSymtabAgreesWithPclntab checks the pclntab parser (including the
// text start it assumes) against the linker's symbol table.
func TestSymtabAgreesWithPclntab(t *testing.T) {
	for _, bd := range builds {
		if bd.stripped {
			continue
		}
		t.Run(bd.name, func(t *testing.T) {
			pcln, symtab := funcTables(t, open(t, bd.name))
			n := 0
			for name, f := range pcln {
				s, ok := symtab[name]
				if !ok {
					continue
				}
				n++
				if s.Entry != f.Entry {
					t.Errorf("%s: symtab entry %#x, pclntab %#x", name, s.Entry, f.Entry)
				}
				if s.End > f.End || s.End < f.Entry {
					t.Errorf("%s: symtab end %#x outside pclntab [%#x, %#x)", name, s.End, f.Entry, f.End)
				}
			}
			if n < len(pcln)*95/100 || n < 1000 {
				t.Errorf("only %d of %d pclntab functions in symtab", n, len(pcln))
			}
		})
	}
}

// TestModuleData checks the module descriptor found in every build against
// the linker's symbols: with external linking neither runtime.text nor
// runtime.types is the start of a section.
func TestModuleData(t *testing.T) {
	for _, bd := range builds {
		t.Run(bd.name, func(t *testing.T) {
			b := open(t, bd.name)
			if b.moduleErr != nil {
				t.Fatalf("module descriptor: %v", b.moduleErr)
			}
			if bd.stripped {
				return
			}
			syms, err := b.ef.Symbols()
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]uint64{}
			for _, s := range syms {
				switch s.Name {
				case "runtime.text", "runtime.etext", "runtime.types", "runtime.etypes", "runtime.firstmoduledata":
					want[s.Name] = s.Value
				}
			}
			got := map[string]uint64{"runtime.text": b.module.text, "runtime.etext": b.module.etext,
				"runtime.types": b.module.types, "runtime.etypes": b.module.etypes, "runtime.firstmoduledata": b.module.addr}
			for name, v := range want {
				if got[name] != v {
					t.Errorf("%s: module descriptor says %#x, symtab %#x", name, got[name], v)
				}
			}
			if len(want) != len(got) {
				t.Errorf("symtab has only %v", want)
			}
		})
	}
}

func TestStrippedMatchesPlain(t *testing.T) {
	for _, bd := range builds {
		if !bd.stripped {
			continue
		}
		t.Run(bd.name, func(t *testing.T) {
			s, p := open(t, bd.name), open(t, bd.plain())
			names := s.FuncNames()
			if !slices.IsSorted(names) || len(names) < 1000 {
				t.Fatalf("%d names, sorted %v", len(names), slices.IsSorted(names))
			}
			for _, name := range names {
				fs, err := s.LookupFunc(name)
				if err != nil {
					t.Fatal(err)
				}
				fp, err := p.LookupFunc(name)
				if err != nil {
					t.Errorf("plain build lacks %s", name)
					continue
				}
				if fs != fp {
					t.Errorf("%s: stripped %+v, plain %+v", name, fs, fp)
				}
			}
			for _, name := range []string{"main.main", "main.processOrder", "main.(*store).handle", "main.main.func1",
				"net/http.serverHandler.ServeHTTP", "net/http.(*response).finishRequest"} {
				if _, err := s.LookupFunc(name); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestLookupFuncSuggestions(t *testing.T) {
	b := open(t, "go126-s")
	_, err := b.LookupFunc("main.procesOrder")
	if !errors.Is(err, ErrFuncNotFound) {
		t.Fatalf("err = %v", err)
	}
	want := `function "main.procesOrder" not found; did you mean main.processOrder?`
	if err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	_, err = b.LookupFunc("net/http.(*response).finishRequst")
	if err == nil || !strings.Contains(err.Error(), "net/http.(*response).finishRequest") {
		t.Errorf("err = %v", err)
	}
	_, err = b.LookupFunc("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz")
	if !errors.Is(err, ErrFuncNotFound) || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("err = %v", err)
	}
	if got := suggest("main.a", []string{"main.b", "main.c", "main.d", "main.e", "x"}, 3); len(got) != 3 {
		t.Errorf("suggest = %v", got)
	}
	if got := joinOr([]string{"a", "b", "c"}); got != "a, b or c" {
		t.Errorf("joinOr = %q", got)
	}
}

func TestFileOffset(t *testing.T) {
	for _, name := range []string{"go126", "go126-pie-s", "go119-pie", "go126-arm64"} {
		b := open(t, name)
		f, err := b.LookupFunc("main.processOrder")
		if err != nil {
			t.Fatal(err)
		}
		off, err := b.FileOffset(f.Entry)
		if err != nil {
			t.Fatal(err)
		}
		text := b.ef.Section(".text")
		if want := f.Entry - text.Addr + text.Offset; off != want {
			t.Errorf("%s: FileOffset = %#x, want %#x", name, off, want)
		}
		if _, err := b.FileOffset(1); err == nil {
			t.Errorf("%s: FileOffset(1) succeeded", name)
		}
	}
}

var sitesFuncs = []string{
	"net/http.serverHandler.ServeHTTP",
	"net/http.(*response).finishRequest",
	"main.processOrder",
	"main.(*store).handle",
	"main.main.func1",
	"main.main",
}

func TestSites(t *testing.T) {
	for _, bd := range builds {
		t.Run(bd.name, func(t *testing.T) {
			b := open(t, bd.name)
			for _, name := range sitesFuncs {
				f, err := b.LookupFunc(name)
				if err != nil {
					t.Fatal(err)
				}
				s, err := b.Sites(f)
				if err != nil {
					t.Fatal(err)
				}
				if len(s.Returns) == 0 {
					t.Errorf("%s: no returns", name)
				}
				for _, r := range s.Returns {
					if r < f.Entry || r >= f.End {
						t.Errorf("%s: return %#x outside function", name, r)
					}
				}
				code, err := b.readAt(f.Entry, f.End-f.Entry)
				if err != nil {
					t.Fatal(err)
				}
				at := code[s.Entry-f.Entry:]
				switch {
				case b.Arch == "arm64":
					// Every one of these has a stack check.
					prev, err := arm64asm.Decode(code[s.Entry-f.Entry-4:])
					if err != nil || prev.Op != arm64asm.B || prev.Args[0].String() != "LS" {
						t.Errorf("%s: instruction before entry %#x is %v", name, s.Entry, prev)
					}
				case bd.minor >= 21:
					inst, err := x86asm.Decode(at, 64)
					if err != nil || inst.Op != x86asm.PUSH || inst.Args[0] != x86asm.RBP {
						t.Errorf("%s: entry %#x decodes as %v", name, s.Entry, inst)
					}
					if s.Entry-f.Entry > 16 {
						t.Errorf("%s: entry at +%d", name, s.Entry-f.Entry)
					}
				default:
					// Go 1.19 and 1.20 set up frames with SUBQ/MOVQ/LEAQ: no
					// PUSHQ BP, so the entry is the instruction after the
					// stack check, single-stepped; the check's JBE is the
					// emulated alternative.
					jbe, err := x86asm.Decode(code[s.StackCheck-f.Entry:], 64)
					if err != nil || jbe.Op != x86asm.JBE || s.StackCheck+uint64(jbe.Len) != s.Entry {
						t.Errorf("%s: stack check %#x decodes as %v, entry %#x", name, s.StackCheck, jbe, s.Entry)
					}
					if s.EntryEmulated {
						t.Errorf("%s: entry %#x reported emulated", name, s.Entry)
					}
				}
				if b.Arch == "amd64" && bd.minor >= 21 && (!s.EntryEmulated || s.StackCheck == 0 || s.StackCheck >= s.Entry) {
					t.Errorf("%s: emulated %v, stack check %#x, entry %#x", name, s.EntryEmulated, s.StackCheck, s.Entry)
				}
			}
		})
	}
}

var objdumpRET = regexp.MustCompile(`(?m)^\s+\S+\s+0x([0-9a-f]+)\s+[0-9a-f]+\s+RET\b`)

// TestSitesObjdump cross-checks the returns against go tool objdump.
func TestSitesObjdump(t *testing.T) {
	for _, name := range []string{"go126", "go119-pie", "go126-arm64"} {
		for _, fn := range []string{"main.processOrder", "net/http.(*response).finishRequest"} {
			b := open(t, name)
			out, err := runGo(goBin(), ".", nil, "tool", "objdump", "-s", "^"+regexp.QuoteMeta(fn)+"$", b.Path)
			if err != nil {
				t.Fatal(err)
			}
			var want []uint64
			for _, m := range objdumpRET.FindAllStringSubmatch(string(out), -1) {
				v, _ := strconv.ParseUint(m[1], 16, 64)
				want = append(want, v)
			}
			f, _ := b.LookupFunc(fn)
			s, err := b.Sites(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) == 0 || !slices.Equal(s.Returns, want) {
				t.Errorf("%s %s: returns %x, objdump %x", name, fn, s.Returns, want)
			}
		}
	}
}

func TestSitesSynthetic(t *testing.T) {
	// CMPQ SP,16(R14); JBE; PUSHQ BP; MOVQ SP,BP; bad byte 0x06; RET; INT3.
	code := []byte{0x49, 0x3b, 0x66, 0x10, 0x76, 0x05, 0x55, 0x48, 0x89, 0xe5, 0x06, 0xc3, 0xcc}
	s := sitesAMD64(code, 0x1000)
	if s.Entry != 0x1006 || !slices.Equal(s.Returns, []uint64{0x100b}) {
		t.Errorf("got %+v", s)
	}
	// Frameless leaf: no PUSHQ BP.
	s = sitesAMD64([]byte{0x48, 0x89, 0xc3, 0xc3}, 0x2000)
	if s.Entry != 0x2000 || !slices.Equal(s.Returns, []uint64{0x2003}) {
		t.Errorf("got %+v", s)
	}
	// A PUSHQ BP after a CALL is not a prologue.
	s = sitesAMD64([]byte{0xe8, 0, 0, 0, 0, 0x55, 0xc3}, 0x3000)
	if s.Entry != 0x3000 {
		t.Errorf("got %+v", s)
	}
	if s := sitesARM64([]byte{1, 2}, 0); s.Entry != 0 || len(s.Returns) != 0 {
		t.Errorf("got %+v", s)
	}
	b := open(t, "go126-s")
	if _, err := b.Sites(Func{Name: "x", Entry: 10, End: 5}); err == nil {
		t.Error("empty range accepted")
	}
	if _, err := b.Sites(Func{Name: "x", Entry: 1, End: 50}); err == nil {
		t.Error("unmapped range accepted")
	}
}

// dwarfFields returns the tableStructs fields present in a build's DWARF.
func dwarfFields(t *testing.T, b *Binary, spec StructSpec) map[string]uint64 {
	t.Helper()
	all, err := b.dwarfStructFields(spec.Type)
	if errors.Is(err, errNoStruct) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	out, _ := pick(all, spec.Fields)
	return out
}

func keys(m map[string]uint64) []string {
	var k []string
	for f := range m {
		k = append(k, f)
	}
	slices.Sort(k)
	return k
}

func TestStructFields(t *testing.T) {
	for _, bd := range builds {
		if !bd.stripped {
			continue
		}
		t.Run(bd.name, func(t *testing.T) {
			s, p := open(t, bd.name), open(t, bd.plain())
			n := 0
			for _, spec := range tableStructs {
				want := dwarfFields(t, p, spec)
				if len(want) == 0 {
					t.Logf("%s: not in this build", spec.Type)
					continue
				}
				n++
				fields := keys(want)
				got, src, err := p.StructFields(spec.Type, fields...)
				if err != nil || src != SourceDWARF || !maps(got, want) {
					t.Errorf("plain %s: %v %v %v", spec.Type, got, src, err)
				}
				got, src, err = s.StructFields(spec.Type, fields...)
				wantSrc := SourceTypeData
				if spec.Internal {
					wantSrc = SourceTable
				}
				if err != nil || src != wantSrc || !maps(got, want) {
					t.Errorf("stripped %s: got %v from %v (%v), want %v", spec.Type, got, src, err, want)
				}
				if tab, err := s.tableStructFields(spec.Type, fields); err != nil || !maps(tab, want) {
					t.Errorf("table %s: got %v (%v), want %v", spec.Type, tab, err, want)
				}
			}
			if n < 5 {
				t.Errorf("only %d structs checked", n)
			}
			// Decoys with net/http.response's field names are in the type
			// data, and never answer for it.
			td, err := s.loadTypeData()
			if err != nil {
				t.Fatal(err)
			}
			respFields := []string{"conn", "req", "status", "wroteHeader", "handlerDone"}
			for _, decoyName := range []string{"example.com/target/decoy.Response", "example.com/target/decoy.response"} {
				d, err := td.structFields(decoyName, respFields)
				if err != nil {
					t.Errorf("decoy %s not found: %v", decoyName, err)
					continue
				}
				if real, _ := td.structFields("net/http.response", respFields); maps(real, d) {
					t.Errorf("decoy %s has net/http.response's offsets %v: not a decoy", decoyName, d)
				}
			}
			// The target's own struct, with an exported field and methods.
			got, src, err := s.StructFields("main.order", "ID", "Item", "Amount", "paid")
			want := map[string]uint64{"ID": 0, "Item": 8, "Amount": 24, "paid": 32}
			if err != nil || src != SourceTypeData || !maps(got, want) {
				t.Errorf("main.order: %v %v %v", got, src, err)
			}
		})
	}
}

func maps(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestStructFieldsErrors(t *testing.T) {
	for _, name := range []string{"go126", "go126-s"} {
		b := open(t, name)
		_, _, err := b.StructFields("net/http.response", "req", "noSuchField")
		if !errors.Is(err, ErrFieldNotFound) || !strings.Contains(err.Error(), "noSuchField") {
			t.Errorf("%s: err = %v", name, err)
		}
		if _, _, err := b.StructFields("net/http.response"); err == nil {
			t.Errorf("%s: no fields accepted", name)
		}
	}
	// A wrong type name must not match a struct found by field names.
	b := open(t, "go126-s")
	if got, _, err := b.StructFields("net/http.notResponse", "req", "status", "wroteHeader"); err == nil {
		t.Errorf("wrong type matched: %v", got)
	}
}

func TestTableLookup(t *testing.T) {
	saved := offsetTable
	defer func() { offsetTable = saved }()
	offsetTable = []versionOffsets{
		{Major: 1, Minor: 19, Structs: map[string]map[string]uint64{
			"net/url.URL":      {"Scheme": 0, "Host": 40},
			"net/http.conn":    {"hijackedv": 144},
			"net/http.Request": {"Method": 0},
		}},
		{Major: 1, Minor: 21, Structs: map[string]map[string]uint64{
			"net/url.URL":   {"Scheme": 0, "Host": 40},
			"net/http.conn": {"hijackedv": 136},
		}},
		{Major: 1, Minor: 26, Structs: map[string]map[string]uint64{
			"net/url.URL": {"Scheme": 0, "Host": 40},
		}},
	}
	for _, tc := range []struct {
		version, typ string
		fields       []string
		want         string // "" = found
	}{
		{"go1.19.1", "net/url.URL", []string{"Scheme", "Host"}, ""},
		{"go1.20.3", "net/url.URL", []string{"Scheme", "Host"}, ""}, // neighbours agree
		{"go1.25.3", "net/url.URL", []string{"Scheme", "Host"}, ""},
		{"go1.26.0", "net/url.URL", []string{"Scheme", "Host"}, ""},
		{"go1.20.3", "net/http.conn", []string{"hijackedv"}, "moved between go1.19 (144) and go1.21 (136)"},
		{"go1.20.3", "net/http.Request", []string{"Method"}, "not in table for go1.21"},
		{"go1.30.0", "net/url.URL", []string{"Scheme"}, "no table for go1.30"}, // newer than every row
		{"go1.18.10", "net/url.URL", []string{"Scheme"}, "no table for go1.18"},
		{"go1.19.8", "net/http.Request", []string{"Method", "Pattern"}, "Pattern"},
		{"devel", "net/url.URL", []string{"Scheme"}, "unknown go version"},
	} {
		b := &Binary{GoVersion: tc.version}
		got, err := b.tableStructFields(tc.typ, tc.fields)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %s: %v", tc.version, tc.typ, err)
		case tc.want == "" && tc.typ == "net/url.URL" && (got["Scheme"] != 0 || got["Host"] != 40):
			t.Errorf("%s: %v", tc.version, got)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s %s: err = %v, want %q", tc.version, tc.typ, err, tc.want)
		}
	}
	for _, s := range []Source{SourceDWARF, SourceTypeData, SourceTable, 0} {
		if s.String() == "" {
			t.Errorf("empty String for %d", s)
		}
	}
}

func TestTypeIdentityProves(t *testing.T) {
	for _, tc := range []struct {
		str, pkgPath, name string
		want               bool
	}{
		{"http.response", "net/http", "net/http.response", true},
		{"http.Request", "net/http", "net/http.response", false},
		{"http.response", "example.com/other/http", "net/http.response", false}, // same names, another package
		{"http2.responseWriterState", "golang.org/x/net/http2", "net/http.http2responseWriterState", false},
		{"http.http2responseWriterState", "net/http", "net/http.http2responseWriterState", true},
		{"main.order", "main", "main.order", true},
		{"yaml.Node", "gopkg.in/yaml.v3", "gopkg.in/yaml.v3.Node", true},
		{"foo.T", "example.com/foo/v2", "example.com/foo/v2.T", true},
		{"", "", "net/http.response", false},
		{"http.response", "", "net/http.response", false}, // package path unknown: not proven
		{"struct { a int }", "net/http", "net/http.response", false},
	} {
		id := typeIdentity{str: tc.str, pkgPath: tc.pkgPath}
		if got := id.proves(tc.name); got != tc.want {
			t.Errorf("%+v proves %q = %v", id, tc.name, got)
		}
	}
}

func TestConcurrent(t *testing.T) {
	path := target(t, "go126-pie-s")
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := b.LookupFunc("net/http.(*response).finishRequest")
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := b.Sites(f); err != nil {
				t.Error(err)
			}
			if _, _, err := b.StructFields("net/http.response", "req", "status"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

// readerAtOnly hides the size of what it reads.
type readerAtOnly struct{ r io.ReaderAt }

func (r readerAtOnly) ReadAt(p []byte, off int64) (int, error) { return r.r.ReadAt(p, off) }

// The function table keeps no names but where they are in the file: the
// names read back are those of the pclntab and .symtab; where the file's
// size is unknown they are kept in memory instead, alike; and a name
// whose bytes changed in the file is not returned.
func TestFuncNamesFromFile(t *testing.T) {
	for _, name := range []string{"go126", "go126-s", "go126-pie", "go119", "go126-ext"} {
		t.Run(name, func(t *testing.T) {
			path := target(t, name)
			b, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if b.funcs().nameFile == nil || b.funcs().nameMem != "" {
				t.Fatalf("names held in memory (%d bytes)", len(b.funcs().nameMem))
			}
			pcln, symtab := funcTables(t, b)
			funcs := allFuncs(t, b)
			for _, f := range funcs {
				want, ok := pcln[f.Name]
				if !ok {
					want, ok = symtab[f.Name]
				} else if s, sok := symtab[f.Name]; sok && s.Entry != want.Entry {
					want = s
				}
				if !ok || want.Entry != f.Entry {
					t.Fatalf("%s at %#x: not so in the pclntab or .symtab (%v, %#x)", f.Name, f.Entry, ok, want.Entry)
				}
				if g, err := b.LookupFunc(f.Name); err != nil || g != f {
					t.Fatalf("LookupFunc(%s) = %+v, %v; want %+v", f.Name, g, err, f)
				}
			}
			if len(funcs) < 1000 {
				t.Fatalf("%d functions", len(funcs))
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			m, err := NewBinary(readerAtOnly{bytes.NewReader(data)}, path)
			if err != nil {
				t.Fatal(err)
			}
			if m.funcs().nameMem == "" {
				t.Fatal("size unknown, but names not kept in memory")
			}
			if got := allFuncs(t, m); !reflect.DeepEqual(got, funcs) {
				t.Fatalf("in memory: %d functions, from the file %d", len(got), len(funcs))
			}
			// A name changed in the file: refused, not returned.
			mainFunc, ok := b.lookupName("main.main")
			if !ok {
				t.Fatal("no main.main")
			}
			bt := b.funcs()
			i := slices.IndexFunc(bt.funcs, func(r funcRec) bool { return r.entry == mainFunc.Entry })
			at := bt.funcs[i].at
			data[at] = 'X'
			c, err := NewBinary(bytes.NewReader(data), path)
			if err != nil {
				t.Fatal(err)
			}
			ct := c.funcs()
			j := slices.IndexFunc(ct.funcs, func(r funcRec) bool { return r.at == at })
			if j < 0 {
				t.Fatal("no function named at the changed bytes")
			}
			if name, ok := c.funcName(ct, &ct.funcs[j]); !ok || name != "Xain.main" {
				t.Fatalf("changed before the table was built: %q %v", name, ok)
			}
			data[at+1] = 0 // after
			if name, ok := c.funcName(ct, &ct.funcs[j]); ok {
				t.Errorf("a name changed in the file read as %q", name)
			}
		})
	}
}

// A released function table is built again, identical, when asked for,
// as often as it is released, concurrently with lookups; the sections it
// reads again go back to the read budget. Once the file is closed it
// cannot be, and says so; names looked up before are still answered.
func TestReleaseFuncs(t *testing.T) {
	for _, name := range []string{"go126", "go126-s", "go126-pie-s", "go126-ext", "go119"} {
		t.Run(name, func(t *testing.T) {
			b, err := Open(target(t, name))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			want := allFuncs(t, b)
			budget := b.budget.Load()
			handler, err := b.LookupFunc("net/http.(*conn).serve")
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for g := 0; g < 4; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 10; i++ {
						if g == 0 {
							b.ReleaseFuncs()
						}
						if f, err := b.LookupFunc(handler.Name); err != nil || f != handler {
							t.Errorf("LookupFunc after ReleaseFuncs: %+v, %v", f, err)
							return
						}
						if f, ok := b.FuncForPC(handler.Entry + 1); !ok || f != handler {
							t.Errorf("FuncForPC after ReleaseFuncs: %+v, %v", f, ok)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReleaseFuncs()
			if got := allFuncs(t, b); !reflect.DeepEqual(got, want) {
				t.Fatalf("built again: %d functions, first %d", len(got), len(want))
			}
			if b.FuncsError() != nil || b.budget.Load() != budget {
				t.Errorf("after building again: error %v, read budget %d, was %d", b.FuncsError(), b.budget.Load(), budget)
			}
			// A name not asked before is looked up in the table built again.
			b.ReleaseFuncs()
			i := slices.IndexFunc(want, func(f Func) bool { return f.Name == "main.main" })
			if f, err := b.LookupFunc("main.main"); i < 0 || err != nil || f != want[i] {
				t.Errorf("main.main after ReleaseFuncs: %+v, %v", f, err)
			}
			b.Close()
			b.ReleaseFuncs()
			// A name asked before is answered from what was kept; the
			// table itself is gone.
			if f, err := b.LookupFunc(handler.Name); err != nil || f != handler {
				t.Errorf("lookup of a kept name once the file is closed: %+v, %v", f, err)
			}
			if f, ok := b.FuncForPC(handler.Entry); ok {
				t.Errorf("FuncForPC once the file is closed: %+v, want none", f)
			}
			if err := b.FuncsError(); err == nil {
				t.Error("no error for a table that could not be built again")
			}
		})
	}
}
