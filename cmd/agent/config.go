package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/exporter"
	"github.com/blindspot-dev/blindspot/internal/lifecycle"
	"github.com/blindspot-dev/blindspot/probes/userfunc"
)

// Config is the agent's configuration file (--config). Every field is
// optional: with no file, every Go program on the host is instrumented.
type Config struct {
	// Selection (include:, exclude:, services:) picks and names the
	// programs to instrument.
	lifecycle.Selection `yaml:",inline"`
	// HTTP tunes the HTTP metrics.
	HTTP HTTPConfig `yaml:"http"`
	// DB tunes the database/sql metrics.
	DB DBConfig `yaml:"db"`
	// SeriesLimit bounds the series of every metric (default 2000).
	SeriesLimit int `yaml:"series_limit"`
	// DiscoveryInterval is how often /proc is rescanned (default 1s); new
	// programs are also noticed at their exec.
	DiscoveryInterval time.Duration `yaml:"discovery_interval"`
	// Grace is how long an exited program's series stay (default 5m).
	Grace time.Duration `yaml:"grace"`
	// Functions are business functions to measure (see
	// internal/lifecycle/business.go): each entry is checked on its own,
	// and a bad one is reported and skipped.
	Functions []userfunc.Entry `yaml:"functions"`
	// OTLP pushes the metrics to an OpenTelemetry collector. Fields left
	// out come from the standard OTEL_EXPORTER_OTLP_* variables.
	OTLP *OTLPConfig `yaml:"otlp"`
	// Runtime tunes the runtime metrics (goroutines, GC, process).
	Runtime RuntimeConfig `yaml:"runtime"`
	// Kubernetes labels series with their pods (see KubernetesConfig).
	Kubernetes KubernetesConfig `yaml:"kubernetes"`
}

// RuntimeConfig tunes the runtime sampler.
type RuntimeConfig struct {
	// Interval is how often each program's runtime is sampled (default 1s).
	Interval time.Duration `yaml:"interval"`
	// TopFunctions is how many goroutine start functions get their own
	// series per program; the rest are "other" (default 20).
	TopFunctions int `yaml:"top_functions"`
}

// OTLPConfig is the optional otlp: section. Its presence turns the push on
// (unless Enabled is false); each field overrides its OTEL_* variable.
type OTLPConfig struct {
	Enabled *bool `yaml:"enabled"`
	// Endpoint is the collector's base URL, e.g. http://collector:4318
	// (OTEL_EXPORTER_OTLP_ENDPOINT).
	Endpoint string `yaml:"endpoint"`
	// Protocol is grpc or http/protobuf (OTEL_EXPORTER_OTLP_PROTOCOL).
	Protocol string            `yaml:"protocol"`
	Headers  map[string]string `yaml:"headers"`
	// Interval between exports (OTEL_METRIC_EXPORT_INTERVAL, default 60s).
	Interval time.Duration `yaml:"interval"`
	// Timeout of one export (OTEL_METRIC_EXPORT_TIMEOUT, default 30s).
	Timeout time.Duration `yaml:"timeout"`
	// Temporality is cumulative, delta or lowmemory
	// (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE).
	Temporality string `yaml:"temporality"`
	// HistogramAggregation is explicit_bucket_histogram or
	// base2_exponential_bucket_histogram
	// (OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION).
	HistogramAggregation string `yaml:"histogram_aggregation"`
}

// Options returns the section as exporter options.
func (o *OTLPConfig) Options() exporter.OTLPOptions {
	return exporter.OTLPOptions{
		Endpoint: o.Endpoint, Protocol: o.Protocol, Headers: o.Headers,
		Interval: o.Interval, Timeout: o.Timeout,
		Temporality: o.Temporality, Histogram: o.HistogramAggregation,
	}
}

// DBConfig tunes the database/sql metrics.
type DBConfig struct {
	// PoolNames renames connection pools: default name (the driver's
	// system and the pool's first-seen order in its process, e.g.
	// "postgresql-1") → db_client_connection_pool_name.
	PoolNames map[string]string `yaml:"pool_names"`
}

