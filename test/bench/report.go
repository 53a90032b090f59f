//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"
)

// summary is one setup's medians over the rounds of a variant.
type summary struct {
	CPUPerReq float64 `json:"server_cpu_us_per_req"`
	RPS       float64 `json:"rps"`
	CPURatio  float64 `json:"cpu_vs_baseline"`
	RPSRatio  float64 `json:"rps_vs_baseline"`
	// Ranges (least, greatest) over rounds of the CPU per operation and of
	// the same-round ratios to the baseline.
	CPURange      [2]float64 `json:"server_cpu_us_per_req_range"`
	CPURatioRange [2]float64 `json:"cpu_vs_baseline_range"`
	RPSRatioRange [2]float64 `json:"rps_vs_baseline_range"`
	HitsPerReq    float64    `json:"hits_per_req,omitempty"`
	SiteHits      []float64  `json:"site_hits_per_req,omitempty"`
	AgentCPUPer1k float64    `json:"agent_cpu_ms_per_1k_req,omitempty"`
	AgentIdleCPU  float64    `json:"agent_idle_cpu_ms_per_s,omitempty"`
	AgentNetPer1k float64    `json:"agent_cpu_net_ms_per_1k_req,omitempty"`
	AgentRSS      float64    `json:"agent_rss_mb,omitempty"`
	AgentRSSMax   float64    `json:"agent_rss_mb_max,omitempty"`
	Sent          int64      `json:"requests_sent,omitempty"`
	Counted       float64    `json:"agent_counted,omitempty"`
	Lost          float64    `json:"agent_lost,omitempty"`
	EventsPerReq  float64    `json:"agent_events_per_req,omitempty"`
	AttachSeconds float64    `json:"agent_attach_seconds,omitempty"`
	Errors        int64      `json:"client_errors"`
	ClientCPU     float64    `json:"client_cpu_us_per_req"`
	OtherOnServer float64    `json:"other_on_server_cpu"`
	HostForks     float64    `json:"host_forks_per_s"`
	// BPF is each program's median work per operation; BPFRuns and BPFNs
	// the medians of the rounds' totals (with their ranges).
	BPF        map[string]bpfPerOp `json:"bpf_per_op,omitempty"`
	BPFRuns    float64             `json:"bpf_runs_per_op,omitempty"`
	BPFNs      float64             `json:"bpf_ns_per_op,omitempty"`
	BPFNsRange [2]float64          `json:"bpf_ns_per_op_range,omitempty"`
	Rounds     []sample            `json:"rounds"`
}

type variantSummary struct {
	Name         string              `json:"name"`
	Observed     string              `json:"observed"` // "server", "http client", "database/sql client"
	Family       string              `json:"family"`
	Sites        []string            `json:"sites"`
	NewConn      bool                `json:"new_connection_per_request"`
	Conns        int                 `json:"connections"`
	Seconds      float64             `json:"seconds_per_round"`
	Setups       map[string]*summary `json:"setups"`
	AgentMinusFl float64             `json:"agent_minus_floor_us_per_req"`
	AgentMinusBl float64             `json:"agent_minus_baseline_us_per_req"`
	FloorMinusBl float64             `json:"floor_minus_baseline_us_per_req"`
	CountsMatch  bool                `json:"agent_counts_match"`
	// HitsByTrap is the floor's hits per operation by trap kind.
	HitsByTrap map[string]float64 `json:"hits_per_op_by_trap"`
	// SiteTraps is the trap kind of each probe row (Sites).
	SiteTraps []string `json:"site_traps"`
}

// per returns f over the rounds of one setup.
func per(ss []sample, f func(sample) float64) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

// paired returns f(a[i], b[i]) for the rounds both setups completed:
// rounds alternate, so pairs share the machine's state of the moment.
func paired(a, b []sample, f func(a, b sample) float64) []float64 {
	n := min(len(a), len(b))
	out := make([]float64, n)
	for i := 0; i < n; i++ {
		out[i] = f(a[i], b[i])
	}
	return out
}

