package symbols

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const go119 = "/usr/lib/go-1.19/bin/go"

// build is one way the target program is built.
type build struct {
	name     string // e.g. "go126-pie-s"
	gobin    string
	goarch   string
	pie      bool
	stripped bool
	extLink  bool     // cgo, linked by the system linker as distributions do
	env      []string // e.g. GOTOOLCHAIN=go1.27.3
	minor    int      // expected Go minor version
}

func (b build) plain() string {
	return strings.TrimSuffix(b.name, "-s")
}

var builds = []build{
	{name: "go126", minor: 26},
	{name: "go126-s", stripped: true, minor: 26},
	{name: "go126-pie", pie: true, minor: 26},
	{name: "go126-pie-s", pie: true, stripped: true, minor: 26},
	{name: "go126-arm64", goarch: "arm64", minor: 26},
	{name: "go126-arm64-s", goarch: "arm64", stripped: true, minor: 26},
	{name: "go126-ext", extLink: true, minor: 26},
	{name: "go126-ext-s", extLink: true, stripped: true, minor: 26},
	{name: "go126-ext-pie", extLink: true, pie: true, minor: 26},
	{name: "go126-ext-pie-s", extLink: true, pie: true, stripped: true, minor: 26},
	{name: "go119", gobin: go119, minor: 19},
	{name: "go119-ext", gobin: go119, extLink: true, minor: 19},
	{name: "go119-ext-s", gobin: go119, extLink: true, stripped: true, minor: 19},
	{name: "go119-s", gobin: go119, stripped: true, minor: 19},
	{name: "go119-pie", gobin: go119, pie: true, minor: 19},
	{name: "go119-pie-s", gobin: go119, pie: true, stripped: true, minor: 19},
}

// Every other release: with .symtab and DWARF, and cgo linked externally
// with and without them.
func init() {
	for _, minor := range []int{21, 22, 23, 24, 27} {
		var env []string
		if minor == 27 {
			env = []string{"GOTOOLCHAIN=go1.27.3"}
		}
		n := fmt.Sprintf("go1%d", minor)
		builds = append(builds,
			build{name: n, minor: minor, env: env},
			build{name: n + "-ext", extLink: true, minor: minor, env: env},
			build{name: n + "-ext-s", extLink: true, stripped: true, minor: minor, env: env})
	}
}

// hasBuild reports whether builds has one of that name.
func hasBuild(name string) bool {
	for _, bd := range builds {
		if bd.name == name {
			return true
		}
	}
	return false
}

// gobinFor returns the go command of a build's release.
func gobinFor(bd build) (string, error) {
	switch {
	case bd.gobin != "":
		return bd.gobin, nil
	case bd.minor == 26 || bd.minor == 27:
		return goBin(), nil
	}
	return fetchGo(bd.minor)
}

var (
	buildOnce sync.Once
	dirOnce   sync.Once
	tinyOnce  sync.Once
	tinyErr   error
	buildDir  string
	buildErrs = map[string]error{}
	buildMu   sync.Mutex
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// goBin is the Go toolchain running the tests.
func goBin() string {
	if p, err := exec.LookPath(filepath.Join(os.Getenv("GOROOT"), "bin", "go")); err == nil && os.Getenv("GOROOT") != "" {
		return p
	}
	return "/usr/local/go/bin/go"
}

// runGo runs one go command with a time bound, isolated from the caller's
// toolchain settings.
func runGo(gobin, dir string, env []string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "GOROOT", "GOTOOLCHAIN", "GOFLAGS", "GOOS", "GOARCH", "CGO_ENABLED":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %v: %s", gobin, strings.Join(args, " "), err, out.String())
	}
	return out.Bytes(), nil
}

// makeBuildDir creates the temporary directory all builds go to.
func makeBuildDir() {
	dirOnce.Do(func() {
		var err error
		buildDir, err = os.MkdirTemp("", "symbols-test")
		if err != nil {
			panic(err)
		}
	})
}

