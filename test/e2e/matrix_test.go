package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// The release matrix: every Go release this machine can build with, and
// the ways programs are built in the wild. Targets are built once per
// (program, release, flavour) and cached across runs, keyed by the
// toolchain's version, the flavour and the program's sources.

// releases are the Go minor versions every family is tested on.
var releases = []int{19, 21, 22, 23, 24, 26, 27}

// flavors are the build modes: plain, stripped (-s -w), PIE, and cgo linked
// by the system linker and stripped, as distributions and container images
// ship them.
var flavors = []string{"plain", "stripped", "pie", "extlink"}

// toolchain is one Go release's go command.
type toolchain struct {
	minor   int
	gobin   string
	env     []string // e.g. GOTOOLCHAIN=go1.27.3
	version string   // e.g. go1.21.13
}

var tcState struct {
	once    sync.Once
	byMinor map[int]toolchain
	missing map[int]string // why a release is unavailable
}

// toolchains finds (and, through test/toolchains/fetch.sh, fetches) the go
// command of every release.
func toolchains() (map[int]toolchain, map[int]string) {
	tcState.once.Do(func() {
		tcState.byMinor = map[int]toolchain{}
		tcState.missing = map[int]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, minor := range releases {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tc, err := findToolchain(env.ctx, minor)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					tcState.missing[minor] = err.Error()
					return
				}
				tcState.byMinor[minor] = tc
			}()
		}
		wg.Wait()
	})
	return tcState.byMinor, tcState.missing
}

func findToolchain(ctx context.Context, minor int) (toolchain, error) {
	tc := toolchain{minor: minor}
	switch minor {
	case 26:
		tc.gobin = goCommand()
	case 27:
		tc.gobin, tc.env = goCommand(), []string{"GOTOOLCHAIN=go1.27.3"}
	default:
		out, err := exec.CommandContext(ctx, "bash", filepath.Join(env.repoRoot, "test", "toolchains", "fetch.sh"),
			"go", fmt.Sprintf("1.%d", minor)).Output()
		if err != nil {
			msg := err.Error()
			if ee, ok := err.(*exec.ExitError); ok {
				msg += ": " + strings.TrimSpace(string(ee.Stderr))
			}
			return tc, fmt.Errorf("fetch Go 1.%d: %s", minor, msg)
		}
		tc.gobin = strings.TrimSpace(string(out))
	}
	ver, err := goRun(ctx, tc, env.repoRoot, false, "env", "GOVERSION")
	if err != nil {
		return tc, err
	}
	if !strings.HasPrefix(ver, fmt.Sprintf("go1.%d", minor)) {
		return tc, fmt.Errorf("%s is %s, want Go 1.%d", tc.gobin, ver, minor)
	}
	tc.version = ver
	return tc, nil
}

// goRun runs a go command of tc in dir, isolated from the caller's
// toolchain settings, with cgo only when asked.
func goRun(ctx context.Context, tc toolchain, dir string, cgo bool, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, tc.gobin, args...)
	cmd.Dir = dir
	cgoEnv := "CGO_ENABLED=0"
	if cgo {
		cgoEnv = "CGO_ENABLED=1"
	}
	cmd.Env = append(filteredEnv("GOROOT", "GOTOOLCHAIN", "GOFLAGS", "GOWORK", "GO111MODULE", "CGO_ENABLED", "GOOS", "GOARCH"),
		"GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false", "GOWORK=off", cgoEnv)
	cmd.Env = append(cmd.Env, tc.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", tc.gobin, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// flavorArgs returns the build arguments of a flavour, and whether it needs
// cgo.
func flavorArgs(flavor string) ([]string, bool) {
	switch flavor {
	case "stripped":
		return []string{"-ldflags=-s -w"}, false
	case "pie":
		return []string{"-buildmode=pie"}, false
	case "extlink":
		return []string{"-ldflags=-s -w -linkmode=external"}, true
	}
	return nil, false
}

// targetCacheDir holds built targets across runs.
func targetCacheDir() string {
	root := os.Getenv("BLINDSPOT_CACHE")
	if root == "" {
		root = "/var/cache/blindspot"
	}
	return filepath.Join(root, "targets")
}

// buildSem lets two builds run at once: the host has two CPUs.
var buildSem = make(chan struct{}, 2)

// buildTarget builds test/targets/<prog> with tc in a flavour, or returns
// the cached build of the same sources, toolchain and flavour.
func buildTarget(ctx context.Context, tc toolchain, prog, flavor string) (string, error) {
	dir, modVariant, _ := strings.Cut(prog, ":")
	src := filepath.Join(env.repoRoot, "test", "targets", dir)
	args, cgo := flavorArgs(flavor)
	if modVariant != "" {
		// One source under other releases of its modules: "routers:old"
		// builds test/targets/routers with its go.old.mod (and go.old.sum).
		args = append(args, "-modfile=go."+modVariant+".mod")
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%q\x00%v\x00", tc.version, flavor, args, cgo)
	var files []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(src, f)
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(b))
		h.Write(b)
	}
	name := fmt.Sprintf("%s-go1%d-%s-%s", targetName(prog), tc.minor, flavor, hex.EncodeToString(h.Sum(nil))[:16])
	exe := filepath.Join(targetCacheDir(), name)
	if _, err := os.Stat(exe); err == nil {
		return exe, nil
	}
	if err := os.MkdirAll(targetCacheDir(), 0o755); err != nil {
		return "", err
	}
	select {
	case buildSem <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-buildSem }()
	tmp := fmt.Sprintf("%s.tmp%d", exe, os.Getpid())
	bargs := append(append([]string{"build", "-o", tmp}, args...), ".")
	if _, err := goRun(ctx, tc, src, cgo, bargs...); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return exe, os.Rename(tmp, exe)
}

