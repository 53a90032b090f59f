package symbols

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// gowrapSrc is the program the wrapper tests build with every toolchain.
// Each go statement with arguments starts a function named pos*; real
// closures call functions named neg*, which must never be taken for the
// callee of a wrapper.
const gowrapSrc = `package main

import (
	"fmt"
	"os"
	"sync"
)

var (
	never  = make(chan struct{})
	mu     sync.Mutex
	total  int
	global = 3
	fn     = posViaVar
	it     iface = &T{}
)

// Small: inlined into the wrapper by Go 1.22 and later.
func posSmall(i int) { total += i; <-never }

// Large: called by the wrapper.
//
//go:noinline
func posLarge(i int, s string) {
	for j := 0; j < i; j++ {
		total += len(s)
	}
	<-never
}

func posNoArgs() { <-never }

type T struct{ x int }

func (t *T) posPtr(i int) { t.x += i; <-never }
func (t T) posVal(i int)  { total += t.x + i; <-never }

//go:noinline
func posMany(a, b, c, d, e, f, g, h, i, j, k, l int, x float64, s string, st struct{ p, q, r int }) {
	total += a + l + int(x) + len(s) + st.r
	<-never
}

func posGeneric[V any](v V) { fmt.Sprint(v); <-never }

func posViaVar(i int) { <-never }

type iface interface{ posIface(int) }

func (t *T) posIface(i int) { <-never }

func posInClosure(i int) { <-never }

//go:noinline
func negOne(i int) { total += i; <-never }

func negSmall(i int) { total += i; <-never }

//go:noinline
func negA(i int) { total += i }

//go:noinline
func negB(i int) { total -= i; <-never }

func main() {
	if len(os.Args) < 2 {
		return // built, not run
	}
	t := &T{}
	n := len(os.Args)
	for i := 0; i < n; i++ {
		go posSmall(i)
	}
	go posLarge(n, "x")
	go posNoArgs()
	go t.posPtr(n)
	go t.posVal(n)
	go posMany(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, n, 2.5, "s", struct{ p, q, r int }{1, 2, n})
	go posGeneric(n)
	go posGeneric("s")
	go func(i int) { <-never }(n) // a literal without captures: called directly
	go fn(n)                      // through a variable: the callee is not known
	go it.posIface(n)             // through an interface: the callee is not known
	go func() {
		go posInClosure(n)
	}()

	// Real closures: each keeps its own name.
	go func() { negOne(n) }()    // calls one function and does nothing else
	go func() { negSmall(n) }()  // the same, inlined
	go func() { negA(n); negB(n) }()
	go func() {
		for i := 0; i < n; i++ {
			total++
		}
		negOne(n)
	}()
	go func() { total += n; negOne(n) }()
	go func() { mu.Lock(); negOne(n) }()
	go func() { negOne(global) }()
	go func() { <-never; negOne(n) }()
	go func() {
		for {
			negOne(n)
		}
	}()
	<-never
}
`

// posCallees are the functions the go statements with arguments start,
// each as many times as a wrapper starts it (the generic instantiations
// apart).
var posCallees = []string{
	"main.posSmall", "main.posLarge", "main.(*T).posPtr", "main.T.posVal",
	"main.posMany", "main.posInClosure",
}

// checkCallees compares the callees of main's wrappers with posCallees.
// Besides those: posGeneric's two instantiations (named
// "[go.shape.int_0]" by Go 1.19 and 1.20, "[...]" in their stripped
// function tables, where the two collapse into one name and the second
// cannot be told from the first: then one is found); and, from Go 1.22,
// the literal called with an argument (before, its wrapper calls it through
// the closure pointer and keeps its own name).
func checkCallees(t *testing.T, bd gowrapBuild, callees []string, got map[string]string) {
	t.Helper()
	var plain []string
	generic, literal := 0, 0
	for _, c := range callees {
		switch {
		case strings.HasPrefix(c, "main.posGeneric["):
			generic++
		case regexp.MustCompile(`^main\.main\.func\d+$`).MatchString(c):
			literal++
		default:
			plain = append(plain, c)
		}
	}
	sort.Strings(plain)
	want := append([]string{}, posCallees...)
	sort.Strings(want)
	if strings.Join(plain, "\n") != strings.Join(want, "\n") {
		t.Errorf("callees of main's wrappers:\n got %q\nwant %q\nwrappers: %v", plain, want, got)
	}
	wantGeneric := 2
	if bd.minor < 21 && bd.stripped && generic == 1 {
		wantGeneric = 1
	}
	if generic != wantGeneric {
		t.Errorf("%d wrappers of posGeneric found, want %d: %v", generic, wantGeneric, got)
	}
	wantLiteral := 0
	if bd.minor >= 22 {
		wantLiteral = 1
	}
	if literal != wantLiteral {
		t.Errorf("%d wrappers of a literal found, want %d: %v", literal, wantLiteral, got)
	}
}