// tinyTarget builds a minimal stripped program (the fuzzing seed) once.
func tinyTarget(tb testing.TB) string {
	tb.Helper()
	tinyOnce.Do(func() {
		makeBuildDir()
		src := filepath.Join(buildDir, "tiny-src")
		os.MkdirAll(src, 0o755)
		os.WriteFile(filepath.Join(src, "go.mod"), []byte("module tiny\n\ngo 1.19\n"), 0o644)
		os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() { println(1) }\n"), 0o644)
		_, tinyErr = runGo(goBin(), src, nil, "build", "-ldflags=-s -w", "-o", filepath.Join(buildDir, "tiny"), ".")
	})
	if tinyErr != nil {
		tb.Fatal(tinyErr)
	}
	return filepath.Join(buildDir, "tiny")
}

func buildAll() {
	var err error
	makeBuildDir()
	src, err := filepath.Abs("testdata/target")
	if err != nil {
		panic(err)
	}

	// One goroutine per release: they share no build cache entries; two
	// at a time, the host has two CPUs.
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	byMinor := map[int][]build{}
	for _, bd := range builds {
		byMinor[bd.minor] = append(byMinor[bd.minor], bd)
	}
	for _, bds := range byMinor {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			for _, bd := range bds {
				g, err := gobinFor(bd)
				if err == nil {
					_, err = os.Stat(g)
				}
				if err != nil {
					buildMu.Lock()
					buildErrs[bd.name] = err
					buildMu.Unlock()
					continue
				}
				args := []string{"build", "-o", filepath.Join(buildDir, bd.name)}
				if bd.pie {
					args = append(args, "-buildmode=pie")
				}
				var ldflags []string
				if bd.stripped {
					ldflags = append(ldflags, "-s", "-w")
				}
				env := append([]string(nil), bd.env...)
				if bd.extLink {
					ldflags = append(ldflags, "-linkmode=external")
					env = append(env, "CGO_ENABLED=1")
				}
				if len(ldflags) > 0 {
					args = append(args, "-ldflags="+strings.Join(ldflags, " "))
				}
				if bd.goarch != "" {
					env = append(env, "GOARCH="+bd.goarch)
				}
				_, err = runGo(g, src, env, append(args, ".")...)
				buildMu.Lock()
				buildErrs[bd.name] = err
				buildMu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// target returns the path of a built target, skipping (or, with CI=true,
// failing) when Go 1.19 is missing.
func target(tb testing.TB, name string) string {
	tb.Helper()
	buildOnce.Do(buildAll)
	buildMu.Lock()
	err := buildErrs[name]
	buildMu.Unlock()
	if err != nil {
		if os.IsNotExist(err) && os.Getenv("CI") != "true" {
			tb.Skipf("toolchain for %s missing: %v", name, err)
		}
		tb.Fatalf("build %s: %v", name, err)
	}
	return filepath.Join(buildDir, name)
}

var (
	openMu   sync.Mutex
	openBins = map[string]*Binary{}
)

// open returns the parsed target, shared between tests.
func open(tb testing.TB, name string) *Binary {
	tb.Helper()
	path := target(tb, name)
	openMu.Lock()
	defer openMu.Unlock()
	if b, ok := openBins[name]; ok {
		return b
	}
	b, err := Open(path)
	if err != nil {
		tb.Fatalf("open %s: %v", name, err)
	}
	openBins[name] = b
	return b
}

// funcTables reads the functions of b's .gopclntab and .symtab apart, by
// name (nil for a source that is absent or unusable), from a copy of b
// opened anew: the Binary keeps only their merged table.
func funcTables(tb testing.TB, b *Binary) (pcln, symtab map[string]Func) {
	tb.Helper()
	c, err := Open(b.Path)
	if err != nil {
		tb.Fatalf("open %s: %v", b.Path, err)
	}
	defer c.Close()
	syms, symText, err := c.symtabFuncs()
	if err == nil {
		symtab = map[string]Func{}
		for name, f := range syms {
			symtab[name] = f.Func
		}
	}
	funcs, err := c.pclnFuncs(symText)
	if err == nil {
		pcln = map[string]Func{}
		for name, f := range funcs {
			pcln[name] = f.Func
		}
	}
	return pcln, symtab
}

// allFuncs returns the function table of b, names read, sorted by entry.
func allFuncs(tb testing.TB, b *Binary) []Func {
	tb.Helper()
	t := b.funcs()
	out := make([]Func, len(t.funcs))
	for i := range t.funcs {
		f, ok := b.funcAt(t, i)
		if !ok {
			tb.Fatalf("function %d at %#x: name unreadable", i, t.funcs[i].entry)
		}
		out[i] = f
	}
	return out
}
