//go:build linux

package main

// The pipeline benchmark: how many events per second one ring reader
// sustains with zero loss, and the agent's CPU per event, from the ring to
// the aggregated series.
//
// Uprobes cannot produce events fast enough on this machine (a trap costs
// µs), so a BPF program (bpf/bench_pipeline.c) writes them at kernel speed:
// the events the HTTP server, HTTP client and database/sql families' programs
// write, byte for byte (built from each family's own BTF), into the agent's
// own per-CPU rings, run by BPF_PROG_TEST_RUN in bounded batches paced to a
// rate. The consumer is the agent's: a probes.Manager with the families
// cmd/agent runs (the HTTP server, HTTP client and database/sql ones), its
// readers, decoders and per-CPU aggregator shards. The producer runs on
// one CPU, so one ring and one reader take all events.
//
// At each rate, zero loss means every event produced was read (the
// manager's per-family event counters) and none was lost (its lost-event
// counters, which the producer increments when the ring is full, as every
// family's program does). The producer runs in a process of its own (this
// binary, given the program's descriptor), so the agent's CPU is this
// process's (getrusage). Each zero-loss rate's aggregated series are then
// checked: exactly the events of each template, in the series its labels
// name.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/dbsql"
	"github.com/blindspot-dev/blindspot/probes/httpclient"
	"github.com/blindspot-dev/blindspot/probes/httpserver"
	"github.com/blindspot-dev/blindspot/symbols"
)

// pipelineRingBytes is the size of each ring: probes.Options' default
// for this machine, which cmd/agent keeps.
func pipelineRingBytes() int {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		cpus = runtime.NumCPU()
	}
	return probes.DefaultRingBytes(cpus)
}

// Targets of the pipeline figure (issue 13).
const (
	pipelineTargetRate = 1e6 // events/s per core
	pipelineTargetNs   = 200 // agent CPU ns per event
)

// pipelineTemplate is one event the producer writes in turn with the others,
// and the series it must land in.
type pipelineTemplate struct {
	metric string
	labels map[string]string // every label of the metric ("" where unset)
	raw    []byte
}

// pipelineLevel is one paced rate.
type pipelineLevel struct {
	Rate       float64 `json:"rate"`         // events/s asked
	Achieved   float64 `json:"achieved"`     // events/s written (kept + lost) over the window
	Produced   uint64  `json:"produced"`     // producer runs: events written or lost
	Consumed   uint64  `json:"consumed"`     // events the readers read
	Lost       uint64  `json:"lost"`         // events the ring had no room for
	NsPerEvent float64 `json:"ns_per_event"` // agent CPU per event read
	Cores      float64 `json:"cores"`        // agent CPU over the window, in cores
	ZeroLoss   bool    `json:"zero_loss"`
	Exact      bool    `json:"exact"` // every series holds exactly its events
	Problem    string  `json:"problem,omitempty"`

	producerCPU time.Duration
}

// pipelineResult is the benchmark's outcome.
type pipelineResult struct {
	Levels []pipelineLevel `json:"levels"`
	// Sustained is the highest rate written with zero loss and exact
	// series, and NsPerEvent the agent's CPU per event at that rate.
	Sustained  float64 `json:"sustained_events_per_second"`
	NsPerEvent float64 `json:"ns_per_event"`
	// Mix describes the events written.
	Mix        string  `json:"mix"`
	RingBytes  int     `json:"ring_bytes"`
	LevelTime  string  `json:"level_duration"`
	ProducerNs float64 `json:"producer_ns_per_event"` // the producer's own kernel CPU per event
	Start      float64 `json:"start_rate"`
	// LoadAvg is /proc/loadavg's 1-minute figure when the run began: on a
	// shared machine, other work delays the reader and loses events.
	LoadAvg string `json:"load_average"`
}

func (r *pipelineResult) startRate() float64 { return r.Start }

