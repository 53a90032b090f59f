package goruntime

import "github.com/blindspot-dev/blindspot/aggregator"

// PauseBuckets are the bounds of blindspot_go_gc_pause_duration_seconds: 10 µs to 1 s.
var PauseBuckets = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// The runtime metrics of every observed Go program (names and labels are
// fixed in the project's metrics contract). All describe one process.
// Those the OpenTelemetry semantic conventions define carry their names
// and instruments (UpDown where they are UpDownCounters); those they do
// not define are blindspot's own and carry its namespace, blindspot.go.*
// (see docs/metrics.md).
var (
	GoroutineCount = &aggregator.Metric{Name: "go_goroutine_count", OTelName: "go.goroutine.count",
		Help: "Live goroutines, as runtime.NumGoroutine counts them.", Unit: "{goroutine}", Kind: aggregator.Gauge, PerInstance: true, UpDown: true}
	GoroutineLive = &aggregator.Metric{Name: "blindspot_go_goroutine_live", OTelName: "blindspot.go.goroutine.live",
		Help: "Live goroutines by the function their go statement started (top N, the rest \"other\").", Unit: "{goroutine}",
		Kind: aggregator.Gauge, Labels: []string{"blindspot_go_goroutine_start_function"}, PerInstance: true, UpDown: true}
	GoroutineOldest = &aggregator.Metric{Name: "blindspot_go_goroutine_oldest_age_seconds", OTelName: "blindspot.go.goroutine.oldest_age",
		Help: "Age of the oldest live goroutine by start function (measured from when the agent first saw it).", Unit: "s",
		Kind: aggregator.Gauge, Labels: []string{"blindspot_go_goroutine_start_function"}, PerInstance: true}
	GoroutineRefused = &aggregator.Metric{Name: "blindspot_go_goroutine_samples_refused_total", OTelName: "blindspot.go.goroutine.samples_refused",
		Help: "Samples whose goroutines were not counted: more than the agent's bound per program (reason budget) or than the program's memory can hold (implausible). The goroutine series are withdrawn until a sample counts them again.",
		Unit: "{sample}", Kind: aggregator.Counter, Labels: []string{"reason"}, PerInstance: true}
	GCCycles = &aggregator.Metric{Name: "go_memory_gc_cycles_total", OTelName: "go.memory.gc.cycles",
		Help: "Completed GC cycles.", Unit: "{gc_cycle}", Kind: aggregator.Counter, PerInstance: true}
	GCPause = &aggregator.Metric{Name: "blindspot_go_gc_pause_duration_seconds", OTelName: "blindspot.go.gc.pause.duration",
		Help: "Stop-the-world pause time of each GC cycle (both pauses of a cycle summed, as runtime.MemStats.PauseNs).", Unit: "s", Kind: aggregator.Histogram, Buckets: PauseBuckets, PerInstance: true}
	GCGoal = &aggregator.Metric{Name: "go_memory_gc_goal_bytes", OTelName: "go.memory.gc.goal",
		Help: "Heap size the GC aims at, from GOGC.", Unit: "By", Kind: aggregator.Gauge, PerInstance: true, UpDown: true}
	MemoryUsed = &aggregator.Metric{Name: "go_memory_used_bytes", OTelName: "go.memory.used",
		Help: "Memory the Go runtime has mapped and not released to the OS.", Unit: "By", Kind: aggregator.Gauge, PerInstance: true, UpDown: true}
	ProcessorLimit = &aggregator.Metric{Name: "go_processor_limit", OTelName: "go.processor.limit",
		Help: "GOMAXPROCS.", Unit: "{thread}", Kind: aggregator.Gauge, PerInstance: true, UpDown: true}
	GOGC = &aggregator.Metric{Name: "go_config_gogc_percent", OTelName: "go.config.gogc",
		Help: "GOGC (-1 when the GC is off).", Unit: "%", Kind: aggregator.Gauge, PerInstance: true, UpDown: true}

	ProcessCPU = &aggregator.Metric{Name: "process_cpu_time_seconds_total", OTelName: "process.cpu.time",
		Help: "CPU time of the process by mode.", Unit: "s", Kind: aggregator.Counter, Labels: []string{"cpu_mode"}, PerInstance: true, Float: true}
	ProcessRSS = &aggregator.Metric{Name: "process_memory_usage_bytes", OTelName: "process.memory.usage",
		Help: "Resident memory of the process.", Unit: "By", Kind: aggregator.Gauge, PerInstance: true, UpDown: true}
	ProcessVirtual = &aggregator.Metric{Name: "process_memory_virtual_bytes", OTelName: "process.memory.virtual",
		Help: "Virtual memory of the process.", Unit: "By", Kind: aggregator.Gauge, PerInstance: true, UpDown: true}
	ProcessThreads = &aggregator.Metric{Name: "process_thread_count", OTelName: "process.thread.count",
		Help: "Threads of the process.", Unit: "{thread}", Kind: aggregator.Gauge, PerInstance: true, UpDown: true}
	ProcessFDs = &aggregator.Metric{Name: "process_unix_file_descriptor_count", OTelName: "process.unix.file_descriptor.count",
		Help: "Open file descriptors of the process.", Unit: "{file_descriptor}", Kind: aggregator.Gauge, PerInstance: true, UpDown: true}
	ProcessUptime = &aggregator.Metric{Name: "process_uptime_seconds", OTelName: "process.uptime",
		Help: "Time since the process started.", Unit: "s", Kind: aggregator.Gauge, PerInstance: true}
)

// Metrics returns every metric the sampler writes.
func Metrics() []*aggregator.Metric {
	return []*aggregator.Metric{
		GoroutineCount, GoroutineLive, GoroutineOldest, GoroutineRefused,
		GCCycles, GCPause, GCGoal, MemoryUsed, ProcessorLimit, GOGC,
		ProcessCPU, ProcessRSS, ProcessVirtual, ProcessThreads, ProcessFDs, ProcessUptime,
	}
}
