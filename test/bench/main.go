//go:build linux

// Command bench measures what blindspot costs the program it observes, and
// writes the results to docs/performance.md (-doc; never edit that file by
// hand).
//
// In one run it drives a net/http "ok" server (test/bench/target, pinned
// to one CPU) with a closed-loop loopback client (this process, pinned to
// another CPU) under these setups, in alternating rounds:
//
//	baseline   no probes
//	floor      empty BPF programs (bpf/bench_empty.c: count hits, nothing
//	           else) at the very sites blindspot probes, attached to the
//	           target only: the cost of the traps alone
//	blindspot  the agent built from ./cmd/agent, configured to instrument
//	           only the target
//	promhttp   (server variants) a second server process whose handler is
//	           wrapped in client_golang's promhttp.InstrumentHandlerDuration
//
// and reports, per setup, the median server CPU per request (utime+stime
// of the server from /proc/PID/stat over the load window, divided by the
// requests completed in it), throughput, probe hits per request by trap
// kind (emulated or single-stepped), the BPF programs' runs and run time
// per request as the kernel accounts them (BPF_ENABLE_STATS, held for the
// run), the agent's CPU per 1,000 requests and RSS, and checks the agent's
// request count against the requests sent. It does so for keep-alive
// connections and again with a new connection per request. The last lines
// of output are the results as JSON.
//
// More variants measure the client side, the calling program being
// the one observed (pinned to the server's CPU) and probed:
//
//	httpclient  test/bench/clienttarget: a net/http client making
//	            keep-alive GETs to the "ok" server (test/bench/target, now
//	            on the load generator's CPU); probed by the http_client
//	            family (two hits per request)
//	sql         test/bench/sqltarget (its own module): db.QueryRow("SELECT
//	            1").Scan over modernc.org/sqlite in memory; probed by the db
//	            family (two hits per query)
//	business    test/bench/biztarget: main.Checkout called in a loop,
//	            measured as a duration metric with a label and an outcome
//	            (probed at its entry and every RET)
//	grpcclient  test/bench/grpctarget as a grpc-go client
//	            making unary calls to a grpc-go server (the same program,
//	            another executable, on the load generator's CPU); probed by
//	            the grpc_client family
//
// and grpcserver observes that grpc-go server (on the server's CPU) while
// the grpc-go client is the load (on the load generator's CPU); probed by
// the grpc_server family.
//
// Their floor places empty programs at every site of the family, as the
// agent does, and their count check reads the family's duration histogram.
//
// Last (-scale), one agent observes 50 copies of the server started one
// after the other: its RSS with none, one and all of them, and the time
// from a program's exec to its probes being placed, for a new executable
// and for a second process of one already parsed.
//
// First of all (variant pipeline, pipeline.go), the agent's own path from
// the ring to the aggregated series: a BPF program writes the families'
// events into the agent's rings at kernel speed, at doubling rates, and
// the bench reports the highest rate one reader takes with zero loss and
// the agent's CPU per event.
//
// -quick runs one short round of everything and writes no document: a
// smoke test under a minute.
//
// Run as root from the repository root: go run ./test/bench
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/dbsql"
	"github.com/blindspot-dev/blindspot/probes/grpcclient"
	"github.com/blindspot-dev/blindspot/probes/grpcserver"
	"github.com/blindspot-dev/blindspot/probes/httpclient"
	"github.com/blindspot-dev/blindspot/probes/httpserver"
	"github.com/blindspot-dev/blindspot/probes/userfunc"
)

// The business variant's metric: main.Checkout of test/bench/biztarget as
// a duration with a label and an outcome, probed at its entry and RETs.
const (
	bizMetric = "bench_checkout_duration_seconds"
	bizConfig = "functions:\n  - metric: " + bizMetric + "\n    function: main.Checkout\n    labels: {order_type: orderType}\n    outcome: status\n"
)

var bizProbes = []probes.Probe{
	{Function: "main.Checkout", Program: "entry", Idempotent: true},
	{Function: "main.Checkout", Program: "exit", Returns: true},
}