// HTTPConfig tunes the HTTP metrics.
type HTTPConfig struct {
	// RouteLimit bounds distinct http_route values per service (default 200).
	RouteLimit int `yaml:"route_limit"`
	// Routes are route templates ("/users/{id}") tried before folding
	// identifiers, for programs without ServeMux patterns.
	Routes []string `yaml:"routes"`
}

// maxConfigSize bounds the configuration file: a long list of business
// functions is a few kilobytes.
const maxConfigSize = 1 << 20

// Shortest intervals accepted: shorter ones would spend the agent's CPU
// rescanning /proc or sampling runtimes, for nothing a scrape could see.
const (
	minDiscoveryInterval = 100 * time.Millisecond
	minRuntimeInterval   = 100 * time.Millisecond
)

// LoadConfig reads and checks a configuration file. Only a regular file
// (or a link to one) of at most 1 MiB is read: a FIFO or a device would
// block or never end.
func LoadConfig(file string) (*Config, error) {
	b, err := readConfigFile(file)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", file, err)
	}
	return cfg, nil
}

func readConfigFile(file string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO would otherwise wait for a writer.
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s): give the path of a YAML file", file, fileKind(st.Mode()))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("%s is larger than %d KiB: is it the configuration file?", file, maxConfigSize>>10)
	}
	return b, nil
}

// fileKind names a file's type for an error message.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return m.Type().String()
}

// ParseConfig parses and checks configuration YAML. Unknown keys are errors:
// a misspelt key would otherwise be ignored silently.
func ParseConfig(b []byte) (*Config, error) {
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			// One line per problem would break the one-line start-up error.
			return nil, errors.New(strings.Join(te.Errors, "; "))
		}
		return nil, err
	}
	// A second document would be ignored: say so rather than run with
	// half of what was written.
	if err := dec.Decode(&yaml.Node{}); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document (a line \"---\" starts another): put the whole configuration in one")
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) check() error {
	for i, m := range append(append([]lifecycle.Match{}, c.Include...), c.Exclude...) {
		if m.Exe == "" && m.Service == "" && m.K8sNamespace == "" && len(m.K8sPodLabels) == 0 {
			return fmt.Errorf("include/exclude rule %d: give exe, service, k8s_namespace or k8s_pod_labels", i+1)
		}
		globs := []string{m.Exe, m.Service, m.K8sNamespace}
		for _, g := range m.K8sPodLabels {
			globs = append(globs, g)
		}
		for _, g := range globs {
			if _, err := path.Match(g, ""); err != nil {
				return fmt.Errorf("include/exclude rule %d: bad glob %q: %w", i+1, g, err)
			}
		}
	}
	for i, s := range c.Services {
		if s.Exe == "" || s.Name == "" {
			return fmt.Errorf("services rule %d: needs both exe and name", i+1)
		}
		if _, err := path.Match(s.Exe, ""); err != nil {
			return fmt.Errorf("services rule %d: bad glob %q: %w", i+1, s.Exe, err)
		}
	}
	if c.HTTP.RouteLimit < 0 || c.SeriesLimit < 0 || c.Runtime.TopFunctions < 0 {
		return errors.New("limits must not be negative")
	}
	if _, err := aggregator.ParseTemplates(c.HTTP.Routes); err != nil {
		return fmt.Errorf("http.routes: %w", err)
	}
	if c.OTLP != nil {
		if err := c.OTLP.Options().Check(); err != nil {
			return fmt.Errorf("otlp: %w", err)
		}
	}
	if c.DiscoveryInterval < 0 || c.Grace < 0 || c.Runtime.Interval < 0 {
		return errors.New("durations must not be negative")
	}
	if c.DiscoveryInterval != 0 && c.DiscoveryInterval < minDiscoveryInterval {
		return fmt.Errorf("discovery_interval %v is too short: give at least %v (new programs are noticed at their exec anyway)", c.DiscoveryInterval, minDiscoveryInterval)
	}
	if c.Runtime.Interval != 0 && c.Runtime.Interval < minRuntimeInterval {
		return fmt.Errorf("runtime.interval %v is too short: give at least %v", c.Runtime.Interval, minRuntimeInterval)
	}
	return nil
}
