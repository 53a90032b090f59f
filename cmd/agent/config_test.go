package main

import (
	"os"
	"strings"
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
