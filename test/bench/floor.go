//go:build linux

package main

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/blindspot-dev/blindspot/symbols"
)

// floorSites are the functions blindspot's http_server family probes in an
// HTTP/1 server, each at symbols' Entry site, as the agent does.
var floorSites = []string{
	"net/http.serverHandler.ServeHTTP",
	"net/http.(*response).finishRequest",
	"net/http.(*conn).serve.func1",
}

// floor holds the empty probe programs: loaded once, attached for each
// floor round.
type floor struct {
	objs    benchEmptyObjects
	progs   []*ebpf.Program
	offsets []uint64 // file offsets, per site
	where   []string // "function+0xN", per site
	ex      *link.Executable
	links   []link.Link
}

func newFloor(targetPath string) (*floor, error) {
	f := &floor{}
	bin, err := symbols.Open(targetPath)
	if err != nil {
		return nil, fmt.Errorf("read target: %w", err)
	}
	defer bin.Close()
	for _, name := range floorSites {
		fn, err := bin.LookupFunc(name)
		if err != nil {
			return nil, err
		}
		sites, err := bin.Sites(fn)
		if err != nil {
			return nil, err
		}
		off, err := bin.FileOffset(sites.Entry)
		if err != nil {
			return nil, err
		}
		f.offsets = append(f.offsets, off)
		f.where = append(f.where, fmt.Sprintf("%s+%#x", name, sites.Entry-fn.Entry))
	}
	if f.ex, err = link.OpenExecutable(targetPath); err != nil {
		return nil, err
	}
	if err := loadBenchEmptyObjects(&f.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load empty probes: %+v", ve)
		}
		return nil, fmt.Errorf("load empty probes: %w", err)
	}
	f.progs = []*ebpf.Program{f.objs.UprobeBenchSite0, f.objs.UprobeBenchSite1, f.objs.UprobeBenchSite2}
	return f, nil
}

// attach places the empty programs in process pid only.
func (f *floor) attach(pid int) error {
	for i, off := range f.offsets {
		l, err := f.ex.Uprobe("", f.progs[i], &link.UprobeOptions{Address: off, PID: pid})
		if err != nil {
			f.detach()
			return fmt.Errorf("attach empty probe at %s: %w", f.where[i], err)
		}
		f.links = append(f.links, l)
	}
	return nil
}

func (f *floor) detach() {
	for _, l := range f.links {
		l.Close()
	}
	f.links = nil
}

// hits returns the hits so far of every site, summed over CPUs.
func (f *floor) hits() ([]uint64, error) {
	out := make([]uint64, len(floorSites))
	for i := range out {
		var per []uint64
		if err := f.objs.BenchHits.Lookup(uint32(i), &per); err != nil {
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
	f.objs.Close()
}
