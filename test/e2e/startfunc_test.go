package e2e

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

// Start functions named as users wrote them: on every release, a leak of
// `go argLeaker(i, s)` (small: inlined into the wrapper since Go 1.22), of
// `go argLeakerBig(i, s)` (called by the wrapper) and of real closures
// `go func() { ... }()` (test/targets/goroutines), each built plain and
// stripped, sampled by one real agent.

// sfReleases are the Go minor versions the start function names are
// checked on.
var sfReleases = []int{19, 21, 22, 23, 24, 26, 27}

// sfBuild is one build of the goroutines target.
type sfBuild struct {
	name    string // e.g. "go122-stripped"
	minor   int
	version string // the toolchain's go version
	exe     string
}

var sfState struct {
	once    sync.Once
	builds  []sfBuild
	missing []string // releases without a toolchain, with the reason
	err     error
}

// sfToolchain returns the go command of Go 1.minor and the environment it
// needs: the running toolchain (1.26), 1.27 through GOTOOLCHAIN, the
// others from test/toolchains/fetch.sh (cached; it downloads Debian's
// packages the first time).
func sfToolchain(ctx context.Context, minor int) (string, []string, error) {
	switch minor {
	case 26:
		return goCommand(), nil, nil
	case 27:
		return goCommand(), []string{"GOTOOLCHAIN=go1.27.3"}, nil
	}
	script := filepath.Join(env.repoRoot, "test", "toolchains", "fetch.sh")
	if _, err := os.Stat(script); err != nil {
		if minor == 19 {
			return go119, nil, nil
		}
		return "", nil, err
	}
	out, err := exec.CommandContext(ctx, "bash", script, "go", fmt.Sprintf("1.%d", minor)).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + strings.TrimSpace(string(ee.Stderr))
		}
		return "", nil, fmt.Errorf("fetch.sh go 1.%d: %s", minor, msg)
	}
	return strings.TrimSpace(string(out)), nil, nil
}

// sfGo runs a go command with a clean toolchain environment plus extra.
func sfGo(ctx context.Context, gobin, dir string, extra []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir = dir
	cmd.Env = append(filteredEnv("GOROOT", "GOTOOLCHAIN", "GOFLAGS", "GOWORK", "GO111MODULE", "CGO_ENABLED", "GOOS", "GOARCH"),
		"GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false", "GOWORK=off", "CGO_ENABLED=0")
	cmd.Env = append(cmd.Env, extra...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", gobin, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// sfBuilds builds the goroutines target with every release, plain and
// stripped, two builds at a time (the compiler's work is in the build
// cache after the first run; each build links again). A release without a
// toolchain is a failure under CI=true and left out otherwise.
func sfBuilds(t *testing.T) []sfBuild {
	t.Helper()
	sfState.once.Do(func() {
		src := filepath.Join(env.repoRoot, "test", "targets", "goroutines")
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 2)
		builds := make([][]sfBuild, len(sfReleases))
		errs := make([]error, len(sfReleases))
		for i, minor := range sfReleases {
			wg.Add(1)
			go func() {
				defer wg.Done()
				gobin, extra, err := sfToolchain(env.ctx, minor)
				if err == nil {
					var ver string
					if ver, err = sfGo(env.ctx, gobin, src, extra, "env", "GOVERSION"); err == nil && !strings.HasPrefix(ver, fmt.Sprintf("go1.%d", minor)) {
						err = fmt.Errorf("%s is %s", gobin, ver)
					}
					for _, flavor := range []string{"plain", "stripped"} {
						if err != nil {
							break
						}
						b := sfBuild{name: fmt.Sprintf("go1%d-%s", minor, flavor), minor: minor, version: ver}
						b.exe = filepath.Join(env.dir, "sf-"+b.name)
						args := []string{"build", "-o", b.exe}
						if flavor == "stripped" {
							args = append(args, "-ldflags=-s -w")
						}
						sem <- struct{}{}
						_, err = sfGo(env.ctx, gobin, src, extra, append(args, ".")...)
						<-sem
						if err != nil {
							errs[i] = err
							return
						}
						builds[i] = append(builds[i], b)
					}
					if err == nil {
						return
					}
				}
				mu.Lock()
				sfState.missing = append(sfState.missing, fmt.Sprintf("Go 1.%d: %v", minor, err))
				mu.Unlock()
			}()
		}
		wg.Wait()
		for i := range sfReleases {
			if errs[i] != nil && sfState.err == nil {
				sfState.err = errs[i]
			}
			sfState.builds = append(sfState.builds, builds[i]...)
		}
		sort.Strings(sfState.missing)
	})
	if sfState.err != nil {
		t.Fatal(sfState.err)
	}
	if len(sfState.missing) > 0 {
		if isCI() {
			t.Fatalf("CI=true but releases are missing: %s", strings.Join(sfState.missing, "; "))
		}
		t.Logf("releases not tested here: %s", strings.Join(sfState.missing, "; "))
	}
	return sfState.builds
}

// wrapperLike matches the names of the functions go statements with
// arguments start in: a wrapper leaking its name into the metric.
var wrapperLike = regexp.MustCompile(`\.gowrap\d+$|^main\.main\.func\d+\.\d+$`)

func TestStartFunctionNames(t *testing.T) {
	requireBPF(t)
	builds := sfBuilds(t)
	a := startAgent(t, "runtime:\n  interval: 200ms\n  top_functions: 20\n")
	const nArgs, nBig, nClosures = 40, 30, 25
	for _, b := range builds {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			tp := startTarget(t, b.exe, uniqueService("sf", variant{name: b.name}))
			a.waitTargeted(t, tp.pid, 15*time.Second)
			if got := tp.number(t, fmt.Sprintf("/leakargs?n=%d", nArgs)); got != nArgs {
				t.Fatalf("/leakargs: %d goroutines", got)
			}
			if got := tp.number(t, fmt.Sprintf("/leakargsbig?n=%d", nBig)); got != nBig {
				t.Fatalf("/leakargsbig: %d goroutines", got)
			}
			code, body, err := tp.do("GET", fmt.Sprintf("/leakclosure?n=%d", nClosures))
			closure := strings.TrimSpace(body)
			if err != nil || code != 200 || !strings.HasPrefix(closure, "main.main.func") {
				t.Fatalf("/leakclosure: %d %v %q", code, err, body)
			}
			want := map[string]float64{"main.argLeaker": nArgs, "main.argLeakerBig": nBig, closure: nClosures}
			var live map[string]float64
			ok := waitFor(15*time.Second, func() bool {
				live = a.liveByFunction(tp.service)
				for fn, n := range want {
					if live[fn] != n {
						return false
					}
				}
				return true
			})
			if !ok {
				t.Fatalf("%s (%s): blindspot_go_goroutine_live %v, want %v", b.name, b.version, live, want)
			}
			for fn, n := range live {
				if fn != closure && wrapperLike.MatchString(fn) {
					t.Errorf("%s: %v goroutines under the wrapper's name %s", b.name, n, fn)
				}
			}
			t.Logf("%s (%s): %v", b.name, b.version, want)
		})
	}
}

// liveByFunction returns blindspot_go_goroutine_live of a service by start function.
func (a *agentProc) liveByFunction(service string) map[string]float64 {
	out := map[string]float64{}
	s, err := a.scrape()
	if err != nil {
		return out
	}
	for _, se := range s.gauges["blindspot_go_goroutine_live"] {
		if se.labels["service_name"] == service {
			out[se.labels["blindspot_go_goroutine_start_function"]] = se.sum
		}
	}
	return out
}