type options struct {
	rounds         int
	duration       time.Duration
	newDuration    time.Duration
	warmup         time.Duration
	conns          int
	newConns       int
	maxRequests    int64
	variants       string
	clientDuration time.Duration
	clientConns    int
	sqlConns       int
	grpcConns      int
	serverCPU      int
	clientCPU      int
	keep           bool
	nice           int
	agentIdle      time.Duration
	order          []string
	doc            string
	scale          int
	scaleRounds    int
	pipeline       time.Duration
	pipelineProf   string
	pipelineRate   float64
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == producerCommand {
		os.Exit(producerMain(os.Args[2:]))
	}
	var o options
	flag.IntVar(&o.rounds, "rounds", 5, "rounds of every setup, alternating")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "measured load per round, keep-alive variant")
	flag.DurationVar(&o.newDuration, "newconn-duration", 3*time.Second, "measured load per round, new-connection variant")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "load before each measurement (counted by the agent check, not measured)")
	flag.IntVar(&o.conns, "conns", 8, "concurrent keep-alive connections")
	flag.IntVar(&o.newConns, "newconn-conns", 8, "concurrent clients in the new-connection variant")
	flag.Int64Var(&o.maxRequests, "max-requests", 2_000_000, "upper bound on the requests of one round (warm-up included)")
	flag.StringVar(&o.variants, "variants", "pipeline,keepalive,newconn,httpclient,sql,business,grpcserver,grpcclient", "variants to run: pipeline, keepalive, newconn, httpclient, sql, business, grpcserver, grpcclient")
	flag.DurationVar(&o.clientDuration, "client-duration", 2*time.Second, "measured load per round, httpclient and sql variants")
	flag.IntVar(&o.clientConns, "httpclient-conns", 4, "concurrent requests (keep-alive connections) of the httpclient target")
	flag.IntVar(&o.sqlConns, "sql-conns", 1, "concurrent queries of the sql target")
	flag.IntVar(&o.grpcConns, "grpc-conns", 4, "concurrent unary calls of the gRPC client (one ClientConn)")
	flag.IntVar(&o.serverCPU, "server-cpu", 0, "CPU the target server is pinned to")
	flag.IntVar(&o.clientCPU, "client-cpu", 1, "CPU the load generator is pinned to")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binaries, logs)")
	flag.IntVar(&o.nice, "nice", -10, "nice value of the server, the load generator and the agent (alike), to shield them from other work on a shared machine")
	flag.DurationVar(&o.agentIdle, "agent-idle", time.Second, "before the load of a blindspot round, measure the agent's CPU use with no traffic for this long (0: skip)")
	order := flag.String("order", "baseline,floor,blindspot", "order of the setups within a round")
	flag.StringVar(&o.doc, "doc", "docs/performance.md", "write the results to this Markdown file (empty: don't)")
	flag.IntVar(&o.scale, "scale", 50, "measure the agent's memory and attach time observing this many programs (0: skip)")
	flag.IntVar(&o.scaleRounds, "scale-rounds", 5, "attach-time samples of each kind (new executable, second process)")
	flag.DurationVar(&o.pipeline, "pipeline-duration", 2*time.Second, "time at each rate of the pipeline benchmark (variant pipeline)")
	flag.StringVar(&o.pipelineProf, "pipeline-cpuprofile", "", "write a CPU profile (pprof) of the pipeline benchmark to this file")
	flag.Float64Var(&o.pipelineRate, "pipeline-rate", 0, "measure the pipeline at this rate only, events/s (0: rates doubling while nothing is lost)")
	only := flag.String("only", "", "run one section only: \"scale\" (the agent's memory and attach time; no load variants, no document unless -doc is given)")
	quick := flag.Bool("quick", false, "smoke test (under a minute): one short round of each variant, 5 programs for the scale measurement, no document (unless -doc is given)")
	flag.Parse()
	if *quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("rounds", func() { o.rounds = 1 })
		def("duration", func() { o.duration = time.Second })
		def("newconn-duration", func() { o.newDuration = time.Second })
		def("client-duration", func() { o.clientDuration = time.Second })
		def("warmup", func() { o.warmup = 300 * time.Millisecond })
		def("agent-idle", func() { o.agentIdle = 0 })
		def("scale", func() { o.scale = 5 })
		def("scale-rounds", func() { o.scaleRounds = 2 })
		def("doc", func() { o.doc = "" })
		def("pipeline-duration", func() { o.pipeline = 300 * time.Millisecond })
	}

	switch *only {
	case "":
	case "scale":
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		o.variants = ""
		if !set["doc"] {
			o.doc = ""
		}
		if o.scale < 1 {
			fmt.Fprintln(os.Stderr, "bench: -only scale needs -scale above 0")
			os.Exit(2)
		}
	default:
		fmt.Fprintf(os.Stderr, "bench: unknown -only %q (use scale)\n", *only)
		os.Exit(2)
	}
	for _, s := range strings.Split(*order, ",") {
		o.order = append(o.order, strings.TrimSpace(s))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	killAll()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05.0"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, o options) error {
	began := time.Now()
	if os.Geteuid() != 0 {
		return errors.New("must run as root: uprobes and BPF programs need CAP_SYS_ADMIN/CAP_BPF/CAP_PERFMON (try: sudo go run ./test/bench)")
	}
	if o.rounds < 1 || o.conns < 1 || o.newConns < 1 || o.clientConns < 1 || o.sqlConns < 1 || o.grpcConns < 1 || o.duration <= 0 || o.newDuration <= 0 || o.clientDuration <= 0 || o.maxRequests < 1 {
		return errors.New("rounds, conns, durations and max-requests must be positive")
	}
	if n := runtime.NumCPU(); o.serverCPU >= n || o.clientCPU >= n || o.serverCPU == o.clientCPU {
		return fmt.Errorf("need two distinct CPUs below %d for server (%d) and client (%d)", n, o.serverCPU, o.clientCPU)
	}
	if len(o.order) != len(setups) || !sameSet(o.order, setups) {
		return fmt.Errorf("-order must list %s once each", strings.Join(setups, ", "))
	}
	var variants []variant
	runPipeline := false
	for _, v := range strings.Split(o.variants, ",") {
		if o.variants == "" {
			break
		}
		switch strings.TrimSpace(v) {
		case "pipeline":
			runPipeline = true
		case "keepalive":
			variants = append(variants, variant{name: "keepalive", conns: o.conns, duration: o.duration, family: "http_server", metric: "http_server_request_duration_seconds_count"})
		case "newconn":
			variants = append(variants, variant{name: "newconn", newConn: true, conns: o.newConns, duration: o.newDuration, family: "http_server", metric: "http_server_request_duration_seconds_count"})
		case "httpclient":
			variants = append(variants, variant{name: "httpclient", client: true, conns: o.clientConns, duration: o.clientDuration, family: "http_client", metric: "http_client_request_duration_seconds_count"})
		case "sql":
			variants = append(variants, variant{name: "sql", client: true, conns: o.sqlConns, duration: o.clientDuration, family: "db", metric: "db_client_operation_duration_seconds_count"})
		case "business":
			variants = append(variants, variant{name: "business", client: true, conns: o.sqlConns, duration: o.clientDuration, family: userfunc.FamilyName, metric: bizMetric + "_count"})
		case "grpcserver":
			variants = append(variants, variant{name: "grpcserver", conns: o.grpcConns, duration: o.clientDuration, family: "grpc_server", metric: "rpc_server_call_duration_seconds_count"})
		case "grpcclient":
			variants = append(variants, variant{name: "grpcclient", client: true, conns: o.grpcConns, duration: o.clientDuration, family: "grpc_client", metric: "rpc_client_call_duration_seconds_count"})
		default:
			return fmt.Errorf("unknown variant %q (use pipeline, keepalive, newconn, httpclient, sql, business, grpcserver, grpcclient)", v)
		}
	}
	if others := otherAgents(); len(others) > 0 {
		logf("WARNING: other blindspot agents are running and may instrument the target too: %s", strings.Join(others, "; "))
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raise the locked-memory limit: %w", err)
	}
	// The pipeline first: in this process, before it is pinned to one CPU
	// and before BPF run-time statistics slow every BPF program down.
	var pipe *pipelineResult
	if runPipeline {
		var err error
		if pipe, err = measurePipeline(pipelineOptions{duration: o.pipeline, start: 250e3, max: 64e6, cpu: o.serverCPU, profile: o.pipelineProf, nice: o.nice, fixed: o.pipelineRate}); err != nil {
			return fmt.Errorf("pipeline: %w", err)
		}
		if len(variants) == 0 && o.scale == 0 {
			reportPipeline(os.Stdout, pipe)
			if o.doc != "" {
				if err := writeDoc(o.doc, o, nil, nil, pipe, time.Since(began)); err != nil {
					return fmt.Errorf("write %s: %w", o.doc, err)
				}
				logf("wrote %s", o.doc)
			}
			return nil
		}
	}
	// Per-program run counts and run time, for as long as the bench runs.
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		return fmt.Errorf("enable BPF run-time statistics (Linux 5.8+): %w", err)
	}
	defer stats.Close()

	dir, err := os.MkdirTemp("", "blindspot-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		logf("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	targetPath := filepath.Join(dir, "target")
	agentPath := filepath.Join(dir, "blindspot")
	builds := []build{{targetPath, ".", "./test/bench/target"}, {agentPath, ".", "./cmd/agent"}}
	for _, v := range variants {
		switch v.name {
		case "httpclient":
			builds = append(builds, build{filepath.Join(dir, "clienttarget"), ".", "./test/bench/clienttarget"})
		case "sql":
			builds = append(builds, build{filepath.Join(dir, "sqltarget"), "test/bench/sqltarget", "."})
		case "business":
			builds = append(builds, build{filepath.Join(dir, "biztarget"), ".", "./test/bench/biztarget"})
		case "grpcserver", "grpcclient":
			// One program, two executables: the agent includes one by path.
			for _, out := range []string{"grpcserver", "grpcclient"} {
				if !hasBuild(builds, filepath.Join(dir, out)) {
					builds = append(builds, build{filepath.Join(dir, out), ".", "./test/bench/grpctarget"})
				}
			}
		}
	}
	if err := buildAll(ctx, builds); err != nil {
		return err
	}
	empty, err := loadEmptyProgs()
	if err != nil {
		return err
	}
	defer empty.Close()

	// From here on this process is the load generator.
	if err := pinSelf(o.clientCPU, o.nice); err != nil {
		return err
	}
	env := &benchEnv{o: o, dir: dir, targetPath: targetPath, agentPath: agentPath, empty: empty}
	var results []*variantResult
	for _, v := range variants {
		r, err := env.runVariant(ctx, v)
		if err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		results = append(results, r)
	}
	var sc *scaleResult
	if o.scale > 0 {
		if sc, err = env.measureScale(ctx, o.scale, o.scaleRounds); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
	}
	elapsed := time.Since(began)
	all := report(os.Stdout, o, results, elapsed)
	if pipe != nil {
		reportPipeline(os.Stdout, pipe)
	}
	if sc != nil {
		out, _ := json.Marshal(sc)
		fmt.Println(string(out))
	}
	if o.doc != "" {
		if err := writeDoc(o.doc, o, all, sc, pipe, elapsed); err != nil {
			return fmt.Errorf("write %s: %w", o.doc, err)
		}
		logf("wrote %s", o.doc)
	}
	return nil
}

