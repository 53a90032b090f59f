//go:build linux

package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
)

// The kernel accounts every BPF program's runs and run time while
// statistics are enabled (BPF_ENABLE_STATS, held open for the whole bench):
// exact counts per operation, free of the noise that timing the observed
// program carries on a shared virtual machine.

// progStat is what the kernel accounted for one program.
type progStat struct {
	Runs uint64
	Ns   uint64
}

// progStats is the accounted work of a process's programs, by full name
// (the kernel keeps 15 characters; cilium/ebpf reads the rest from BTF).
type progStats map[string]progStat

// bpfPerOp is one program's work per operation of a round.
type bpfPerOp struct {
	Runs float64 `json:"runs_per_op"`
	Ns   float64 `json:"ns_per_op"`
}

// progIDsOf returns the IDs of the BPF programs pid holds a descriptor
// of, from /proc/PID/fdinfo.
func progIDsOf(pid int) ([]ebpf.ProgramID, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	seen := map[ebpf.ProgramID]bool{}
	var ids []ebpf.ProgramID
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			v, ok := strings.CutPrefix(sc.Text(), "prog_id:")
			if !ok {
				continue
			}
			if id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil && !seen[ebpf.ProgramID(id)] {
				seen[ebpf.ProgramID(id)] = true
				ids = append(ids, ebpf.ProgramID(id))
			}
		}
		f.Close()
	}
	return ids, nil
}

// readProgStats sums the accounted work of pid's programs by name.
func readProgStats(pid int) (progStats, error) {
	ids, err := progIDsOf(pid)
	if err != nil {
		return nil, fmt.Errorf("BPF programs of pid %d: %w", pid, err)
	}
	out := progStats{}
	for _, id := range ids {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded meanwhile
		}
		info, err := p.Info()
		var st *ebpf.ProgramStats
		if err == nil {
			st, err = p.Stats()
		}
		p.Close()
		if err != nil {
			return nil, fmt.Errorf("BPF program %d info: %w", id, err)
		}
		s := out[info.Name]
		s.Runs += st.RunCount
		s.Ns += uint64(st.Runtime.Nanoseconds())
		out[info.Name] = s
	}
	return out, nil
}

// perOp returns the work done between a and b per operation, for the
// programs that ran.
func perOp(a, b progStats, ops float64) map[string]bpfPerOp {
	out := map[string]bpfPerOp{}
	for name, s1 := range b {
		s0 := a[name]
		if s1.Runs <= s0.Runs {
			continue
		}
		out[name] = bpfPerOp{Runs: float64(s1.Runs-s0.Runs) / ops, Ns: float64(s1.Ns-s0.Ns) / ops}
	}
	return out
}

// bpfTotal sums the per-operation work of all programs.
func bpfTotal(m map[string]bpfPerOp) bpfPerOp {
	var t bpfPerOp
	for _, v := range m {
		t.Runs += v.Runs
		t.Ns += v.Ns
	}
	return t
}

// medianBPF returns each program's median work per operation over rounds
// (a program absent from a round counts 0 there).
func medianBPF(rounds []map[string]bpfPerOp) map[string]bpfPerOp {
	names := map[string]bool{}
	for _, r := range rounds {
		for n := range r {
			names[n] = true
		}
	}
	out := map[string]bpfPerOp{}
	for n := range names {
		var runs, ns []float64
		for _, r := range rounds {
			runs = append(runs, r[n].Runs)
			ns = append(ns, r[n].Ns)
		}
		out[n] = bpfPerOp{Runs: median(runs), Ns: median(ns)}
	}
	return out
}

// formatBPF lists programs by work, each with runs and ns per operation and
// ns per run.
func formatBPF(m map[string]bpfPerOp, unit string) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return m[names[i]].Ns > m[names[j]].Ns })
	var parts []string
	for _, n := range names {
		v := m[n]
		if v.Runs < 0.0005 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.3f runs %.0f ns/%s (%.0f ns/run)", n, v.Runs, v.Ns, unit, v.Ns/v.Runs))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}