// reportPipeline prints the pipeline's results, then them as JSON.
func reportPipeline(w io.Writer, r *pipelineResult) {
	fmt.Fprintf(w, "\n== pipeline: one ring reader, %s; load average %s at the start ==\n", r.Mix, r.LoadAvg)
	fmt.Fprintf(w, "%12s %12s %12s %10s %12s %8s %s\n", "asked/s", "written/s", "read", "lost", "agent ns/ev", "cores", "series")
	for _, lv := range r.Levels {
		exact := "exact"
		switch {
		case !lv.ZeroLoss:
			exact = "-"
		case !lv.Exact:
			exact = "NOT EXACT: " + lv.Problem
		}
		fmt.Fprintf(w, "%11.2fM %11.2fM %12d %10d %12.0f %8.2f %s\n", lv.Rate/1e6, lv.Achieved/1e6, lv.Consumed, lv.Lost, lv.NsPerEvent, lv.Cores, exact)
	}
	fmt.Fprintf(w, "sustained with zero loss: %.2fM events/s (target %.0fM: %.2f×); agent CPU %.0f ns/event (target %d: %.2f×); producer %.0f ns/event\n",
		r.Sustained/1e6, pipelineTargetRate/1e6, r.Sustained/pipelineTargetRate, r.NsPerEvent, pipelineTargetNs, r.NsPerEvent/pipelineTargetNs, r.ProducerNs)
	out, _ := json.Marshal(r)
	fmt.Fprintln(w, string(out))
}

// pipelineOptions tune the benchmark.
type pipelineOptions struct {
	duration time.Duration // per rate
	start    float64       // first rate, events/s
	max      float64       // give up doubling past this rate
	cpu      int           // the producer's CPU (its ring's reader is the one measured)
	profile  string        // write a CPU profile of the run here
	nice     int           // of every thread of this process, as the other measurements'
	fixed    float64       // measure at this rate only (profiling)
}

// producerFamily is the producer loaded as a probe family with no probes
// and no events of its own, so that the manager wires it to its rings and
// lost-event counters (and sets its wake-up threshold) exactly as it does
// the real families; Loaded hands over the loaded program.
type producerFamily struct {
	templates []pipelineTemplate
	handle    *probes.Handle
	seqOffset int // of pipeline_seq in the .bss map's value
}

func (p *producerFamily) family() *probes.Family {
	return &probes.Family{
		Name:    "pipeline_producer",
		Spec:    p.spec,
		Entries: p,
	}
}

func (p *producerFamily) spec() (*ebpf.CollectionSpec, error) {
	spec, err := loadBenchPipeline()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables["pipeline_ntemplates"].Set(uint32(len(p.templates))); err != nil {
		return nil, fmt.Errorf("set template count: %w", err)
	}
	seq := spec.Variables["pipeline_seq"]
	if seq == nil || seq.SectionName != ".bss" || seq.Size() != 8 {
		return nil, errors.New("producer: no pipeline_seq in .bss")
	}
	p.seqOffset = int(seq.Offset)
	return spec, nil
}

func (p *producerFamily) Loaded(h *probes.Handle) { p.handle = h }
func (p *producerFamily) Entry([]byte) uint32     { return 0 }
func (p *producerFamily) DetachEntry(int, uint32, string) (probes.ProbeStatus, bool) {
	return probes.ProbeStatus{}, false
}
func (p *producerFamily) ProcessDetached(int)             {}
func (p *producerFamily) BinaryForgotten(*symbols.Binary) {}

