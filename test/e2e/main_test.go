package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blindspot-dev/blindspot/test/testrepo"
)

// packageBudget bounds the whole package: every build and process runs
// under a context that ends then, and a watchdog kills the test binary
// shortly after.
const packageBudget = 60 * time.Minute

// go119 is the oldest toolchain the agent supports.
const go119 = "/usr/lib/go-1.19/bin/go"

// variant is one build of the target program.
type variant struct {
	name      string // e.g. "go126-pie"
	toolchain string // path of the go command that built it
	goVersion string // runtime.Version() of that toolchain, e.g. "go1.26.8"
	minor     int    // Go minor version: 19, 26, ...
	flavor    string // plain, stripped or pie
	exe       string // absolute path of the executable
}

// env is what TestMain prepared for the tests.
var env struct {
	ctx      context.Context // ends at the package budget
	dir      string          // temp dir holding the agent and targets
	agent    string          // the agent binary
	skip     string          // why tests needing BPF must skip ("" = run)
	variants []variant       // every target build
	skip119  string          // why the Go 1.19 variants are missing
	// skippedVariants names the HTTP server builds whose release is
	// missing here (never under CI), with the reason.
	skippedVariants []string
	repoRoot        string
	nobodyDir       string // world-readable dir holding a copy of the agent
}

func isCI() bool { return os.Getenv("CI") == "true" }

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), packageBudget)
	defer cancel()
	env.ctx = ctx
	watchdog := time.AfterFunc(packageBudget+20*time.Second, func() {
		fmt.Fprintln(os.Stderr, "e2e: package time budget exceeded")
		os.Exit(2)
	})
	defer watchdog.Stop()

	if reason := bpfUnavailable(); reason != "" {
		if isCI() {
			fmt.Fprintf(os.Stderr, "e2e: CI=true but %s\n", reason)
			return 1
		}
		env.skip = reason
	}
	if _, err := os.Stat(go119); err != nil {
		if isCI() {
			fmt.Fprintf(os.Stderr, "e2e: CI=true but Go 1.19 is missing: %v\n", err)
			return 1
		}
		env.skip119 = "Go 1.19 toolchain missing at " + go119
	}

	dir, err := os.MkdirTemp("", "blindspot-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	env.dir = dir
	defer func() {
		if env.nobodyDir != "" {
			os.RemoveAll(env.nobodyDir)
		}
	}()
	if err := build(ctx, dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build:", err)
		return 1
	}
	return m.Run()
}

// bpfUnavailable says why this host cannot run the agent, or "".
func bpfUnavailable() string {
	if os.Geteuid() != 0 {
		return "not running as root"
	}
	if _, err := os.Stat("/sys/bus/event_source/devices/uprobe"); err != nil {
		return "uprobes unavailable (no /sys/bus/event_source/devices/uprobe)"
	}
	return ""
}

// findRepoRoot walks up from the working directory to blindspot's go.mod.
func findRepoRoot() (string, error) { return testrepo.Root() }

// goCommand is the go command running these tests (Go 1.26 here).
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// runGo runs a go command in dir with a clean toolchain environment and
// returns its trimmed output.
func runGo(ctx context.Context, toolchain, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, toolchain, args...)
	cmd.Dir = dir
	cmd.Env = append(filteredEnv("GOROOT", "GOTOOLCHAIN", "GOFLAGS", "GOWORK", "GO111MODULE"),
		"GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false", "GOWORK=off", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", toolchain, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// filteredEnv is os.Environ without the named variables.
func filteredEnv(drop ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, d := range drop {
			if k == d {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// build compiles the agent, and the HTTP server target on every release in
// every flavour (cached across runs).
func build(ctx context.Context, dir string) error {
	root, err := findRepoRoot()
	if err != nil {
		return err
	}
	env.repoRoot = root
	env.agent = filepath.Join(dir, "blindspot")
	agentErr := make(chan error, 1)
	go func() {
		_, err := runGo(ctx, goCommand(), root, "build", "-o", env.agent, "./cmd/agent")
		agentErr <- err
	}()
	vs, skipped, err := buildMatrix(ctx, fullMatrix("httpserver"))
	if err != nil {
		return err
	}
	env.variants, env.skippedVariants = vs, skipped
	if err := <-agentErr; err != nil {
		return err
	}
	// A copy of the agent that an unprivileged user can run.
	nd, err := os.MkdirTemp("", "blindspot-e2e-nobody-")
	if err != nil {
		return err
	}
	env.nobodyDir = nd
	if err := os.Chmod(nd, 0o755); err != nil {
		return err
	}
	b, err := os.ReadFile(env.agent)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(nd, "blindspot"), b, 0o755)
}

// requireBPF skips (or, under CI, fails) a test this host cannot run.
func requireBPF(t *testing.T) {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
}

// variantByName returns the named variant, skipping the test when its
// toolchain is missing.
func variantByName(t *testing.T, name string) variant {
	t.Helper()
	for _, v := range env.variants {
		if v.name == name {
			return v
		}
	}
	for _, s := range env.skippedVariants {
		if strings.HasPrefix(s, name+":") {
			t.Skip(s)
		}
	}
	t.Fatalf("no variant %q", name)
	return variant{}
}

// allVariantNames lists every variant the tests expect, built or not.
func allVariantNames() []string {
	var out []string
	for _, v := range env.variants {
		out = append(out, v.name)
	}
	for _, s := range env.skippedVariants {
		name, _, _ := strings.Cut(s, ":")
		out = append(out, name)
	}
	return out
}
