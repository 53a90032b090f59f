// Command blindspot attaches eBPF uprobes to the Go programs running on a
// host and exports their HTTP, runtime and business metrics to Prometheus,
// with no code change or restart of the observed programs.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf/rlimit"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/exporter"
	"github.com/blindspot-dev/blindspot/internal/lifecycle"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/discover"
	"github.com/blindspot-dev/blindspot/probes/userfunc"
)

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == demoWorkloadArg {
		os.Exit(runDemoWorkload(os.Args[2:]))
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "blindspot: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if f := os.Getenv("BLINDSPOT_CPUPROFILE"); f != "" {
		// For profiling the agent itself; undocumented on purpose.
		if out, err := os.Create(f); err == nil {
			pprof.StartCPUProfile(out)
			defer pprof.StopCPUProfile()
		}
	}
	fl, err := parseFlags(args)
	if err != nil {
		return err
	}
	if fl.version {
		fmt.Println("blindspot", exporter.Version)
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(fl.logLevel)); err != nil {
		return fmt.Errorf("--log.level %q: use debug, info, warn or error", fl.logLevel)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if fl.demo != "on" && fl.demo != "off" && fl.demo != "auto" {
		return fmt.Errorf("--demo %q: use on, off or auto", fl.demo)
	}

	cfg := &Config{}
	if fl.configFile != "" {
		if cfg, err = LoadConfig(fl.configFile); err != nil {
			return fmt.Errorf("%w (fix the file or run without --config)", err)
		}
	}
	if err := checkSystem(); err != nil {
		return err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raise the locked-memory limit: %w (run as root)", err)
	}
	templates, _ := aggregator.ParseTemplates(cfg.HTTP.Routes)
	agg := aggregator.New(familyMetrics(), aggregator.Options{
		Shards:      possibleCPUs(),
		SeriesLimit: cfg.SeriesLimit,
		RouteLimit:  cfg.HTTP.RouteLimit,
		Templates:   templates,
		Grace:       cfg.Grace,
	})
	user := userfunc.New()
	pm, err := probes.New(agg, families(cfg, agg, user), nil)
	if err != nil {
		return explainLoadError(err)
	}
	defer pm.Close()
	a := lifecycle.New(agg, lifecycle.Probes{Manager: pm, Probes: user}, &lifecycle.Options{Selection: cfg.Selection, Logger: log})
	funcs := lifecycle.NewFunctions(a, fl.configFile, func() ([]userfunc.Entry, error) {
		cfg, err := LoadConfig(fl.configFile)
		if err != nil {
			return nil, err
		}
		return cfg.Functions, nil
	})
	funcs.Apply(cfg.Functions)
	srv, err := exporter.New(agg, a, exporter.Options{ListenAddresses: fl.listen, WebConfigFile: fl.webConfig, Logger: log})
	if err != nil {
		return err
	}
	return serve(fl, cfg, log, agg, a, funcs, srv)
}

// commandLine holds the flags.
type commandLine struct {
	listen                                listFlag
	webConfig, configFile, demo, logLevel string
	version                               bool
}

func parseFlags(args []string) (*commandLine, error) {
	fs := flag.NewFlagSet("blindspot", flag.ContinueOnError)
	fl := &commandLine{}
	fs.Var(&fl.listen, "web.listen-address", "address to serve /metrics on; repeat for more (default :9464)")
	fs.StringVar(&fl.webConfig, "web.config.file", "", "exporter-toolkit web configuration file for TLS and basic auth")
	fs.StringVar(&fl.configFile, "config", "", "YAML configuration file")
	fs.StringVar(&fl.demo, "demo", "off", "start a small Go web service and a load generator to observe: on, off, or auto (only when no other Go program runs)")
	fs.StringVar(&fl.logLevel, "log.level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&fl.version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if len(fl.listen) == 0 {
		fl.listen = listFlag{":9464"}
	}
	return fl, nil
}

// serve runs the agent until SIGINT or SIGTERM (or the web server fails),
// then detaches every probe, sends the last OTLP export and stops the web
// server.
func serve(fl *commandLine, cfg *Config, log *slog.Logger, agg *aggregator.Aggregator, a *lifecycle.Agent, funcs *lifecycle.Functions, srv *exporter.Server) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go funcs.Watch(ctx, time.Second, hup) // reload functions: on SIGHUP or a file change
	demo := fl.demo
	if demo == "auto" {
		demo = "on"
		if n := countGoPrograms(); n > 0 {
			log.Info("not starting the demo service: Go programs are running", "programs", n)
			demo = "off"
		}
	}
	if demo == "on" {
		if err := startDemo(ctx, log); err != nil {
			return err
		}
	}
	otlp, err := startOTLP(ctx, cfg, agg, log)
	if err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve() }()
	log.Info("blindspot started", "version", exporter.Version, "listen", fl.listen.String())
	done := make(chan struct{})
	go func() {
		a.Run(ctx, newWatcher(cfg, log))
		close(done)
	}()
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		stop()
	}
	<-done // every probe detached
	if otlp != nil {
		<-otlp // the last export sent
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutdownCtx)
	log.Info("blindspot stopped: all probes detached")
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// newWatcher starts discovery: a /proc scan every discovery_interval
// (default 1s), and exec notifications where the kernel allows.
func newWatcher(cfg *Config, log *slog.Logger) *discover.Watcher {
	interval := cfg.DiscoveryInterval
	if interval == 0 {
		interval = time.Second
	}
	w := discover.NewWatcher(interval)
	if w.TracepointErr != nil {
		log.Warn("exec notifications unavailable; discovering by scanning /proc only", "err", w.TracepointErr, "interval", interval)
	}
	return w
}

// startOTLP starts the OTLP push when the environment (OTEL_METRICS_EXPORTER,
// OTEL_EXPORTER_OTLP_*ENDPOINT) or the config file's otlp: section asks for
// it; the returned channel closes after the last export.
func startOTLP(ctx context.Context, cfg *Config, agg *aggregator.Aggregator, log *slog.Logger) (<-chan struct{}, error) {
	opts, enabled, err := exporter.OTLPFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	if c := cfg.OTLP; c != nil {
		opts = opts.Merge(c.Options())
		enabled = c.Enabled == nil || *c.Enabled
	}
	if !enabled {
		return nil, nil
	}
	opts.Logger = log
	o, err := exporter.NewOTLP(ctx, agg, opts)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		o.Run(ctx)
		close(done)
	}()
	log.Info("OTLP export on", "protocol", opts.Protocol, "endpoint", opts.Endpoint, "interval", opts.Interval)
	return done, nil
}