// pipelineEvents builds the templates: HTTP server requests (ServeMux
// patterns, raw paths folded into one route, TLS and HTTP/2, a 5xx), HTTP
// client requests and database queries, from each family's BTF.
func pipelineEvents(pid uint32, server, client, db *ebpf.CollectionSpec) ([]pipelineTemplate, error) {
	const start = 1_000_000_000
	var out []pipelineTemplate
	var errs []error
	srv := func(method, status, pattern, path string, tls, h2 bool, labels map[string]string) {
		e := newBTFEvent(server, "http_server_event")
		flags := uint64(4) // HTTP_FLAG_STATUS
		major, minor := uint64(1), uint64(1)
		if tls {
			flags |= 16
		}
		if h2 {
			flags |= 8
			major, minor = 2, 0
		}
		e.setUint("hdr.kind", 1)
		e.setUint("hdr.flags", flags)
		e.setUint("hdr.pid", uint64(pid))
		e.setUint("hdr.start_ns", start)
		e.setUint("hdr.end_ns", start+1000)
		var st uint64
		fmt.Sscan(status, &st)
		e.setUint("status", st)
		e.setChars("method", "method_len", method)
		e.setChars("pattern", "pattern_len", pattern)
		e.setChars("path", "path_len", path)
		e.setUint("proto_major", major)
		e.setUint("proto_minor", minor)
		full := map[string]string{"http_request_method": method, "http_response_status_code": status,
			"error_type": "", "url_scheme": "http", "network_protocol_version": "1.1"}
		if tls {
			full["url_scheme"] = "https"
		}
		if h2 {
			full["network_protocol_version"] = "2"
		}
		for k, v := range labels {
			full[k] = v
		}
		errs = append(errs, e.err)
		out = append(out, pipelineTemplate{metric: "http_server_request_duration_seconds", labels: full, raw: e.buf})
	}
	cli := func(method, status, scheme, host string, labels map[string]string) {
		e := newBTFEvent(client, "http_client_event")
		e.setUint("hdr.kind", 2)
		e.setUint("hdr.flags", 1) // HTTPC_FLAG_RESPONSE
		e.setUint("hdr.pid", uint64(pid))
		e.setUint("hdr.start_ns", start)
		e.setUint("hdr.end_ns", start+1000)
		var st uint64
		fmt.Sscan(status, &st)
		e.setUint("status", st)
		e.setChars("method", "method_len", method)
		e.setChars("scheme", "scheme_len", scheme)
		e.setChars("host", "host_len", host)
		e.setUint("proto_major", 1)
		e.setUint("proto_minor", 1)
		full := map[string]string{"http_request_method": method, "http_response_status_code": status,
			"error_type": "", "network_protocol_version": "1.1"}
		for k, v := range labels {
			full[k] = v
		}
		errs = append(errs, e.err)
		out = append(out, pipelineTemplate{metric: "http_client_request_duration_seconds", labels: full, raw: e.buf})
	}
	query := func(q string, labels map[string]string) {
		e := newBTFEvent(db, "db_event")
		e.setUint("hdr.kind", 3)
		e.setUint("hdr.pid", uint64(pid))
		e.setUint("hdr.start_ns", start)
		e.setUint("hdr.end_ns", start+1000)
		e.setUint("op", 0) // DB_OP_QUERY
		e.setChars("query", "query_len", q)
		full := map[string]string{"db_system_name": "", "error_type": "", "server_address": "", "server_port": "", "db_namespace": ""}
		for k, v := range labels {
			full[k] = v
		}
		errs = append(errs, e.err)
		out = append(out, pipelineTemplate{metric: "db_client_operation_duration_seconds", labels: full, raw: e.buf})
	}
	items := map[string]string{"http_route": "/api/items/{id}"}
	srv("GET", "200", "GET /api/items/{id}", "/api/items/7", false, false, items)
	srv("GET", "200", "GET /api/items/{id}", "/api/items/8", false, false, items)
	srv("POST", "201", "POST /api/items", "/api/items", false, false, map[string]string{"http_route": "/api/items"})
	srv("GET", "404", "", "/users/42", false, false, map[string]string{"http_route": "/users/{id}"})
	srv("GET", "404", "", "/users/43", false, false, map[string]string{"http_route": "/users/{id}"})
	srv("GET", "500", "GET /api/items/{id}", "/api/items/9", false, false, map[string]string{"http_route": "/api/items/{id}", "error_type": "500"})
	srv("DELETE", "204", "DELETE /api/items/{id}", "/api/items/7", false, false, items)
	srv("GET", "200", "", "/healthz", false, false, map[string]string{"http_route": "/healthz"})
	srv("PUT", "200", "PUT /api/items/{id}", "/api/items/7", true, true, items)
	srv("GET", "200", "GET /api/items/{id}", "/api/items/10", false, false, items)
	cli("GET", "200", "http", "inventory.internal:8080", map[string]string{"server_address": "inventory.internal", "server_port": "8080"})
	cli("POST", "503", "https", "payments.example.com", map[string]string{"server_address": "payments.example.com", "server_port": "443"})
	cli("GET", "200", "http", "inventory.internal:8080", map[string]string{"server_address": "inventory.internal", "server_port": "8080"})
	query("SELECT id, total FROM orders WHERE id = $1", map[string]string{"db_operation_name": "SELECT", "db_collection_name": "orders"})
	query("INSERT INTO orders (id, total) VALUES ($1, $2)", map[string]string{"db_operation_name": "INSERT", "db_collection_name": "orders"})
	query("SELECT id, total FROM orders WHERE id = $1", map[string]string{"db_operation_name": "SELECT", "db_collection_name": "orders"})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// btfEvent writes the fields of one C struct into its bytes, by name, at
// the offsets and sizes its BTF gives: the event exactly as the family's
// program lays it out, without trusting a hand-written copy.
type btfEvent struct {
	st  *btf.Struct
	buf []byte
	err error
}

func newBTFEvent(spec *ebpf.CollectionSpec, name string) *btfEvent {
	var st *btf.Struct
	if err := spec.Types.TypeByName(name, &st); err != nil {
		return &btfEvent{err: fmt.Errorf("struct %s: %w", name, err)}
	}
	return &btfEvent{st: st, buf: make([]byte, st.Size)}
}

// field finds a member by its dotted path ("hdr.kind").
func (e *btfEvent) field(path string) (off int, typ btf.Type, ok bool) {
	if e.err != nil {
		return 0, nil, false
	}
	var t btf.Type = e.st
	for _, name := range strings.Split(path, ".") {
		st, isStruct := btf.UnderlyingType(t).(*btf.Struct)
		if !isStruct {
			e.err = fmt.Errorf("%s: %s is not a struct", e.st.Name, path)
			return 0, nil, false
		}
		found := false
		for _, m := range st.Members {
			if m.Name == name {
				off += int(m.Offset.Bytes())
				t, found = m.Type, true
				break
			}
		}
		if !found {
			e.err = fmt.Errorf("%s has no member %s", e.st.Name, path)
			return 0, nil, false
		}
	}
	return off, btf.UnderlyingType(t), true
}

func (e *btfEvent) setUint(path string, v uint64) {
	off, t, ok := e.field(path)
	if !ok {
		return
	}
	size, err := btf.Sizeof(t)
	if err != nil || size > 8 || (size < 8 && v>>(8*size) != 0) {
		e.err = fmt.Errorf("%s.%s: %d does not fit", e.st.Name, path, v)
		return
	}
	for i := 0; i < size; i++ {
		e.buf[off+i] = byte(v >> (8 * i)) // little-endian: the objects are bpfel
	}
}

func (e *btfEvent) setChars(path, lenPath, s string) {
	off, t, ok := e.field(path)
	if !ok {
		return
	}
	arr, isArray := t.(*btf.Array)
	if !isArray || int(arr.Nelems) < len(s) {
		e.err = fmt.Errorf("%s.%s: %q does not fit", e.st.Name, path, s)
		return
	}
	copy(e.buf[off:], s)
	e.setUint(lenPath, uint64(len(s)))
}

// pipelineBench is one loaded pipeline: the agent's manager and the
// producer.
type pipelineBench struct {
	o         pipelineOptions
	agg       *aggregator.Aggregator
	pm        *probes.Manager
	prog      *ebpf.Program
	seq       *ebpf.Map // the producer's .bss, which holds pipeline_seq
	seqOffset int
	templates []pipelineTemplate
	target    aggregator.TargetID
	kinds     []string // families whose events are written
}

func newPipelineBench(o pipelineOptions) (*pipelineBench, error) {
	metrics := append(append(httpserver.Metrics(), httpclient.Metrics()...), dbsql.Metrics()...)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	agg := aggregator.New(metrics, aggregator.Options{Shards: cpus})
	server, client, db := httpserver.Family(), httpclient.Family(agg), dbsql.Family(agg, nil)
	var specs [3]*ebpf.CollectionSpec
	for i, f := range []*probes.Family{server, client, db} {
		if specs[i], err = f.Spec(); err != nil {
			return nil, fmt.Errorf("%s spec: %w", f.Name, err)
		}
	}
	pid := uint32(os.Getpid())
	templates, err := pipelineEvents(pid, specs[0], specs[1], specs[2])
	if err != nil {
		return nil, err
	}
	prod := &producerFamily{templates: templates}
	// The manager's defaults (ring size, drain interval), as cmd/agent's.
	pm, err := probes.New(agg, []*probes.Family{server, client, db, prod.family()}, nil)
	if err != nil {
		return nil, fmt.Errorf("load the probe families: %w", err)
	}
	b := &pipelineBench{o: o, agg: agg, pm: pm, templates: templates, kinds: []string{server.Name, client.Name, db.Name}, seqOffset: prod.seqOffset}
	if err := b.setup(prod, pid); err != nil {
		pm.Close()
		return nil, err
	}
	return b, nil
}

func (b *pipelineBench) setup(prod *producerFamily, pid uint32) error {
	h := prod.handle
	if h == nil {
		return errors.New("producer not loaded")
	}
	b.prog = h.Program("pipeline_produce")
	if b.prog == nil {
		return errors.New("producer program missing")
	}
	// The producer's own maps, found through its program: the templates,
	// and the .bss that holds its run counter.
	templates, err := programMap(b.prog, func(name string) bool { return strings.HasPrefix("pipeline_templates", name) && name != "" })
	if err != nil {
		return err
	}
	defer templates.Close()
	if b.seq, err = programMap(b.prog, func(name string) bool { return strings.HasSuffix(name, ".bss") }); err != nil {
		return err
	}
	for i, t := range prod.templates {
		var v benchPipelinePipelineTemplate
		if len(t.raw) > len(v.Data) {
			return fmt.Errorf("template %d: %d bytes, the producer holds %d", i, len(t.raw), len(v.Data))
		}
		v.Size = uint32(len(t.raw))
		copy(v.Data[:], t.raw)
		if err := templates.Put(uint32(i), &v); err != nil {
			return fmt.Errorf("write template %d: %w", i, err)
		}
	}
	b.target = b.agg.AddTarget(aggregator.Target{PID: int(pid), Service: "pipeline-bench", Exe: "/pipeline-bench", Start: time.Now()})
	h.Attribute(int(pid), b.target)
	return nil
}

// programMap opens the first map of prog whose (kernel, truncated) name
// matches.
func programMap(prog *ebpf.Program, match func(name string) bool) (*ebpf.Map, error) {
	info, err := prog.Info()
	if err != nil {
		return nil, err
	}
	ids, _ := info.MapIDs()
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return nil, err
		}
		if mi, err := m.Info(); err == nil && match(mi.Name) {
			return m, nil
		}
		m.Close()
	}
	return nil, errors.New("producer map not found")
}

