package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blindspot-dev/blindspot/internal/lifecycle"
)

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
include:
  - exe: "/opt/shop/*"
exclude:
  - service: "debug-*"
services:
  - exe: "/opt/shop/orders"
    name: order-svc
    namespace: shop
http:
  route_limit: 50
  routes: ["/users/{id}"]
series_limit: 500
discovery_interval: 250ms
grace: 1m
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.RouteLimit != 50 || cfg.SeriesLimit != 500 || cfg.DiscoveryInterval != 250*time.Millisecond || cfg.Grace != time.Minute {
		t.Fatalf("parsed %+v", cfg)
	}
	if !cfg.Wanted(lifecycle.Subject{Exe: "/opt/shop/orders", Service: "order-svc"}) {
		t.Error("included program not wanted")
	}
	if cfg.Wanted(lifecycle.Subject{Exe: "/usr/bin/other", Service: "other"}) {
		t.Error("program outside include wanted")
	}
	if cfg.Wanted(lifecycle.Subject{Exe: "/opt/shop/x", Service: "debug-x"}) {
		t.Error("excluded service wanted")
	}
	if r, ok := cfg.ServiceFor("/opt/shop/orders"); !ok || r.Name != "order-svc" || r.Namespace != "shop" {
		t.Errorf("ServiceFor = %+v, %v", r, ok)
	}
}

func TestEmptyConfigWantsEverything(t *testing.T) {
	cfg, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Wanted(lifecycle.Subject{Exe: "/any", Service: "any"}) {
		t.Error("empty config must instrument every program")
	}
}

func TestConfigErrors(t *testing.T) {
	cases := map[string]string{
		"unknown key":       "inclde: []",
		"bad yaml":          "include: [",
		"empty rule":        "include: [{}]",
		"bad glob":          `exclude: [{exe: "[x"}]`,
		"service needs exe": "services: [{name: x}]",
		"bad template":      `http: {routes: ["users/{id}"]}`,
		"negative limit":    "series_limit: -1",
		"bad duration":      "grace: soon",
		"two documents":     "series_limit: 10\n---\ninclude: [{exe: /x}]\n",
		"discovery 1ns":     "discovery_interval: 1ns",
		"runtime 1ns":       "runtime: {interval: 1ns}",
	}
	for name, text := range cases {
		_, err := ParseConfig([]byte(text))
		if err == nil {
			t.Errorf("%s: no error for %q", name, text)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error spans lines: %q", name, err)
		}
	}
}

// The configuration example in the README parses as it stands.
func TestREADMEConfigExample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "## Configuration")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	if !ok {
		t.Fatal("Configuration section has no yaml block")
	}
	example, _, _ := strings.Cut(rest, "```")
	if _, err := ParseConfig([]byte(example)); err != nil {
		t.Fatalf("README example: %v\n%s", err, example)
	}
}

// One document, even with the optional markers, is one document.
func TestConfigDocumentMarkers(t *testing.T) {
	for _, text := range []string{"---\nseries_limit: 10\n", "series_limit: 10\n...\n", "# only a comment\n"} {
		if _, err := ParseConfig([]byte(text)); err != nil {
			t.Errorf("%q: %v", text, err)
		}
	}
}

// Files that are not regular, or too large, are refused at once with a
// reason, never read without end nor waited on.
func TestLoadConfigRefusesOddFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", maxConfigSize)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		fifo:        "not a regular file (a FIFO)",
		"/dev/zero": "not a regular file (a character device)",
		dir:         "not a regular file (a directory)",
		big:         "larger than 1024 KiB",
	} {
		done := make(chan error, 1)
		go func() { _, err := LoadConfig(file); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: err = %v, want %q", file, err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: LoadConfig still reading after 10s", file)
		}
	}
}

// FuzzParseConfig: any file is accepted or refused with a one-line error,
// without panicking, and what is accepted has its business entries
// validated without panicking either; memory stays bounded by the input.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		"",
		"include: [{exe: \"/opt/*\"}]\nseries_limit: 10\n",
		"services: [{exe: /x, name: y, namespace: z}]\nhttp: {route_limit: 5, routes: [\"/users/{id}\"]}\n",
		"functions:\n  - function: main.processOrder\n    metric: orders_total\n    labels: {kind: \"arg:1\"}\n",
		"runtime: {interval: 2s, top_functions: 5}\notlp: {endpoint: \"http://c:4318\", protocol: grpc}\n",
		"a: &a [*a, *a, *a, *a]\n",
		"x: 1\n---\ny: 2\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cfg, err := ParseConfig(data)
		runtime.ReadMemStats(&after)
		// yaml.v3 refuses alias expansion beyond a ratio of the input.
		if n := after.TotalAlloc - before.TotalAlloc; n > uint64(1024*len(data)+4<<20) {
			t.Fatalf("parsing %d bytes allocated %d", len(data), n)
		}
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		for i := range cfg.Functions {
			cfg.Functions[i].Validate(nil)
		}
	})
}
