//go:build linux

package main

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/symbols"
)

// The floor's sites are the agent's own probe lists
// (each family's Probes), placed by the agent's own code (probes.ProbeAddrs):
// one empty program, and one hit counter, per probe row.

// emptyProgs is the collection of empty counting programs, loaded once and
// shared by the floors of all variants (one is attached at a time).
type emptyProgs struct {
	coll  *ebpf.Collection
	progs []*ebpf.Program
	hits  *ebpf.Map
}

func loadEmptyProgs() (*emptyProgs, error) {
	spec, err := loadBenchEmpty()
	if err != nil {
		return nil, err
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load empty probes: %+v", ve)
		}
		return nil, fmt.Errorf("load empty probes: %w", err)
	}
	e := &emptyProgs{coll: coll, hits: coll.Maps["bench_hits"]}
	for i := 0; ; i++ {
		p := coll.Programs[fmt.Sprintf("uprobe_bench_site%d", i)]
		if p == nil {
			break
		}
		e.progs = append(e.progs, p)
	}
	if e.hits == nil || len(e.progs) == 0 {
		coll.Close()
		return nil, errors.New("empty probes: collection lacks bench_hits or programs")
	}
	return e, nil
}

func (e *emptyProgs) Close() { e.coll.Close() }

// floor holds the empty probes of one variant: attached for each floor
// round.
type floor struct {
	progs   *emptyProgs
	sites   []probes.Probe
	offsets [][]uint64 // file offsets, per row (empty: function absent)
	where   []string   // "function+0xN[,+0xM]", per row
	labels  []string   // short name per row, for the report
	traps   []string   // trap kind per row (emulated, single-stepped)
	ex      *link.Executable
	links   []link.Link
}

func newFloor(progs *emptyProgs, targetPath string, sites []probes.Probe) (*floor, error) {
	if len(sites) > len(progs.progs) {
		return nil, fmt.Errorf("%d probe sites, only %d empty programs (bpf/bench_empty.c)", len(sites), len(progs.progs))
	}
	f := &floor{progs: progs, sites: sites}
	bin, err := symbols.Open(targetPath)
	if err != nil {
		return nil, fmt.Errorf("read target: %w", err)
	}
	defer bin.Close()
	for _, s := range sites {
		addrs, base, err := siteAddrs(bin, s)
		if err != nil {
			return nil, err
		}
		fn, call := s.Function, s.Call
		var offs []uint64
		var rel string
		for i, a := range addrs {
			off, err := bin.FileOffset(a)
			if err != nil {
				return nil, err
			}
			offs = append(offs, off)
			if i > 0 {
				rel += ","
			}
			rel += fmt.Sprintf("+%#x", a-base)
		}
		f.offsets = append(f.offsets, offs)
		f.traps = append(f.traps, rowTrapKind(targetPath, offs))
		name := fn[lastDot(fn)+1:]
		switch {
		case s.Returns:
			name += " RET"
		case call != "" && s.AfterCall:
			name += " after " + call[lastDot(call)+1:]
		case call != "":
			name += " call " + call[lastDot(call)+1:]
		}
		f.labels = append(f.labels, name)
		if len(addrs) == 0 {
			f.where = append(f.where, fn+" (absent)")
		} else {
			f.where = append(f.where, fn+rel)
		}
	}
	if f.ex, err = link.OpenExecutable(targetPath); err != nil {
		return nil, err
	}
	return f, nil
}

func lastDot(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' || s[i] == ')' {
			return i
		}
	}
	return -1
}

// siteAddrs returns where the agent attaches p, and the function's entry;
// nothing for an absent optional function.
func siteAddrs(bin *symbols.Binary, p probes.Probe) ([]uint64, uint64, error) {
	addrs, err := probes.ProbeAddrs(bin, p)
	if err != nil {
		if p.Optional && errors.Is(err, symbols.ErrFuncNotFound) {
			return nil, 0, nil
		}
		return nil, 0, err
	}
	fn, err := bin.LookupFunc(p.Function)
	if err != nil {
		return nil, 0, err
	}
	return addrs, fn.Entry, nil
}

// attach places the empty programs in process pid only, and zeroes
// nothing: hits are read as differences.
func (f *floor) attach(pid int) error {
	for i, offs := range f.offsets {
		for _, off := range offs {
			l, err := f.ex.Uprobe("", f.progs.progs[i], &link.UprobeOptions{Address: off, PID: pid})
			if err != nil {
				f.detach()
				return fmt.Errorf("attach empty probe at %s: %w", f.where[i], err)
			}
			f.links = append(f.links, l)
		}
	}
	return nil
}

func (f *floor) detach() {
	for _, l := range f.links {
		l.Close()
	}
	f.links = nil
}

// hitsByTrap sums per-row hits per operation by the rows' trap kinds.
func (f *floor) hitsByTrap(siteHits []float64) map[string]float64 {
	out := map[string]float64{}
	for i, h := range siteHits {
		if i < len(f.traps) && len(f.offsets[i]) > 0 {
			out[f.traps[i]] += h
		}
	}
	return out
}

// hits returns the hits so far of every row, summed over CPUs.
func (f *floor) hits() ([]uint64, error) {
	out := make([]uint64, len(f.sites))
	for i := range out {
		var per []uint64
		if err := f.progs.hits.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("read hit counter: %w", err)
		}
		for _, n := range per {
			out[i] += n
		}
	}
	return out, nil
}

func (f *floor) Close() {
	f.detach()
}
