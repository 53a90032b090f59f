package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDaemonSetConfig checks that the configuration deploy/daemonset.yaml's
// ConfigMap gives the agent is one the agent accepts.
func TestDaemonSetConfig(t *testing.T) {
	b, err := os.ReadFile("../../deploy/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	found := false
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if doc.Kind != "ConfigMap" {
			continue
		}
		cfg, ok := doc.Data["blindspot.yaml"]
		if !ok {
			t.Fatal("ConfigMap has no blindspot.yaml")
		}
		if _, err := ParseConfig([]byte(cfg)); err != nil {
			t.Errorf("ConfigMap's blindspot.yaml: %v", err)
		}
		found = true
	}
	if !found {
		t.Fatal("no ConfigMap in deploy/daemonset.yaml")
	}
}