// build is one program to build: out from pkg, run in dir (relative to
// the blindspot module's root; the sql and gRPC targets are modules of
// their own).
type build struct{ out, dir, pkg string }

func hasBuild(builds []build, out string) bool {
	for _, b := range builds {
		if b.out == out {
			return true
		}
	}
	return false
}

// buildAll builds the targets and the agent with the go command on PATH.
func buildAll(ctx context.Context, builds []build) error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.CommandContext(ctx, goCmd, "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return errors.New("run from inside the blindspot module (go run ./test/bench)")
	}
	root := filepath.Dir(gomod)
	var wg sync.WaitGroup
	errs := make([]error, len(builds))
	for i, b := range builds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, goCmd, "build", "-o", b.out, b.pkg)
			cmd.Dir = filepath.Join(root, b.dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go build %s in %s: %w\n%s", b.pkg, b.dir, err, out)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	v, _ := exec.CommandContext(ctx, goCmd, "version").Output()
	var names []string
	for _, b := range builds {
		names = append(names, filepath.Base(b.out))
	}
	logf("built %s with %s", strings.Join(names, ", "), strings.TrimSpace(string(v)))
	return nil
}

type variant struct {
	name     string
	newConn  bool
	conns    int
	duration time.Duration
	// client variants observe the calling program: a client target
	// making the calls itself, on the server's CPU.
	client bool
	// family is the agent's probe family the variant exercises, metric
	// the count its check reads.
	family string
	metric string
}

