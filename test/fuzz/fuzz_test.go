// Package fuzz runs every fuzz target of the repository for a short,
// bounded time, as CI does: each parser of untrusted bytes (ELF files,
// .gopclntab, build info, DWARF, type data, the disassembly of probe
// sites, cgroup files, the configuration file, ring events, the Kubernetes
// API's pod lists and watch events) has one, and each asserts
// bounded allocation, not only the absence of panics. The seed corpora
// are committed under each package's testdata/fuzz; what a run finds
// failing is written there too, to be committed with its fix.
package fuzz

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/blindspot-dev/blindspot/test/testrepo"
)

// perTarget is how long each target is fuzzed (BLINDSPOT_FUZZTIME
// overrides it, e.g. "1m" for a longer local run). 26 targets of 6s keep
// the phase under three minutes once the instrumented builds are in the
// build cache.
const perTarget = 6 * time.Second

// buildMargin is the time each run may take beyond perTarget to build.
// Fuzzing instruments every package linked in: cmd/agent's first
// instrumented build on a cold cache took 11 minutes on this (shared)
// machine when it linked client-go, 14 seconds once cached.
const buildMargin = 20 * time.Minute

// required are the targets that must exist: one per parser of untrusted
// bytes (package → targets).
var required = map[string][]string{
	"symbols":            {"FuzzNewBinary", "FuzzSectionHeaders", "FuzzBuildInfo", "FuzzPclntab", "FuzzDWARF", "FuzzDWARFIndex", "FuzzTypeData", "FuzzSites", "FuzzWrapperCode", "FuzzScanVersions"},
	"cmd/agent":          {"FuzzParseConfig"},
	"probes/httpserver":  {"FuzzDecode", "FuzzMuxRoute"},
	"probes/httpclient":  {"FuzzDecode"},
	"probes/dbsql":       {"FuzzDecode", "FuzzParseSQL"},
	"probes/userfunc":    {"FuzzDecode"},
	"probes/grpcserver":  {"FuzzDecode"},
	"probes/grpcclient":  {"FuzzDecode"},
	"internal/container": {"FuzzParse"},
	"internal/kube":      {"FuzzWatchEvent", "FuzzPodList"},
	"aggregator":         {"FuzzRouterRoute", "FuzzTemplatePath"},
}

// failed matches what a real failure prints: a failing input (new, or
// from the corpus), a panic, or a test's own message.
var failed = regexp.MustCompile(`Failing input written|failure while testing seed corpus entry|panic:|_test\.go:\d+:`)

var fuzzFunc = regexp.MustCompile(`(?m)^func (Fuzz\w+)\(\w+ \*testing\.F\)`)

type target struct{ pkg, name string }

// targets lists every fuzz target under root.
func targets(root string) ([]target, error) {
	var out []target
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		for _, m := range fuzzFunc.FindAllSubmatch(src, -1) {
			out = append(out, target{filepath.ToSlash(rel), string(m[1])})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].pkg != out[j].pkg {
			return out[i].pkg < out[j].pkg
		}
		return out[i].name < out[j].name
	})
	return out, err
}

// TestFuzzTargetsExist checks that every parser keeps its fuzz target.
func TestFuzzTargetsExist(t *testing.T) {
	root, err := testrepo.Root()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := targets(root)
	if err != nil {
		t.Fatal(err)
	}
	have := map[target]bool{}
	for _, tg := range ts {
		have[tg] = true
	}
	for pkg, names := range required {
		for _, n := range names {
			if !have[target{pkg, n}] {
				t.Errorf("%s has no %s", pkg, n)
			}
		}
	}
}

// TestFuzz runs each target for a bounded time (with CI=true, or when
// BLINDSPOT_FUZZTIME is set).
func TestFuzz(t *testing.T) {
	per := perTarget
	if v := os.Getenv("BLINDSPOT_FUZZTIME"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("BLINDSPOT_FUZZTIME: %v", err)
		}
		per = d
	} else if os.Getenv("CI") != "true" {
		t.Skip("fuzzing runs with CI=true or BLINDSPOT_FUZZTIME=<duration>")
	}
	root, err := testrepo.Root()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := targets(root)
	if err != nil {
		t.Fatal(err)
	}
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(gobin); err != nil || os.Getenv("GOROOT") == "" {
		if gobin, err = exec.LookPath("go"); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for _, tg := range ts {
		t.Run(strings.ReplaceAll(tg.pkg, "/", "_")+"/"+tg.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), per+buildMargin)
			defer cancel()
			cmd := exec.CommandContext(ctx, gobin, "test", "-run=^$", "-fuzz=^"+tg.name+"$",
				"-fuzztime="+per.String(), "-fuzzminimizetime=0", "-parallel=1", "./"+tg.pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			corpus := filepath.Join(root, tg.pkg, "testdata", "fuzz", tg.name)
			before := entries(corpus)
			t0 := time.Now()
			err := cmd.Run()
			if err == nil {
				t.Logf("%v: %s", time.Since(t0).Round(time.Second), lastExecs(out.String()))
				return
			}
			found := failed.MatchString(out.String())
			if added := entries(corpus) - before; added > 0 || found {
				t.Fatalf("%s %s found a failing input (%d written to %s): %v\n%s", tg.pkg, tg.name, added, corpus, err, out.String())
			}
			// Go's fuzzing coordinator sometimes ends a run at -fuzztime
			// with a bare FAIL and no input (golang/go#56238): replay the
			// corpus to tell that from a real failure.
			replay := exec.CommandContext(ctx, gobin, "test", "-count=1", "-run=^"+tg.name+"$", "./"+tg.pkg)
			replay.Dir, replay.Env = root, cmd.Env
			if rout, rerr := replay.CombinedOutput(); rerr != nil {
				t.Fatalf("%s %s: %v\n%s\nreplaying the corpus: %v\n%s", tg.pkg, tg.name, err, out.String(), rerr, rout)
			}
			t.Logf("%v: ended with a bare FAIL and no failing input (the coordinator's shutdown race); the corpus replays clean: %s", time.Since(t0).Round(time.Second), lastExecs(out.String()))
		})
	}
	t.Logf("%d targets fuzzed in %v", len(ts), time.Since(start).Round(time.Second))
}

// entries counts the files of a corpus directory.
func entries(dir string) int {
	es, _ := os.ReadDir(dir)
	return len(es)
}

// lastExecs returns the last progress line of a fuzzing run.
func lastExecs(out string) string {
	last := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "execs:") {
			last = sc.Text()
		}
	}
	if last == "" {
		return fmt.Sprintf("no progress line in %q", out)
	}
	return last
}