func summarize(r *variantResult) variantSummary {
	vs := variantSummary{Name: r.name, Observed: observedName(r.variant), Family: r.family, Sites: r.floor.where,
		NewConn: r.newConn, Conns: r.conns, Seconds: r.duration.Seconds(), Setups: map[string]*summary{}, CountsMatch: true}
	base := r.samples[setupBaseline]
	for _, name := range allSetups {
		ss, ok := r.samples[name]
		if !ok {
			continue
		}
		sum := &summary{
			CPUPerReq:     median(per(ss, func(s sample) float64 { return s.CPUPerReq })),
			RPS:           median(per(ss, func(s sample) float64 { return s.RPS })),
			CPURatio:      median(paired(ss, base, func(a, b sample) float64 { return a.CPUPerReq / b.CPUPerReq })),
			RPSRatio:      median(paired(ss, base, func(a, b sample) float64 { return a.RPS / b.RPS })),
			CPURange:      minMax(per(ss, func(s sample) float64 { return s.CPUPerReq })),
			CPURatioRange: minMax(paired(ss, base, func(a, b sample) float64 { return a.CPUPerReq / b.CPUPerReq })),
			RPSRatioRange: minMax(paired(ss, base, func(a, b sample) float64 { return a.RPS / b.RPS })),
			ClientCPU:     median(per(ss, func(s sample) float64 { return s.ClientCPUPerReq })),
			HostForks:     median(per(ss, func(s sample) float64 { return s.HostForks })),
			OtherOnServer: median(per(ss, func(s sample) float64 { return s.OtherOnServerCPU })),
			Rounds:        ss,
		}
		for _, s := range ss {
			sum.Errors += s.Errors
		}
		if name == setupFloor || name == setupAgent {
			var bpfRounds []map[string]bpfPerOp
			for _, s := range ss {
				bpfRounds = append(bpfRounds, s.BPF)
			}
			sum.BPF = medianBPF(bpfRounds)
			ns := per(ss, func(s sample) float64 { return bpfTotal(s.BPF).Ns })
			sum.BPFRuns = median(per(ss, func(s sample) float64 { return bpfTotal(s.BPF).Runs }))
			sum.BPFNs = median(ns)
			sum.BPFNsRange = minMax(ns)
		}
		switch name {
		case setupFloor:
			sum.HitsPerReq = median(per(ss, func(s sample) float64 { return s.HitsPerReq }))
			for i := range r.floor.sites {
				sum.SiteHits = append(sum.SiteHits, median(per(ss, func(s sample) float64 {
					if i < len(s.SiteHits) {
						return s.SiteHits[i]
					}
					return 0
				})))
			}
		case setupAgent:
			sum.AgentCPUPer1k = median(per(ss, func(s sample) float64 { return s.AgentCPUPer1k }))
			sum.AgentIdleCPU = median(per(ss, func(s sample) float64 { return s.AgentIdleCPU }))
			sum.AgentNetPer1k = median(per(ss, func(s sample) float64 { return s.AgentNetPer1k }))
			sum.AgentRSS = median(per(ss, func(s sample) float64 { return float64(s.AgentRSS) / 1e6 }))
			sum.AttachSeconds = median(per(ss, func(s sample) float64 { return s.AttachSeconds }))
			var events float64
			for _, s := range ss {
				sum.AgentRSSMax = max(sum.AgentRSSMax, float64(s.AgentRSS)/1e6)
				sum.Sent += s.Sent
				sum.Counted += s.Counted
				sum.Lost += s.Lost
				events += s.Events
				// Every operation must be measured or counted as lost.
				if s.Counted+s.Lost != float64(s.Sent) {
					vs.CountsMatch = false
				}
			}
			if sum.Sent > 0 {
				sum.EventsPerReq = events / float64(sum.Sent)
			}
		}
		vs.Setups[name] = sum
	}
	vs.HitsByTrap = r.floor.hitsByTrap(vs.Setups[setupFloor].SiteHits)
	vs.SiteTraps = r.floor.traps
	fl, ag := r.samples[setupFloor], r.samples[setupAgent]
	diff := func(a, b sample) float64 { return a.CPUPerReq - b.CPUPerReq }
	vs.AgentMinusFl = median(paired(ag, fl, diff))
	vs.AgentMinusBl = median(paired(ag, base, diff))
	vs.FloorMinusBl = median(paired(fl, base, diff))
	return vs
}