const (
	setupBaseline = "baseline"
	setupFloor    = "floor"
	setupAgent    = "blindspot"
)

// setupMiddleware is the server instrumented in process instead, by
// client_golang's promhttp.InstrumentHandlerDuration (server variants
// only): another target process, on the same CPU, run after the others.
const setupMiddleware = "promhttp"

var setups = []string{setupBaseline, setupFloor, setupAgent}

// allSetups orders every setup for the report.
var allSetups = []string{setupBaseline, setupFloor, setupAgent, setupMiddleware}

// sample is one measured round of one setup.
type sample struct {
	Requests   int64     `json:"requests"`
	Seconds    float64   `json:"seconds"`
	CPUPerReq  float64   `json:"server_cpu_us_per_req"`
	RPS        float64   `json:"rps"`
	HitsPerReq float64   `json:"hits_per_req,omitempty"`
	SiteHits   []float64 `json:"site_hits_per_req,omitempty"`
	// Agent only.
	AgentCPUPer1k float64 `json:"agent_cpu_ms_per_1k_req,omitempty"`
	AgentRSS      uint64  `json:"agent_rss_bytes,omitempty"`
	Sent          int64   `json:"requests_sent,omitempty"` // since the probes were attached
	Counted       float64 `json:"agent_counted,omitempty"`
	Lost          float64 `json:"agent_lost,omitempty"` // counted by the agent as not measured (ring or in-flight map full)
	Events        float64 `json:"agent_events,omitempty"`
	AttachSeconds float64 `json:"attach_seconds,omitempty"`
	Errors        int64   `json:"client_errors"`
	// Context: the load generator's CPU per request, and how busy the
	// server's CPU was (steal is time the hypervisor took away).
	ClientCPUPerReq float64 `json:"client_cpu_us_per_req"`
	ServerCPUBusy   float64 `json:"server_cpu_busy"`
	ServerCPUSteal  float64 `json:"server_cpu_steal"`
	// OtherOnServerCPU is the share of the server's CPU that went to other
	// programs (busy minus the server's own use): the machine is shared.
	OtherOnServerCPU float64 `json:"other_on_server_cpu"`
	// SoftirqOnServerCPU is the share of the server's CPU spent in
	// softirqs, mostly loopback TCP receive: charged to no process.
	SoftirqOnServerCPU float64 `json:"softirq_on_server_cpu"`
	// AgentIdleCPU is the agent's CPU use with no traffic (ms per second),
	// and AgentNetPer1k its CPU per 1,000 requests less that idle rate.
	AgentIdleCPU  float64 `json:"agent_idle_cpu_ms_per_s,omitempty"`
	AgentNetPer1k float64 `json:"agent_cpu_net_ms_per_1k_req,omitempty"`
	// HostForks is the processes started per second on the whole host
	// during the round: the agent inspects every new process.
	HostForks float64 `json:"host_forks_per_s"`
	// BPF is the kernel's account of the probes' programs (floor: the
	// empty ones; blindspot: all of the agent's) per operation, by program.
	BPF map[string]bpfPerOp `json:"bpf_per_op,omitempty"`
}

