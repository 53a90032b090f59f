package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/mdlayher/vsock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/blindspot-dev/blindspot/aggregator"
)

// Target is one instrumented program, as /targets shows it.
type Target struct {
	PID         int       `json:"pid"`
	ServiceName string    `json:"service_name"`
	Exe         string    `json:"exe"`
	GoVersion   string    `json:"go_version"`
	Attached    time.Time `json:"attached_at"`
	// Kubernetes holds the program's Kubernetes labels (k8s_pod_name, ...)
	// where known.
	Kubernetes map[string]string `json:"kubernetes,omitempty"`
	Probes     []ProbeStatus     `json:"probes"`
}

// KubernetesStatus is how the agent's watch of its node's pods fares.
type KubernetesStatus struct {
	Node string
	// State is connecting, connected or unreachable.
	State string
	// Error is the last error while unreachable.
	Error string
	Since time.Time
	// Pods is the number of the node's pods known.
	Pods int
}

// ProbeStatus is how one probe family (or business function) fared in one
// program.
type ProbeStatus struct {
	Family string `json:"family"`
	// Functions probed, and where ("net/http.serverHandler.ServeHTTP+0xa").
	Sites []string `json:"sites,omitempty"`
	// Error says why the family could not be attached, or why it was
	// detached; empty when it is attached.
	Error string `json:"error,omitempty"`
	// Left lists optional probes left out of this program and why.
	Left []string `json:"left_out,omitempty"`
}

// Skipped is a Go program that could not be instrumented, and why.
type Skipped struct {
	PID    int    `json:"pid"`
	Exe    string `json:"exe"`
	Reason string `json:"reason"`
}

// ProbeStats are the counters of the events read from the probes.
type ProbeStats struct {
	// Events read, by probe family.
	Events map[string]uint64
	// Lost events (a ring buffer was full or unreadable), by probe family.
	Lost map[string]uint64
	// Invalid events were refused for an implausible value: by family,
	// then reason (every reason a family can report is present).
	Invalid map[string]map[string]uint64
	// Unattributed events named a PID no longer (or not yet) instrumented.
	Unattributed uint64
	// Malformed events could not be decoded.
	Malformed uint64
}

// ErrorKey labels blindspot_probe_errors_total.
type ErrorKey struct{ Probe, Reason string }

// State is what the agent tells the exporter about its work.
type State interface {
	Targets() []Target
	Skipped() []Skipped
	ProbeStats() ProbeStats
	ProbeErrors() map[ErrorKey]uint64
}

// Options configure the HTTP endpoint.
type Options struct {
	// ListenAddresses, e.g. ":9464".
	ListenAddresses []string
	// SystemdSocket serves on the sockets systemd passed (socket
	// activation) instead of ListenAddresses.
	SystemdSocket bool
	// WebConfigFile is an exporter-toolkit web configuration (TLS, basic
	// auth); empty serves plain HTTP to everyone.
	WebConfigFile string
	// TelemetryPath is where the metrics are served; default "/metrics".
	TelemetryPath string
	// DisableExporterMetrics leaves the agent's own go_* and process_*
	// series (client_golang's collectors) out of the scrape, as
	// node_exporter's --web.disable-exporter-metrics does.
	DisableExporterMetrics bool
	// TargetLabels are further labels every series about an observed
	// program carries (kube.LabelNames in Kubernetes), valued from the
	// program's aggregator.Target.Labels ("" where it has none).
	TargetLabels []string
	// Kubernetes reports the Kubernetes metadata watch for the status
	// page; nil outside Kubernetes.
	Kubernetes func() KubernetesStatus
	Logger     *slog.Logger
	// MaxConnections bounds the connections open at once (0: 256). At
	// the limit a new connection closes the one idle longest.
	MaxConnections int
}

// Server serves the metrics, /targets, /healthz and the status page.
type Server struct {
	srv       *http.Server
	listeners []net.Listener
	opts      Options
	registry  *prometheus.Registry
	conns     *connLimiter
}

// reservedPaths are the pages the telemetry path must not hide.
var reservedPaths = []string{"/healthz", "/targets"}

