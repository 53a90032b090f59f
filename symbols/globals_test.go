package symbols

import (
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
)

func globalNames() []string {
	var names []string
	for n := range globalLocators {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// checkGlobals compares, for one build, the globals located from code
// (in the plain build and in its stripped twin) with .symtab.
func checkGlobals(t *testing.T, plain, stripped *Binary) {
	t.Helper()
	want := plain.dataSymbols()
	for _, name := range globalNames() {
		if want[name] == 0 {
			t.Fatalf("%s not in .symtab", name)
		}
		got, err := plain.locateGlobal(name)
		if err != nil || got != want[name] {
			t.Errorf("plain: %s located at %#x (%v), .symtab says %#x", name, got, err, want[name])
		}
	}
	if stripped == nil {
		return
	}
	if stripped.HasSymtab {
		t.Fatal("stripped build has .symtab")
	}
	got, err := stripped.GlobalAddrs(globalNames()...)
	if err != nil {
		t.Fatal(err)
	}
	// Stripping moves the sections; their contents stay in place.
	for _, name := range globalNames() {
		gs, go_ := sectionOffset(stripped, got[name])
		ws, wo := sectionOffset(plain, want[name])
		if gs != ws || go_ != wo {
			t.Errorf("stripped: %s located at %s+%#x, .symtab of the plain build says %s+%#x", name, gs, go_, ws, wo)
		}
	}
}

// sectionOffset names the section holding addr and the offset in it.
func sectionOffset(b *Binary, addr uint64) (string, uint64) {
	for _, s := range b.ef.Sections {
		if s.Addr != 0 && addr >= s.Addr && addr < s.Addr+s.Size {
			return s.Name, addr - s.Addr
		}
	}
	return "?", addr
}

func TestGlobalsMatchSymtab(t *testing.T) {
	for _, bd := range builds {
		if bd.stripped || bd.goarch != "" || !hasBuild(bd.name+"-s") {
			continue
		}
		t.Run(bd.name, func(t *testing.T) {
			checkGlobals(t, open(t, bd.name), open(t, bd.name+"-s"))
		})
	}
	t.Run("go127", func(t *testing.T) {
		plain, stripped := go127Builds(t)
		checkGlobals(t, plain, stripped)
	})
}

var (
	go127Once sync.Once
	go127Err  error
)

// go127Builds builds the target with Go 1.27 (fetched through the module
// proxy by GOTOOLCHAIN), plain and stripped.
func go127Builds(t *testing.T) (plain, stripped *Binary) {
	go127Once.Do(func() {
		makeBuildDir()
		src, err := filepath.Abs("testdata/target")
		if err != nil {
			go127Err = err
			return
		}
		env := []string{"GOTOOLCHAIN=go1.27.3"}
		if _, go127Err = runGo(goBin(), src, env, "build", "-o", filepath.Join(buildDir, "go127"), "."); go127Err != nil {
			return
		}
		_, go127Err = runGo(goBin(), src, env, "build", "-ldflags=-s -w", "-o", filepath.Join(buildDir, "go127-s"), ".")
	})
	if go127Err != nil {
		if os.Getenv("CI") != "true" {
			t.Skipf("Go 1.27 unavailable: %v", go127Err)
		}
		t.Fatal(go127Err)
	}
	var bins [2]*Binary
	for i, n := range []string{"go127", "go127-s"} {
		b, err := Open(filepath.Join(buildDir, n))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		bins[i] = b
	}
	return bins[0], bins[1]
}

func TestFuncForPC(t *testing.T) {
	b := open(t, "go126-s")
	f, err := b.LookupFunc("main.main")
	if err != nil {
		t.Fatal(err)
	}
	for _, pc := range []uint64{f.Entry, f.Entry + 1, f.End - 1} {
		if g, ok := b.FuncForPC(pc); !ok || g.Name != "main.main" {
			t.Errorf("FuncForPC(%#x) = %v, %v", pc, g, ok)
		}
	}
	if _, ok := b.FuncForPC(0); ok {
		t.Error("FuncForPC(0) found a function")
	}
}

func TestGlobalErrors(t *testing.T) {
	b := open(t, "go126-s")
	if _, err := b.GlobalAddrs("main.nosuchvar"); err == nil {
		t.Error("no error for an unknown global in a stripped binary")
	}
	arm := open(t, "go126-arm64-s")
	if _, err := arm.GlobalAddrs("runtime.allglen"); err == nil {
		t.Error("no error for arm64")
	}
}