// gowrapBuild is one build of gowrapSrc.
type gowrapBuild struct {
	name     string // e.g. "go122-s"
	minor    int
	gobin    string // "" = the toolchain running the tests
	env      []string
	flags    []string
	stripped bool
}

var (
	gowrapOnce sync.Once
	gowrapDir  string
	gowrapRes  = map[string]error{}
	gowrapList []gowrapBuild
)

// fetchGo returns the go command of Go 1.minor from the project's
// toolchain script.
func fetchGo(minor int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	script, err := filepath.Abs("../test/toolchains/fetch.sh")
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(script); err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, "bash", script, "go", fmt.Sprintf("1.%d", minor)).Output()
	if err != nil {
		return "", fmt.Errorf("fetch.sh go 1.%d: %w", minor, err)
	}
	p := strings.TrimSpace(string(out))
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

// gowrapBuilds builds gowrapSrc with Go 1.19, 1.21–1.24, 1.26 and 1.27,
// plain, stripped, and stripped with the external linker (and PIE for 1.19
// and 1.26, -race for 1.26, arm64 for 1.19, 1.22, 1.26 and 1.27), two
// builds at a time.
// A toolchain that cannot be had is recorded as the build's error.
func gowrapBuilds() {
	gowrapOnce.Do(func() {
		makeBuildDir()
		gowrapDir = filepath.Join(buildDir, "gowrap")
		src := filepath.Join(gowrapDir, "src")
		os.MkdirAll(src, 0o755)
		os.WriteFile(filepath.Join(src, "go.mod"), []byte("module gowrap\n\ngo 1.19\n"), 0o644)
		os.WriteFile(filepath.Join(src, "main.go"), []byte(gowrapSrc), 0o644)

		type tc struct {
			minor int
			gobin string
			env   []string
			err   error
		}
		tcs := []tc{{minor: 19}, {minor: 21}, {minor: 22}, {minor: 23}, {minor: 24}, {minor: 26, gobin: goBin()},
			{minor: 27, gobin: goBin(), env: []string{"GOTOOLCHAIN=go1.27.3"}}}
		for i := range tcs {
			if tcs[i].gobin == "" {
				tcs[i].gobin, tcs[i].err = fetchGo(tcs[i].minor)
				if tcs[i].err != nil && tcs[i].minor == 19 {
					if _, err := os.Stat(go119); err == nil {
						tcs[i].gobin, tcs[i].err = go119, nil
					}
				}
			}
		}
		var jobs []gowrapBuild
		for _, c := range tcs {
			// name suffix, build flags; "+cgo" builds with cgo.
			flavors := [][]string{{""}, {"-s", "-ldflags=-s -w"}, {"-ext-s", "+cgo", "-ldflags=-s -w -linkmode=external"}}
			if c.minor == 19 || c.minor == 26 {
				flavors = append(flavors, []string{"-pie-s", "-buildmode=pie", "-ldflags=-s -w"})
			}
			if c.minor == 26 {
				flavors = append(flavors, []string{"-race", "+cgo", "-race"})
			}
			switch c.minor {
			case 19, 26:
				flavors = append(flavors, []string{"-arm64", "+arm64"}, []string{"-arm64-s", "+arm64", "-ldflags=-s -w"})
			case 22, 27:
				flavors = append(flavors, []string{"-arm64", "+arm64"})
			}
			for _, fl := range flavors {
				bd := gowrapBuild{name: fmt.Sprintf("go1%d%s", c.minor, fl[0]), minor: c.minor, gobin: c.gobin,
					env: append([]string{}, c.env...), stripped: strings.HasSuffix(fl[0], "-s")}
				for _, f := range fl[1:] {
					switch f {
					case "+cgo":
						bd.env = append(bd.env, "CGO_ENABLED=1")
						continue
					case "+arm64":
						bd.env = append(bd.env, "GOARCH=arm64")
						continue
					}
					bd.flags = append(bd.flags, f)
				}
				gowrapList = append(gowrapList, bd)
				if c.err != nil {
					gowrapRes[bd.name] = c.err
					continue
				}
				jobs = append(jobs, bd)
			}
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, 2)
		var mu sync.Mutex
		for _, bd := range jobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				args := append([]string{"build", "-o", filepath.Join(gowrapDir, bd.name)}, bd.flags...)
				_, err := runGo(bd.gobin, src, bd.env, append(args, ".")...)
				mu.Lock()
				gowrapRes[bd.name] = err
				mu.Unlock()
			}()
		}
		wg.Wait()
	})
}

