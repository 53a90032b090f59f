package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

func TestParseFlagsDefaults(t *testing.T) {
	fl, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := *fl.web.WebListenAddresses; len(got) != 1 || got[0] != ":9464" {
		t.Errorf("listen addresses %q, want [:9464]", got)
	}
	if fl.telemetryPath != "/metrics" || fl.disableExporterMetrics || *fl.web.WebSystemdSocket || fl.demo != "off" {
		t.Errorf("defaults: path %q, disable %v, systemd %v, demo %q", fl.telemetryPath, fl.disableExporterMetrics, *fl.web.WebSystemdSocket, fl.demo)
	}
	if fl.log.Level.String() != "info" || fl.log.Format.String() != "logfmt" {
		t.Errorf("log level %q format %q, want info logfmt", fl.log.Level, fl.log.Format)
	}
}

func TestParseFlags(t *testing.T) {
	fl, err := parseFlags([]string{
		"--web.listen-address", "127.0.0.1:1", "--web.listen-address=[::1]:2",
		"--web.telemetry-path=/agent/metrics", "--web.disable-exporter-metrics",
		"--web.systemd-socket", "--log.format=json", "--log.level", "debug", "--demo=auto",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(*fl.web.WebListenAddresses, " "); got != "127.0.0.1:1 [::1]:2" {
		t.Errorf("listen addresses %q", got)
	}
	if fl.telemetryPath != "/agent/metrics" || !fl.disableExporterMetrics || !*fl.web.WebSystemdSocket || fl.demo != "auto" {
		t.Errorf("path %q, disable %v, systemd %v, demo %q", fl.telemetryPath, fl.disableExporterMetrics, *fl.web.WebSystemdSocket, fl.demo)
	}
	if fl.log.Level.String() != "debug" || fl.log.Format.String() != "json" {
		t.Errorf("log level %q format %q, want debug json", fl.log.Level, fl.log.Format)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--log.format=xml"}, "xml"},
		{[]string{"--log.level=loud"}, "loud"},
		{[]string{"--demo=maybe"}, "maybe"},
		{[]string{"--bogus"}, "--bogus"},
		{[]string{"--web.telemetry-path=metrics"}, "absolute"},
		{[]string{"--web.telemetry-path=/healthz"}, "hide"},
		{[]string{"--web.telemetry-path=/"}, "hide"},
	} {
		_, err := parseFlags(tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one naming %q", tc.args, err, tc.want)
		}
	}
}

func TestParseFlagsHelpAndVersion(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "--version"} {
		var out bytes.Buffer
		fl, err := parseFlags([]string{arg}, &out)
		if err != nil || !fl.exit {
			t.Fatalf("%s: %v, exit %v", arg, err, fl != nil && fl.exit)
		}
		want := "--web.telemetry-path"
		if arg == "--version" {
			want = "blindspot, version "
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("%s printed %q, want %q in it", arg, out.String(), want)
		}
	}
}

func TestCheckKernel(t *testing.T) {
	ok := func() error { return nil }
	missing := func() error { return fmt.Errorf("probe: %w", ebpf.ErrNotSupported) }
	refused := func() error { return errors.New("operation not permitted") }
	if err := checkKernel([]kernelFeature{{"a", "5.8", ok}, {"b", "5.15", refused}}); err != nil {
		t.Errorf("supported or unknown features: %v", err)
	}
	err := checkKernel([]kernelFeature{{"a", "5.8", ok}, {"BPF cookies on uprobes", "5.15", missing}})
	if err == nil || !strings.Contains(err.Error(), "BPF cookies on uprobes (Linux 5.15)") || !strings.Contains(err.Error(), "needs Linux 5.15 or newer") {
		t.Errorf("missing feature: %v", err)
	}
	// This host runs the agent (Linux 6.18): every feature is there.
	if err := checkKernel(kernelFeatures); err != nil {
		t.Errorf("this kernel: %v", err)
	}
}