func (b *pipelineBench) close() {
	if b.seq != nil {
		b.seq.Close()
	}
	b.pm.Close()
}

func (b *pipelineBench) runs() (uint64, error) {
	v := make([]byte, b.seq.ValueSize())
	if err := b.seq.Lookup(uint32(0), &v); err != nil {
		return 0, err
	}
	if b.seqOffset+8 > len(v) {
		return 0, errors.New("pipeline_seq outside the .bss")
	}
	return binary.LittleEndian.Uint64(v[b.seqOffset:]), nil
}

// counts sums the manager's counters over the written families: events
// read, lost, and anything not folded (invalid, malformed, unattributed).
func (b *pipelineBench) counts() (read, lost, bad uint64) {
	s := b.pm.Stats()
	for _, k := range b.kinds {
		read += s.Events[k]
		lost += s.Lost[k]
		for _, n := range s.Invalid[k] {
			bad += n
		}
	}
	return read, lost, bad + s.Malformed + s.Unattributed
}

// seriesCounts reads the aggregated counts of the written metrics, by
// metric and labels.
func (b *pipelineBench) seriesCounts() map[string]uint64 {
	out := map[string]uint64{}
	for _, p := range b.agg.Snapshot() {
		if p.Target != b.target {
			continue
		}
		out[seriesName(p.Metric.Name, p.Metric.Labels, p.Labels, p.Overflow)] += p.Count
	}
	return out
}