// openGowrap returns one build of gowrapSrc, skipping (failing with
// CI=true) when its toolchain is missing.
func openGowrap(t *testing.T, name string) *Binary {
	t.Helper()
	gowrapBuilds()
	if err := gowrapRes[name]; err != nil {
		if os.Getenv("CI") != "true" && !strings.Contains(err.Error(), "main.go") {
			t.Skipf("no toolchain for %s: %v", name, err)
		}
		t.Fatalf("build %s: %v", name, err)
	}
	b, err := Open(filepath.Join(gowrapDir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// wrapperShapes says how each release names the wrappers of go statements.
var wrapperShapes = []struct {
	minMinor int
	name     *regexp.Regexp
}{
	{22, regexp.MustCompile(`^main\.main(\.func\d+)?\.gowrap\d+$`)},
	{0, regexp.MustCompile(`^main\.main\.func\d+(\.\d+)?$`)},
}

func TestGoWrappers(t *testing.T) {
	gowrapBuilds()
	results := map[string]map[string]string{} // build → wrapper name → callee
	for _, bd := range gowrapList {
		t.Run(bd.name, func(t *testing.T) {
			b := openGowrap(t, bd.name)
			if _, minor, _ := b.Version(); minor != bd.minor {
				t.Fatalf("built by %s, want Go 1.%d", b.GoVersion, bd.minor)
			}
			if arm := strings.Contains(bd.name, "arm64"); arm != (b.Arch == "arm64") {
				t.Fatalf("%s is %s", bd.name, b.Arch)
			}
			ws, err := b.GoWrappers()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			var callees []string
			for entry, callee := range ws {
				f, ok := b.FuncForPC(entry)
				if !ok || f.Entry != entry {
					t.Fatalf("wrapper at %#x is no function entry", entry)
				}
				if !strings.HasPrefix(f.Name, "main.") {
					continue
				}
				got[f.Name] = callee
				callees = append(callees, callee)
				if strings.HasPrefix(callee, "main.neg") {
					t.Errorf("real closure %s taken for a wrapper of %s", f.Name, callee)
				}
				shape := wrapperShapes[len(wrapperShapes)-1].name
				if bd.minor >= wrapperShapes[0].minMinor {
					shape = wrapperShapes[0].name
				}
				if !shape.MatchString(f.Name) {
					t.Errorf("wrapper %s (of %s): not the shape Go 1.%d names wrappers", f.Name, callee, bd.minor)
				}
			}
			checkCallees(t, bd, callees, got)
			results[bd.name] = got
			for _, name := range sortedKeys(got) {
				t.Logf("%s → %s", name, got[name])
			}
		})
	}
	// Stripping changes nothing.
	for _, bd := range gowrapList {
		plain := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(bd.name, "-s"), "-pie"), "-ext"), "-race")
		if plain == bd.name || results[bd.name] == nil || results[plain] == nil {
			continue
		}
		a, b := withoutGenerics(results[bd.name], bd.minor), withoutGenerics(results[plain], bd.minor)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%s and %s disagree:\n%v\n%v", bd.name, plain, results[bd.name], results[plain])
		}
	}
}