// minMax returns the least and greatest of xs.
func minMax(xs []float64) [2]float64 {
	if len(xs) == 0 {
		return [2]float64{}
	}
	r := [2]float64{xs[0], xs[0]}
	for _, x := range xs {
		r[0], r[1] = min(r[0], x), max(r[1], x)
	}
	return r
}

func observedName(v variant) string {
	switch v.name {
	case "httpclient":
		return "http client"
	case "sql":
		return "database/sql client"
	case "business":
		return "business function"
	case "grpcserver":
		return "gRPC server"
	case "grpcclient":
		return "gRPC client"
	}
	return "server"
}

func report(w io.Writer, o options, results []*variantResult, elapsed time.Duration) []variantSummary {
	var all []variantSummary
	fmt.Fprintf(w, "\nblindspot overhead: observed program pinned to CPU %d, the other end on CPU %d, %s/%s, %d rounds (medians; ratios and differences are medians of same-round pairs)\n",
		o.serverCPU, o.clientCPU, runtime.GOOS, runtime.GOARCH, o.rounds)
	for _, r := range results {
		vs := summarize(r)
		all = append(all, vs)
		// unit is what one operation is; cpuCol the observed program's CPU
		// per operation; peerCol the other end's.
		unit, units, cpuCol, peerCol := "req", "requests", "server CPU/req", "client/req"
		mode := "keep-alive connections"
		switch {
		case r.newConn:
			mode = "clients, new connection per request"
		case r.name == "httpclient":
			unit, cpuCol, peerCol = "req", "client CPU/req", "server/req"
			mode = "net/http client goroutines, keep-alive GETs to a net/http \"ok\" server in another process"
		case r.name == "sql":
			unit, units, cpuCol, peerCol = "query", "queries", "CPU/query", "-"
			mode = "goroutine(s) running db.QueryRow(\"SELECT 1\").Scan, modernc.org/sqlite in memory"
		case r.name == "business":
			unit, units, cpuCol, peerCol = "call", "calls", "CPU/call", "-"
			mode = "goroutine(s) calling main.Checkout (a duration metric with a label and an outcome)"
		case r.name == "grpcserver":
			unit, units, cpuCol, peerCol = "call", "calls", "server CPU/call", "client/call"
			mode = "unary calls at once from a grpc-go client in another process"
		case r.name == "grpcclient":
			unit, units, cpuCol, peerCol = "call", "calls", "client CPU/call", "server/call"
			mode = "goroutines making grpc-go unary calls to a grpc-go server in another process"
		}
		fmt.Fprintf(w, "\n== %s: %d %s, %v measured per round after %v warm-up ==\n", r.name, r.conns, mode, r.duration, o.warmup)
		fmt.Fprintf(w, "observed: %s (%s family); probe sites: %s\n", vs.Observed, vs.Family, strings.Join(r.floor.where, ", "))
		fmt.Fprintf(w, "%-10s %14s %14s %9s %9s %10s %12s %8s\n", "setup", cpuCol, "throughput", "CPU ×", unit+"/s ×", "hits/"+unit, peerCol, "others")
		for _, name := range allSetups {
			s := vs.Setups[name]
			if s == nil {
				continue
			}
			hits := "-"
			if name == setupFloor {
				hits = fmt.Sprintf("%.2f", s.HitsPerReq)
			}
			peer := fmt.Sprintf("%9.1f µs", s.ClientCPU)
			if peerCol == "-" {
				peer = fmt.Sprintf("%12s", "-")
			}
			fmt.Fprintf(w, "%-10s %11.2f µs %10.0f/s %8.2f× %8.2f× %10s %s %7.0f%%\n", name, s.CPUPerReq, s.RPS, s.CPURatio, s.RPSRatio, hits, peer, 100*s.OtherOnServer)
		}
		f, a := vs.Setups[setupFloor], vs.Setups[setupAgent]
		var sh []string
		for i, h := range f.SiteHits {
			if len(r.floor.offsets[i]) == 0 {
				continue // absent from the binary: not probed
			}
			sh = append(sh, fmt.Sprintf("%s %.2f (%s)", r.floor.labels[i], h, r.floor.traps[i]))
		}
		fmt.Fprintf(w, "floor hits per %s by site: %s\n", unit, strings.Join(sh, ", "))
		var bt []string
		for _, k := range []string{trapEmulated, trapSingleStep, trapMixed, trapUnclassified} {
			if h, ok := vs.HitsByTrap[k]; ok {
				bt = append(bt, fmt.Sprintf("%s %.2f", k, h))
			}
		}
		fmt.Fprintf(w, "hits per %s by trap kind: %s\n", unit, strings.Join(bt, ", "))
		fmt.Fprintf(w, "BPF per %s (kernel's bpf_stats, medians): floor %.2f runs %.0f ns; blindspot %.2f runs %.0f ns (%.0f–%.0f)\n",
			unit, f.BPFRuns, f.BPFNs, a.BPFRuns, a.BPFNs, a.BPFNsRange[0], a.BPFNsRange[1])
		fmt.Fprintf(w, "blindspot BPF per %s by program: %s\n", unit, formatBPF(a.BPF, unit))
		fmt.Fprintf(w, "%s CPU added per %s: floor %+.2f µs, blindspot %+.2f µs, blindspot − floor %+.2f µs (blindspot's BPF work beyond the traps)\n",
			vs.Observed, unit, vs.FloorMinusBl, vs.AgentMinusBl, vs.AgentMinusFl)
		// The agent's CPU less its idle rate is its cost of the requests;
		// when it is busy with other programs' starts (it inspects every
		// new process on the host) the idle rate swamps that difference.
		net := fmt.Sprintf("%.3f", a.AgentNetPer1k)
		if a.AgentNetPer1k < 0 || a.AgentIdleCPU > 0.2*a.AgentCPUPer1k*a.RPS/1000 {
			net = "n/a: idle use too large to subtract"
		}
		fmt.Fprintf(w, "agent: %.3f ms CPU per 1,000 %s (net of its idle use %s); idle use %.1f ms/s while the host started %.0f processes/s\n",
			a.AgentCPUPer1k, units, net, a.AgentIdleCPU, a.HostForks)
		var rr []string
		for _, s := range a.Rounds {
			rr = append(rr, fmt.Sprintf("%.3f (idle %.0f ms/s, net %.3f)", s.AgentCPUPer1k, s.AgentIdleCPU, s.AgentNetPer1k))
		}
		fmt.Fprintf(w, "agent: CPU ms per 1,000 %s by round: %s\n", units, strings.Join(rr, ", "))
		fmt.Fprintf(w, "agent: RSS %.1f MB (max %.1f MB), %.2f events/%s, attached in %.1f s\n",
			a.AgentRSS, a.AgentRSSMax, a.EventsPerReq, unit, a.AttachSeconds)
		var pr []string
		for _, s := range a.Rounds {
			pr = append(pr, fmt.Sprintf("%.0f/%d", s.Counted, s.Sent))
		}
		verdict := "OK, equal"
		if a.Lost > 0 {
			verdict = fmt.Sprintf("OK, counted + %.0f counted as lost = made", a.Lost)
		}
		if !vs.CountsMatch {
			verdict = "MISMATCH"
		}
		fmt.Fprintf(w, "agent count check: %s %.0f, %s made %d: %s (per round %s)\n",
			r.metric, a.Counted, units, a.Sent, verdict, strings.Join(pr, ", "))
		for _, name := range allSetups {
			if vs.Setups[name] == nil {
				continue
			}
			if o := vs.Setups[name].OtherOnServer; o > 0.10 {
				fmt.Fprintf(w, "WARNING: other programs took %.0f%% of the observed program's CPU in %s rounds (median): throughput is unreliable, CPU per %s less so\n", 100*o, name, unit)
			}
		}
		var errs int64
		for _, s := range vs.Setups {
			errs += s.Errors
		}
		if errs > 0 {
			fmt.Fprintf(w, "client errors: %d\n", errs)
		}
	}
	fmt.Fprintf(w, "\ntotal time %.1f s\n", elapsed.Seconds())
	out, _ := json.Marshal(map[string]any{
		"benchmark":  "blindspot-overhead",
		"goos":       runtime.GOOS,
		"goarch":     runtime.GOARCH,
		"rounds":     o.rounds,
		"warmup_s":   o.warmup.Seconds(),
		"variants":   all,
		"elapsed_s":  elapsed.Seconds(),
		"server_cpu": o.serverCPU,
		"client_cpu": o.clientCPU,
	})
	fmt.Fprintln(w, string(out))
	return all
}