type variantResult struct {
	variant
	floor   *floor
	samples map[string][]sample
}

type benchEnv struct {
	o          options
	dir        string
	targetPath string
	agentPath  string
	empty      *emptyProgs
}

// variantRun is what the rounds of one variant share.
type variantRun struct {
	v    variant
	pid  int    // the observed (measured, probed) process
	peer int    // the process at the other end, reported for context (0: none)
	addr string // the server's address (server variants)
	// mwPid and mwAddr are the server instrumented with promhttp (server
	// variants).
	mwPid  int
	mwAddr string
	ct     *clientTarget
	floor  *floor
	config string // agent configuration instrumenting only the observed program
	exited func() error
}

func (e *benchEnv) runVariant(ctx context.Context, v variant) (*variantResult, error) {
	vr := &variantRun{v: v}
	logPath := filepath.Join(e.dir, "target-"+v.name+".log")
	observed := e.targetPath
	var sites []probes.Probe
	switch v.name {
	case "httpclient", "sql", "business":
		var args []string
		if v.name == "httpclient" {
			// The "ok" server runs on the load generator's CPU (this
			// process is idle in client variants).
			srvLog := filepath.Join(e.dir, "server-"+v.name+".log")
			server, addr, err := startTarget(ctx, e.targetPath, e.o.clientCPU, srvLog)
			if server != nil {
				defer server.stop(2 * time.Second)
			}
			if err != nil {
				return nil, err
			}
			vr.peer = server.Pid()
			observed = filepath.Join(e.dir, "clienttarget")
			args = []string{"-url", "http://" + addr + "/", "-conns", fmt.Sprint(v.conns)}
			sites = httpclient.Probes
			vr.exited = func() error {
				if server.Exited() {
					return fmt.Errorf("server exited; see %s", srvLog)
				}
				return nil
			}
		} else if v.name == "business" {
			observed = filepath.Join(e.dir, "biztarget")
			args = []string{"-conns", fmt.Sprint(v.conns)}
			sites = bizProbes
		} else {
			observed = filepath.Join(e.dir, "sqltarget")
			args = []string{"-conns", fmt.Sprint(v.conns)}
			sites = dbsql.Probes
		}
		ct, err := startClientTarget(ctx, observed, args, e.o.serverCPU, logPath)
		if err != nil {
			return nil, err
		}
		defer ct.stop(2 * time.Second)
		vr.ct, vr.pid = ct, ct.Pid()
	case "grpcserver", "grpcclient":
		// The observed side on the server's CPU, the other on the load
		// generator's; the client is commanded like the client targets.
		srvCPU, cliCPU := e.o.serverCPU, e.o.clientCPU
		if v.name == "grpcclient" {
			srvCPU, cliCPU = cliCPU, srvCPU
		}
		srvLog := filepath.Join(e.dir, "grpcserver-"+v.name+".log")
		server, addr, err := startTarget(ctx, filepath.Join(e.dir, "grpcserver"), srvCPU, srvLog)
		if server != nil {
			defer server.stop(2 * time.Second)
		}
		if err != nil {
			return nil, err
		}
		cliLog := filepath.Join(e.dir, "grpcclient-"+v.name+".log")
		ct, err := startClientTarget(ctx, filepath.Join(e.dir, "grpcclient"), []string{"-addr", addr, "-conns", fmt.Sprint(v.conns)}, cliCPU, cliLog)
		if err != nil {
			return nil, err
		}
		defer ct.stop(2 * time.Second)
		vr.ct = ct
		vr.exited = func() error {
			if server.Exited() {
				return fmt.Errorf("gRPC server exited; see %s", srvLog)
			}
			return nil
		}
		if v.name == "grpcserver" {
			observed, sites = filepath.Join(e.dir, "grpcserver"), grpcserver.Probes
			vr.pid, vr.peer = server.Pid(), ct.Pid()
		} else {
			observed, sites = filepath.Join(e.dir, "grpcclient"), grpcclient.Probes
			vr.pid, vr.peer = ct.Pid(), server.Pid()
		}
	default:
		target, addr, err := startTarget(ctx, e.targetPath, e.o.serverCPU, logPath)
		if target != nil {
			defer target.stop(2 * time.Second)
		}
		if err != nil {
			return nil, err
		}
		vr.pid, vr.peer, vr.addr = target.Pid(), os.Getpid(), addr
		sites = httpserver.Probes
		mwLog := filepath.Join(e.dir, "target-"+v.name+"-promhttp.log")
		mw, mwAddr, err := startTarget(ctx, e.targetPath, e.o.serverCPU, mwLog, "-promhttp")
		if mw != nil {
			defer mw.stop(2 * time.Second)
		}
		if err != nil {
			return nil, err
		}
		vr.mwPid, vr.mwAddr = mw.Pid(), mwAddr
	}
	fl, err := newFloor(e.empty, observed, sites)
	if err != nil {
		return nil, err
	}
	defer fl.Close()
	vr.floor = fl
	logf("%s: empty probes at %s", v.name, strings.Join(fl.where, ", "))
	vr.config = filepath.Join(e.dir, "blindspot-"+v.name+".yaml")
	extra := ""
	if v.name == "business" {
		extra = bizConfig
	}
	if err := writeAgentConfig(vr.config, observed, extra); err != nil {
		return nil, err
	}
	pid := vr.pid
	cpus, _ := statusField(pid, "Cpus_allowed_list")
	what := map[bool]string{false: "keep-alive connections", true: "clients opening a connection per request"}[v.newConn]
	switch v.name {
	case "httpclient":
		what = "client goroutines with keep-alive connections to a server on CPU " + fmt.Sprint(e.o.clientCPU)
	case "sql":
		what = "goroutines querying SQLite"
	case "business":
		what = "goroutines calling main.Checkout"
	case "grpcserver":
		what = fmt.Sprintf("goroutines of a gRPC client on CPU %d making unary calls", e.o.clientCPU)
	case "grpcclient":
		what = fmt.Sprintf("goroutines making unary calls to a gRPC server on CPU %d", e.o.clientCPU)
	}
	logf("%s: target pid %d on CPU %s; %d %s, %d rounds x %v (+%v warm-up)",
		v.name, pid, cpus, v.conns, what, e.o.rounds, v.duration, e.o.warmup)
	res := &variantResult{variant: v, floor: fl, samples: map[string][]sample{}}
	order := e.o.order
	if vr.mwPid != 0 {
		order = append(order[:len(order):len(order)], setupMiddleware)
	}
	for r := 1; r <= e.o.rounds; r++ {
		for _, s := range order {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			exited := vr.ct != nil && vr.ct.Exited()
			if vr.ct == nil {
				exited, _ = processGone(pid)
			}
			if exited {
				return nil, fmt.Errorf("target exited; see %s", logPath)
			}
			if vr.exited != nil {
				if err := vr.exited(); err != nil {
					return nil, err
				}
			}
			smp, err := e.round(ctx, vr, s)
			for retry := 0; errors.Is(err, errNoRequests) && retry < 2; retry++ {
				// The machine is shared: another program can starve a
				// round entirely. Run it again rather than lose the run.
				logf("%s round %d %s: no requests completed (the machine is busy); again", v.name, r, s)
				smp, err = e.round(ctx, vr, s)
			}
			if err != nil {
				return nil, fmt.Errorf("round %d %s: %w", r, s, err)
			}
			res.samples[s] = append(res.samples[s], smp)
			line := fmt.Sprintf("%s round %d %-9s %7.2f µs/req %8.0f req/s (client %.1f µs/req; server's CPU: busy %.0f%%, softirq %.0f%%, others %.0f%%, steal %.0f%%; host %.0f forks/s)",
				v.name, r, s, smp.CPUPerReq, smp.RPS, smp.ClientCPUPerReq, 100*smp.ServerCPUBusy, 100*smp.SoftirqOnServerCPU, 100*smp.OtherOnServerCPU, 100*smp.ServerCPUSteal, smp.HostForks)
			switch s {
			case setupFloor:
				line += fmt.Sprintf("  %.2f hits/req, BPF %.2f runs %.0f ns/req", smp.HitsPerReq, bpfTotal(smp.BPF).Runs, bpfTotal(smp.BPF).Ns)
			case setupAgent:
				line += fmt.Sprintf("  BPF %.2f runs %.0f ns/req;", bpfTotal(smp.BPF).Runs, bpfTotal(smp.BPF).Ns)
				line += fmt.Sprintf("  agent %.3f ms/1k req (idle %.1f ms/s, net %.3f), RSS %.1f MB, counted %.0f of %d (attach %.1fs)",
					smp.AgentCPUPer1k, smp.AgentIdleCPU, smp.AgentNetPer1k, float64(smp.AgentRSS)/1e6, smp.Counted, smp.Sent, smp.AttachSeconds)
			}
			if smp.Errors > 0 {
				line += fmt.Sprintf("  %d CLIENT ERRORS", smp.Errors)
			}
			logf("%s", line)
		}
	}
	return res, nil
}