func seriesName(metric string, names, values []string, overflow bool) string {
	if overflow {
		return metric + "{overflow}"
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + values[i]
	}
	return metric + "{" + strings.Join(parts, ",") + "}"
}

// expected gives the series counts runs [from, to) must add.
func (b *pipelineBench) expected(from, to uint64) map[string]uint64 {
	labelNames := map[string][]string{}
	for _, m := range b.agg.Metrics() {
		labelNames[m.Name] = m.Labels
	}
	out := map[string]uint64{}
	n := uint64(len(b.templates))
	for i, t := range b.templates {
		// Runs r in [from, to) with r % n == i.
		count := ceilDiv(to, n, uint64(i)) - ceilDiv(from, n, uint64(i))
		names := labelNames[t.metric]
		values := make([]string, len(names))
		for j, name := range names {
			values[j] = t.labels[name]
		}
		out[seriesName(t.metric, names, values, false)] += count
	}
	return out
}

// ceilDiv counts the r in [0, x) with r % n == i.
func ceilDiv(x, n, i uint64) uint64 {
	if x <= i {
		return 0
	}
	return (x-i-1)/n + 1
}

// level writes events at rate for the level's duration, in batches, then
// waits for the readers to drain the ring.
func (b *pipelineBench) level(rate float64) (pipelineLevel, error) {
	lv := pipelineLevel{Rate: rate}
	before := b.seriesCounts()
	read0, lost0, bad0 := b.counts()
	runs0, err := b.runs()
	if err != nil {
		return lv, err
	}
	// A batch is at most a sixteenth of the ring: the producer's bursts
	// stay well below what the ring holds.
	largest := 0
	for _, t := range b.templates {
		largest = max(largest, len(t.raw))
	}
	maxBatch := max(1, uint64(pipelineRingBytes())/16/uint64(largest+8))
	// The producer runs in a process of its own, so that this process's
	// CPU is the agent's alone (and the Go scheduler's work for the
	// producer's pacing is not counted as the agent's).
	fd, err := unix.Dup(b.prog.FD())
	if err != nil {
		return lv, err
	}
	progFile := os.NewFile(uintptr(fd), "pipeline_produce")
	defer progFile.Close()
	cmd := exec.Command("/proc/self/exe", producerCommand, fmt.Sprint(rate), b.o.duration.String(), fmt.Sprint(maxBatch), fmt.Sprint(b.o.cpu))
	cmd.ExtraFiles = []*os.File{progFile} // fd 3
	cmd.Stderr = os.Stderr
	self0 := rusageCPU(unix.RUSAGE_SELF)
	began := time.Now()
	out, err := cmd.Output()
	if err != nil {
		return lv, fmt.Errorf("producer: %w", err)
	}
	var ns int64
	if _, err := fmt.Sscan(string(out), &ns); err != nil || ns <= 0 {
		return lv, fmt.Errorf("producer said %q: %v", out, err)
	}
	window := time.Duration(ns)
	if ps := cmd.ProcessState; ps != nil {
		lv.producerCPU = ps.UserTime() + ps.SystemTime()
	}
	runs1, err := b.runs()
	if err != nil {
		return lv, err
	}
	lv.Produced = runs1 - runs0
	lv.Achieved = float64(lv.Produced) / window.Seconds()
	// Drain: the readers poll on their interval (a fuller ring wakes them).
	deadline := time.Now().Add(3 * time.Second)
	var read, lost, bad uint64
	for {
		read, lost, bad = b.counts()
		if read-read0+lost-lost0 >= lv.Produced || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	wall := time.Since(began)
	agent := rusageCPU(unix.RUSAGE_SELF) - self0
	lv.Consumed, lv.Lost = read-read0, lost-lost0
	lv.NsPerEvent = float64(agent.Nanoseconds()) / float64(max(lv.Consumed, 1))
	lv.Cores = agent.Seconds() / wall.Seconds()
	lv.ZeroLoss = lv.Lost == 0 && lv.Consumed == lv.Produced
	switch {
	case bad != bad0:
		lv.Problem = fmt.Sprintf("%d events not folded (invalid, malformed or unattributed)", bad-bad0)
	case lv.Consumed+lv.Lost != lv.Produced:
		lv.Problem = fmt.Sprintf("read %d + lost %d != written %d", lv.Consumed, lv.Lost, lv.Produced)
	}
	if lv.ZeroLoss && lv.Problem == "" {
		lv.Exact = true
		after := b.seriesCounts()
		want := b.expected(runs0, runs1)
		for k, w := range want {
			if got := after[k] - before[k]; got != w {
				lv.Exact = false
				lv.Problem = fmt.Sprintf("series %s: %d, want %d", k, got, w)
				break
			}
		}
		for k := range after {
			if _, ok := want[k]; !ok && after[k] != before[k] {
				lv.Exact = false
				lv.Problem = fmt.Sprintf("unexpected series %s", k)
			}
		}
	}
	return lv, nil
}

// rusageCPU is the user and system CPU of the process or of the calling
// thread.
func rusageCPU(who int) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measurePipeline runs rates from o.start, doubling while every event is
// read, then one rate between the last that held and the first that did
// not.
func measurePipeline(o pipelineOptions) (*pipelineResult, error) {
	if err := pinSelf(-1, o.nice); err != nil {
		return nil, err
	}
	if o.profile != "" {
		f, err := os.Create(o.profile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	return ladder(o)
}

func ladder(o pipelineOptions) (*pipelineResult, error) {
	b, err := newPipelineBench(o)
	if err != nil {
		return nil, err
	}
	defer b.close()
	res := &pipelineResult{Mix: b.mix(), RingBytes: pipelineRingBytes(), LevelTime: o.duration.String(), Start: o.start, LoadAvg: loadAverage()}
	// Warm up: first sight of every label value and series.
	if _, err := b.level(o.start / 4); err != nil {
		return nil, err
	}
	var produced uint64
	var producerCPU time.Duration
	good, bad := 0.0, 0.0
	try := func(rate float64) (bool, error) {
		lv, err := b.level(rate)
		if err != nil {
			return false, err
		}
		produced += lv.Produced
		producerCPU += lv.producerCPU
		res.Levels = append(res.Levels, lv)
		logf("pipeline: %.2fM events/s asked, %.2fM written, read %d lost %d, agent %.0f ns/event (%.2f cores)%s",
			rate/1e6, lv.Achieved/1e6, lv.Consumed, lv.Lost, lv.NsPerEvent, lv.Cores, problemSuffix(lv.Problem))
		ok := lv.ZeroLoss && lv.Exact
		if ok && lv.Achieved > res.Sustained {
			res.Sustained, res.NsPerEvent = lv.Achieved, lv.NsPerEvent
		}
		return ok, nil
	}
	if o.fixed > 0 {
		if _, err := try(o.fixed); err != nil {
			return res, err
		}
	}
	for rate := o.start; o.fixed == 0 && rate <= o.max; rate *= 2 {
		ok, err := try(rate)
		if err == nil && !ok {
			ok, err = try(rate) // once more: one hiccup of a shared machine
		}
		if err != nil {
			return res, err
		}
		if !ok {
			bad = rate
			break
		}
		good = rate
		if last := res.Levels[len(res.Levels)-1]; last.Achieved < 0.9*rate {
			break // the producer's own limit: no higher rate can be asked
		}
	}
	if good > 0 && bad > 0 {
		if _, err := try((good + bad) / 2); err != nil {
			return res, err
		}
	}
	res.ProducerNs = float64(producerCPU.Nanoseconds()) / float64(max(produced, 1))
	return res, nil
}

func problemSuffix(p string) string {
	if p == "" {
		return ""
	}
	return ": " + p
}

// mix describes the templates: how many of each family, and their sizes.
func (b *pipelineBench) mix() string {
	type fam struct {
		n, size int
	}
	by := map[string]*fam{}
	var names []string
	for _, t := range b.templates {
		f := by[t.metric]
		if f == nil {
			f = &fam{}
			by[t.metric] = f
			names = append(names, t.metric)
		}
		f.n++
		f.size = len(t.raw)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%d/%d %s (%d B)", by[n].n, len(b.templates), strings.TrimSuffix(n, "_seconds"), by[n].size))
	}
	return strings.Join(parts, ", ")
}

// producerCommand is the first argument that makes the bench binary the
// pipeline's producer (producerMain), started by level.
const producerCommand = "pipeline-producer"

// producerMain runs the producer program (fd 3) at a rate for a duration,
// in batches, pinned to one CPU, and prints how long it ran.
func producerMain(args []string) int {
	var rate float64
	var duration time.Duration
	var batch uint64
	var cpu int
	if len(args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: pipeline-producer RATE DURATION BATCH CPU")
		return 2
	}
	d, err := time.ParseDuration(args[1])
	_, err1 := fmt.Sscan(args[0], &rate)
	_, err2 := fmt.Sscan(args[2], &batch)
	_, err3 := fmt.Sscan(args[3], &cpu)
	if err := errors.Join(err, err1, err2, err3); err != nil || rate <= 0 || batch == 0 {
		fmt.Fprintln(os.Stderr, "pipeline-producer: bad arguments:", err)
		return 2
	}
	duration = d
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		fmt.Fprintf(os.Stderr, "pipeline-producer: pin to CPU %d: %v\n", cpu, err)
		return 1
	}
	prog, err := ebpf.NewProgramFromFD(3)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pipeline-producer:", err)
		return 1
	}
	data := make([]byte, 64)
	began := time.Now()
	var asked uint64
	for {
		el := time.Since(began)
		if el >= duration {
			break
		}
		due := uint64(rate*el.Seconds()) - min(asked, uint64(rate*el.Seconds()))
		if due == 0 {
			time.Sleep(time.Duration(float64(batch) / 2 / rate * 1e9))
			continue
		}
		n := min(due, batch)
		if _, err := prog.Run(&ebpf.RunOptions{Data: data, Repeat: uint32(n)}); err != nil {
			fmt.Fprintln(os.Stderr, "pipeline-producer: run:", err)
			return 1
		}
		asked += n
	}
	fmt.Println(time.Since(began).Nanoseconds())
	return 0
}

// loadAverage is the 1-minute load average, "" if unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