// targetName is a program's name in file names: "routers:old" is
// "routers-old".
func targetName(prog string) string { return strings.ReplaceAll(prog, ":", "-") }

// linkInto makes the cached build exe available as dir/name: a hard link,
// or a copy across file systems.
func linkInto(dir, exe, name string) (string, error) {
	dst := filepath.Join(dir, name)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.Link(exe, dst); err == nil {
		return dst, nil
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		return "", err
	}
	return dst, os.WriteFile(dst, b, 0o755)
}

// matrixBuild is one requested build.
type matrixBuild struct {
	prog, flavor string
	minor        int
}

// buildMatrix builds the given targets concurrently (two at a time) and
// returns them as variants, in order. A release whose toolchain is missing
// fails under CI and is left out otherwise, with the reason.
func buildMatrix(ctx context.Context, want []matrixBuild) ([]variant, []string, error) {
	tcs, missing := toolchains()
	out := make([]variant, len(want))
	errs := make([]error, len(want))
	var skipped []string
	var wg sync.WaitGroup
	for i, w := range want {
		tc, ok := tcs[w.minor]
		if !ok {
			if isCI() {
				return nil, nil, fmt.Errorf("CI=true but Go 1.%d is unavailable: %s", w.minor, missing[w.minor])
			}
			skipped = append(skipped, fmt.Sprintf("go1%d-%s: %s", w.minor, w.flavor, missing[w.minor]))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			exe, err := buildTarget(ctx, tc, w.prog, w.flavor)
			if err == nil {
				// Test agents instrument only what runs from env.dir.
				exe, err = linkInto(env.dir, exe, fmt.Sprintf("%s-go1%d-%s", targetName(w.prog), w.minor, w.flavor))
			}
			out[i] = variant{
				name: fmt.Sprintf("go1%d-%s", w.minor, w.flavor), toolchain: tc.gobin,
				goVersion: tc.version, minor: w.minor, flavor: w.flavor, exe: exe,
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	var vs []variant
	for i := range want {
		if errs[i] != nil {
			return nil, nil, fmt.Errorf("build %s go1.%d %s: %w", want[i].prog, want[i].minor, want[i].flavor, errs[i])
		}
		if out[i].exe != "" {
			vs = append(vs, out[i])
		}
	}
	return vs, skipped, nil
}

// fullMatrix is every release in every flavour.
func fullMatrix(prog string) []matrixBuild {
	var out []matrixBuild
	for _, m := range releases {
		for _, f := range flavors {
			out = append(out, matrixBuild{prog, f, m})
		}
	}
	return out
}

// perRelease is each release in the given flavours only.
func perRelease(prog string, fl ...string) []matrixBuild {
	var out []matrixBuild
	for _, m := range releases {
		for _, f := range fl {
			out = append(out, matrixBuild{prog, f, m})
		}
	}
	return out
}

// requireMatrix fails or skips a test whose builds had releases missing.
func requireMatrix(t *testing.T, skipped []string) {
	t.Helper()
	if len(skipped) > 0 {
		t.Logf("releases not tested here: %s", strings.Join(skipped, "; "))
	}
}