type snapshot struct {
	at     time.Time
	done   int64
	server time.Duration
	agent  time.Duration
	hits   []uint64
	client time.Duration
	cpu    cpuStat
	forks  uint64
	bpf    progStats
}

// round runs one measured round of one setup.
func (e *benchEnv) round(ctx context.Context, vr *variantRun, setup string) (sample, error) {
	v, pid, fl, addr := vr.v, vr.pid, vr.floor, vr.addr
	if setup == setupMiddleware {
		pid, addr = vr.mwPid, vr.mwAddr
	}
	var smp sample
	var ag *agent
	switch setup {
	case setupFloor:
		if err := fl.attach(pid); err != nil {
			return smp, err
		}
		defer fl.detach()
	case setupAgent:
		t0 := time.Now()
		var err error
		ag, err = startAgent(ctx, e.agentPath, vr.config, pid, v.family, filepath.Join(e.dir, "blindspot.log"), 30*time.Second)
		if err != nil {
			return smp, err
		}
		defer ag.stop()
		smp.AttachSeconds = time.Since(t0).Seconds()
		if e.o.agentIdle > 0 {
			c0, err := cpuTime(ag.pid())
			t0 := time.Now()
			if err == nil && sleepCtx(ctx, e.o.agentIdle, nil) {
				var c1 time.Duration
				if c1, err = cpuTime(ag.pid()); err == nil {
					smp.AgentIdleCPU = float64((c1 - c0).Microseconds()) / 1000 / time.Since(t0).Seconds()
				}
			}
			if err != nil {
				return smp, fmt.Errorf("agent CPU: %w", err)
			}
		}
	}

	snap := func() (snapshot, error) {
		s := snapshot{at: time.Now()}
		var err error
		if s.server, err = cpuTime(pid); err != nil {
			return s, fmt.Errorf("server CPU: %w", err)
		}
		if vr.peer != 0 {
			if s.client, err = cpuTime(vr.peer); err != nil {
				return s, err
			}
		}
		if s.cpu, err = readCPUStat(e.o.serverCPU); err != nil {
			return s, err
		}
		if s.forks, err = forks(); err != nil {
			return s, err
		}
		if ag != nil {
			if s.agent, err = cpuTime(ag.pid()); err != nil {
				return s, fmt.Errorf("agent CPU: %w", err)
			}
		}
		if setup == setupFloor {
			if s.hits, err = fl.hits(); err != nil {
				return s, err
			}
			if s.bpf, err = readProgStats(os.Getpid()); err != nil {
				return s, err
			}
		}
		if ag != nil {
			if s.bpf, err = readProgStats(ag.pid()); err != nil {
				return s, err
			}
		}
		return s, nil
	}

	bound := e.o.warmup + v.duration + 10*time.Second
	var l driver
	if vr.ct != nil {
		limit := e.o.maxRequests
		if v.name == "business" {
			// An unprobed call takes ~0.1 µs: millions per second.
			limit *= 50
		}
		r, err := vr.ct.run(limit, bound)
		if err != nil {
			return smp, fmt.Errorf("start the client target's loop: %w", err)
		}
		l = r
	} else {
		l = startLoad(addr, v.conns, v.newConn, e.o.maxRequests, bound)
	}
	defer l.Stop()
	if !sleepCtx(ctx, e.o.warmup, l.Finished()) {
		return smp, firstNonNil(ctx.Err(), l.Err(), errors.New("load ended during warm-up (max-requests too low?)"))
	}
	s0, err := snap()
	if err != nil {
		return smp, err
	}
	s0.done = l.Done()
	s0.at = time.Now()
	sleepCtx(ctx, v.duration, l.Finished())
	s1, err := snap()
	if err != nil {
		return smp, err
	}
	s1.done = l.Done()
	s1.at = time.Now()
	l.Stop()
	if err := ctx.Err(); err != nil {
		return smp, err
	}

	smp.Requests = s1.done - s0.done
	smp.Seconds = s1.at.Sub(s0.at).Seconds()
	smp.Errors = l.Errs()
	if smp.Requests <= 0 {
		return smp, firstNonNil(l.Err(), errNoRequests)
	}
	n := float64(smp.Requests)
	smp.CPUPerReq = float64((s1.server - s0.server).Microseconds()) / n
	smp.RPS = n / smp.Seconds
	smp.HostForks = float64(s1.forks-s0.forks) / smp.Seconds
	smp.ClientCPUPerReq = float64((s1.client - s0.client).Microseconds()) / n
	if t := float64(s1.cpu.busy + s1.cpu.idle + s1.cpu.steal - s0.cpu.busy - s0.cpu.idle - s0.cpu.steal); t > 0 {
		smp.ServerCPUBusy = float64(s1.cpu.busy-s0.cpu.busy) / t
		smp.ServerCPUSteal = float64(s1.cpu.steal-s0.cpu.steal) / t
		own := (s1.server - s0.server).Seconds() / smp.Seconds
		smp.SoftirqOnServerCPU = float64(s1.cpu.softirq-s0.cpu.softirq) / t
		smp.OtherOnServerCPU = max(0, smp.ServerCPUBusy-own-smp.SoftirqOnServerCPU)
	}
	if setup == setupFloor {
		var total uint64
		for i := range s1.hits {
			d := s1.hits[i] - s0.hits[i]
			total += d
			smp.SiteHits = append(smp.SiteHits, float64(d)/n)
		}
		smp.HitsPerReq = float64(total) / n
	}
	if s0.bpf != nil {
		smp.BPF = perOp(s0.bpf, s1.bpf, n)
	}
	if ag != nil {
		// µs per request is ms per 1,000 requests.
		smp.AgentCPUPer1k = float64((s1.agent - s0.agent).Microseconds()) / n
		smp.AgentNetPer1k = (float64((s1.agent - s0.agent).Microseconds()) - smp.AgentIdleCPU*1000*smp.Seconds) / n
		// The agent counts a request at its end; give its reader time to
		// drain, then read its count and its memory.
		smp.Sent = l.Done()
		smp.Counted, smp.Events, smp.Lost, err = ag.waitCount(v.metric, v.family, float64(smp.Sent), 3*time.Second)
		if err != nil {
			return smp, fmt.Errorf("read blindspot /metrics: %w", err)
		}
		if smp.AgentRSS, err = rssBytes(ag.pid()); err != nil {
			return smp, fmt.Errorf("agent RSS: %w", err)
		}
	}
	return smp, nil
}

// errNoRequests says a round completed no operation in its window.
var errNoRequests = errors.New("no requests completed")

// sleepCtx sleeps for d; it returns false if ctx or done ended first.
func sleepCtx(ctx context.Context, d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-done:
		return false
	}
}

// processGone says whether pid has exited (or is a zombie).
func processGone(pid int) (bool, error) {
	st, err := statusField(pid, "State")
	if err != nil {
		return true, err
	}
	return strings.HasPrefix(st, "Z") || strings.HasPrefix(st, "X"), nil
}

func sameSet(a, b []string) bool {
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		if m[s] != 1 {
			return false
		}
	}
	return true
}

func firstNonNil(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