// CheckTelemetryPath says what is wrong with a --web.telemetry-path.
func CheckTelemetryPath(p string) error {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " ?#{}") {
		return fmt.Errorf("telemetry path %q: give an absolute URL path such as /metrics", p)
	}
	if p == "/" || slices.Contains(reservedPaths, path.Clean(p)) {
		return fmt.Errorf("telemetry path %q would hide the page served there: pick another, such as /metrics", p)
	}
	return nil
}

// New builds the endpoint and binds its addresses (or takes systemd's
// sockets), so that a port in use is reported before the agent attaches
// anything.
func New(agg *aggregator.Aggregator, state State, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.TelemetryPath == "" {
		opts.TelemetryPath = "/metrics"
	}
	if err := CheckTelemetryPath(opts.TelemetryPath); err != nil {
		return nil, err
	}
	if opts.WebConfigFile != "" {
		if err := web.Validate(opts.WebConfigFile); err != nil {
			return nil, fmt.Errorf("web config file %s: %w", opts.WebConfigFile, err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newBuildInfoCollector(), newSelfCollector(state, agg), newProgramCollector(agg, opts.TargetLabels))
	if !opts.DisableExporterMetrics {
		reg.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
	}
	mux := http.NewServeMux()
	mux.Handle(opts.TelemetryPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelError),
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/targets", func(w http.ResponseWriter, r *http.Request) {
		var v any
		switch st := r.URL.Query().Get("state"); st {
		case "", "instrumented":
			v = state.Targets()
		case "skipped":
			v = state.Skipped()
		default:
			http.Error(w, fmt.Sprintf("unknown state %q: give state=instrumented (the default) or state=skipped", st), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(v)
	})
	mux.Handle("/", statusPage(state, agg, opts.TelemetryPath, opts.Kubernetes))
	conns := newConnLimiter(opts.MaxConnections)
	s := &Server{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			ConnState:         conns.connState,
		},
		opts:     opts,
		registry: reg,
		conns:    conns,
	}
	if opts.SystemdSocket {
		ls, err := activation.Listeners()
		if err != nil {
			return nil, fmt.Errorf("systemd socket activation: %w", err)
		}
		for _, l := range ls {
			if l != nil {
				s.listeners = append(s.listeners, conns.listener(l))
			}
		}
		if len(s.listeners) == 0 {
			return nil, errors.New("--web.systemd-socket: systemd passed no listening socket: start blindspot from a .socket unit (ListenStream=9464), or drop the flag")
		}
		return s, nil
	}
	for _, addr := range opts.ListenAddresses {
		l, err := listen(addr)
		if err != nil {
			s.closeListeners()
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("listen on %s: address already in use: stop the other process or pick another with --web.listen-address", addr)
			}
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		s.listeners = append(s.listeners, conns.listener(l))
	}
	return s, nil
}

// listen binds a TCP address, or a vsock one ("vsock://:9464", as
// exporter-toolkit's --web.listen-address takes it).
func listen(addr string) (net.Listener, error) {
	rest, ok := strings.CutPrefix(addr, "vsock://")
	if !ok {
		return net.Listen("tcp", addr)
	}
	_, port, err := net.SplitHostPort(rest)
	if err != nil {
		return nil, fmt.Errorf("vsock address: %w (e.g. vsock://:9464)", err)
	}
	p, err := strconv.ParseUint(port, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("vsock port %q: %w", port, err)
	}
	return vsock.Listen(uint32(p), nil)
}

// Addrs are the addresses served.
func (s *Server) Addrs() []string {
	var out []string
	for _, l := range s.listeners {
		out = append(out, l.Addr().String())
	}
	return out
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.Close()
	}
}

// Serve serves until Shutdown.
func (s *Server) Serve() error {
	cfg := s.opts.WebConfigFile
	systemd := s.opts.SystemdSocket
	addrs := s.opts.ListenAddresses
	err := web.ServeMultiple(s.listeners, s.srv, &web.FlagConfig{
		WebListenAddresses: &addrs,
		WebSystemdSocket:   &systemd,
		WebConfigFile:      &cfg,
	}, s.opts.Logger)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops serving.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}