// withoutGenerics drops, for Go 1.19 and 1.20, the wrappers of generic
// functions, whose names differ between .symtab and the stripped
// function table.
func withoutGenerics(m map[string]string, minor int) map[string]string {
	if minor >= 21 {
		return m
	}
	out := map[string]string{}
	for k, v := range m {
		if !strings.Contains(v, "[") {
			out[k] = v
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestGoWrapperClosuresKeepNames checks the other side directly: no real
// closure of main is in the map, on a release with closure-like wrapper
// names and on one with gowrap names.
func TestGoWrapperClosuresKeepNames(t *testing.T) {
	for _, name := range []string{"go119-s", "go126-s"} {
		t.Run(name, func(t *testing.T) {
			b := openGowrap(t, name)
			ws, err := b.GoWrappers()
			if err != nil {
				t.Fatal(err)
			}
			// Every main.main closure that calls a neg* function is a real
			// closure: find them by their calls.
			closures := 0
			for _, fname := range b.FuncNames() {
				if !regexp.MustCompile(`^main\.main\.func\d+$`).MatchString(fname) {
					continue
				}
				f, _ := b.LookupFunc(fname)
				neg := false
				for _, callee := range []string{"main.negOne", "main.negA", "main.negB", "main.negSmall"} {
					if _, err := b.LookupFunc(callee); err != nil {
						continue
					}
					if cs, err := b.CallSites(f, callee); err == nil && len(cs) > 0 {
						neg = true
					}
				}
				if !neg {
					continue
				}
				closures++
				if c, ok := ws[f.Entry]; ok {
					t.Errorf("real closure %s named after %s", fname, c)
				}
			}
			if closures < 6 {
				t.Errorf("found %d real closures calling neg*, want at least 6", closures)
			}
		})
	}
}

// TestGoWrappersGoCommand runs the recognition over the largest Go
// programs at hand, the go commands themselves: every wrapper found must
// be a function the compiler generated for a go or defer statement, and
// its callee a function of the binary or one inlined into it.
func TestGoWrappersGoCommand(t *testing.T) {
	for _, path := range []string{goBin(), go119} {
		if _, err := os.Stat(path); err != nil {
			continue
		}
		b, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		start := time.Now()
		ws, err := b.GoWrappers()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s (%s): %d wrappers in %v", path, b.GoVersion, len(ws), time.Since(start))
		if len(ws) == 0 {
			t.Errorf("%s: no wrappers found", path)
		}
		for entry, callee := range ws {
			f, _ := b.FuncForPC(entry)
			if !wrapperName.MatchString(f.Name) || callee == "" || callee == f.Name {
				t.Errorf("%s → %q", f.Name, callee)
			}
		}
	}
}

// TestGoFuncBase checks go:func.* found through the module descriptor
// (what stripped binaries have) against .symtab.
func TestGoFuncBase(t *testing.T) {
	gowrapBuilds()
	for _, bd := range gowrapList {
		if bd.minor < 20 || bd.stripped {
			continue
		}
		t.Run(bd.name, func(t *testing.T) {
			b := openGowrap(t, bd.name)
			v, err := b.pclnView()
			if err != nil {
				t.Fatal(err)
			}
			sym, err := b.goFuncBase(v)
			if err != nil {
				t.Fatal(err)
			}
			md, err := b.moduleGoFunc(v)
			if err != nil || md != sym {
				t.Errorf("module descriptor: go:func.* %#x, %v; .symtab %#x", md, err, sym)
			}
		})
	}
}

// FuzzWrapperCode feeds arbitrary code to the classifiers and shape checks
// and arbitrary bytes to the pc-value table decoder: they must not panic.
func FuzzWrapperCode(f *testing.F) {
	b, err := Open(tinyTarget(f))
	if err != nil {
		f.Fatal(err)
	}
	defer b.Close()
	main, err := b.LookupFunc("main.main")
	if err != nil {
		f.Fatal(err)
	}
	code, err := b.readAt(main.Entry, min(main.End-main.Entry, 256))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(code, false)
	f.Add([]byte{0x10, 0x0b, 0x40, 0xf9, 0xff, 0x63, 0x30, 0xeb, 0xc0, 0x03, 0x5f, 0xd6}, true)
	f.Fuzz(func(t *testing.T, code []byte, arm bool) {
		if len(code) > maxWrapperSize {
			return
		}
		n := allocated(func() {
			var steps []step
			if arm {
				steps = b.stepsARM64(code, main.Entry)
			} else {
				steps = b.stepsAMD64(code, main.Entry)
			}
			calledCallee(steps, uint64(len(code)), true)
			calledCallee(steps, uint64(len(code)), false)
			v := &pclnView{pclnReader: pclnReader{data: code, ptrSize: 8}, quantum: 1}
			if rs, err := v.pcTable(1, uint64(len(code))); err == nil {
				valueAt(rs, uint64(len(code))/2)
			}
		})
		// Each instruction decoded is a few hundred bytes of garbage.
		if limit := uint64(1024*len(code) + 64<<10); n > limit {
			t.Fatalf("%d bytes of code: allocated %d", len(code), n)
		}
	})
}
