// Command blindspot attaches eBPF uprobes to the Go programs running on a
// host and exports their HTTP, runtime and business metrics to Prometheus,
// with no code change or restart of the observed programs.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/cilium/ebpf/rlimit"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/exporter"
	"github.com/blindspot-dev/blindspot/internal/lifecycle"
	"github.com/blindspot-dev/blindspot/internal/selfmem"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/discover"
	"github.com/blindspot-dev/blindspot/probes/userfunc"
)

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
	if f := os.Getenv("BLINDSPOT_MEMPROFILE"); f != "" {
		// For profiling the agent itself; undocumented on purpose: each
		// SIGUSR1 writes the live heap (after a collection) to the file,
		// sampled finely enough to account for every structure.
		runtime.MemProfileRate = 4096
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		defer signal.Stop(usr1)
		go func() {
			for range usr1 {
				if out, err := os.Create(f); err == nil {
					runtime.GC()
					pprof.Lookup("heap").WriteTo(out, 0)
					out.Close()
				}
				if out, err := os.Create(f + ".txt"); err == nil {
					pprof.Lookup("heap").WriteTo(out, 1) // with runtime.MemStats
					out.Close()
				}
			}
		}()
	}
	fl, err := parseFlags(args, os.Stdout)
	if err != nil {
		return err
	}
	if fl.exit {
		return nil // --help or --version printed
	}
	log := promslog.New(&fl.log)

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
	if err := checkKernel(kernelFeatures); err != nil {
		return err
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
	pm, err := probes.New(agg, families(cfg, agg, user), testProbeOptions())
	if err != nil {
		return explainLoadError(err)
	}
	defer pm.Close()
	k8s, err := newKubernetes(cfg.Kubernetes, os.Getenv, log)
	if err != nil {
		return fmt.Errorf("kubernetes: %w (fix kubernetes: in the configuration, or set enabled: false)", err)
	}
	lopts := &lifecycle.Options{Selection: cfg.Selection, Logger: log, Placement: k8s.placement()}
	if self, err := selfmem.Self(); err != nil {
		log.Warn("own executable pages kept resident", "err", err)
	} else {
		lopts.OwnPages = self
	}
	a := lifecycle.New(agg, lifecycle.Probes{Manager: pm, Probes: user}, lopts)
	funcs := lifecycle.NewFunctions(a, fl.configFile, func() ([]userfunc.Entry, error) {
		cfg, err := LoadConfig(fl.configFile)
		if err != nil {
			return nil, err
		}
		return cfg.Functions, nil
	})
	funcs.Apply(cfg.Functions)
	srv, err := exporter.New(agg, a, exporter.Options{
		ListenAddresses:        *fl.web.WebListenAddresses,
		SystemdSocket:          *fl.web.WebSystemdSocket,
		WebConfigFile:          *fl.web.WebConfigFile,
		TelemetryPath:          fl.telemetryPath,
		DisableExporterMetrics: fl.disableExporterMetrics,
		TargetLabels:           k8s.labels(),
		Kubernetes:             k8s.status(),
		Logger:                 log,
	})
	if err != nil {
		return err
	}
	return serve(fl, cfg, log, agg, a, funcs, srv, k8s)
}

// commandLine holds the flags: the web and log flags every Prometheus
// exporter has (exporter-toolkit, promslog), and blindspot's own.
type commandLine struct {
	web                    *web.FlagConfig
	telemetryPath          string
	disableExporterMetrics bool
	log                    promslog.Config
	configFile, demo       string
	// exit: --help or --version was given and printed; do nothing else.
	exit bool
}

// parseFlags parses the command line the way node_exporter does (kingpin),
// printing --help and --version to out.
func parseFlags(args []string, out io.Writer) (*commandLine, error) {
	fl := &commandLine{}
	app := kingpin.New("blindspot", "Zero-instrumentation eBPF metrics for the Go programs on this host: HTTP, database, runtime and business metrics, served to Prometheus and pushed over OTLP.")
	app.UsageWriter(out)
	app.Terminate(func(int) { fl.exit = true })
	app.Version(version.Print("blindspot"))
	app.HelpFlag.Short('h')
	fl.web = kingpinflag.AddFlags(app, ":9464")
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&fl.telemetryPath)
	app.Flag("web.disable-exporter-metrics", "Exclude the agent's own go_* and process_* metrics (client_golang's collectors) from the scrape; blindspot_* metrics stay.").BoolVar(&fl.disableExporterMetrics)
	app.Flag("config", "YAML configuration file.").PlaceHolder("FILE").StringVar(&fl.configFile)
	app.Flag("demo", "Start a small Go web service and a load generator to observe: on, off, or auto (only when no other Go program runs).").Default("off").EnumVar(&fl.demo, "on", "off", "auto")
	promslogflag.AddFlags(app, &fl.log)
	if _, err := app.Parse(args); err != nil {
		return nil, fmt.Errorf("%w (see --help)", err)
	}
	if fl.exit {
		return fl, nil
	}
	if err := exporter.CheckTelemetryPath(fl.telemetryPath); err != nil {
		return nil, fmt.Errorf("--web.telemetry-path: %w", err)
	}
	return fl, nil
}

// serve runs the agent until SIGINT or SIGTERM (or the web server fails),
// then detaches every probe, sends the last OTLP export and stops the web
// server.
func serve(fl *commandLine, cfg *Config, log *slog.Logger, agg *aggregator.Aggregator, a *lifecycle.Agent, funcs *lifecycle.Functions, srv *exporter.Server, k8s *kubernetes) error {
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
	log.Info("blindspot started", "version", version.Info(), "build_context", version.BuildContext(), "listen", strings.Join(srv.Addrs(), ","), "telemetry_path", fl.telemetryPath)
	k8s.start(ctx, log)
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
