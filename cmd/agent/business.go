package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/discover"
	"github.com/blindspot-dev/blindspot/probes/userfunc"
	"github.com/blindspot-dev/blindspot/symbols"
)

// business keeps the configured business functions (the functions:
// section) in force: it checks each entry, registers its metric and hands
// the set to the probe manager; it reloads the section on SIGHUP and when
// the file changes. A bad entry is reported (log and
// blindspot_probe_errors_total{probe="userfunc",reason="invalid_config"})
// and skipped; the others and the agent go on.
type business struct {
	file string
	log  *slog.Logger
	agg  *aggregator.Aggregator
	pm   *probes.Manager
	// onChange runs after a reload changed the set (to refresh /targets).
	onChange func()
	// countError counts a probe error (agent.countError).
	countError func(probe, reason string)

	mu      sync.Mutex
	cur     map[string]*probes.UserFunc // by Entry.Key()
	builtin map[string]bool
	// Errors are the configuration problems of the last load, one per bad
	// entry ("functions[2] (payment_retry_count): ...").
	errors []string
	stamp  fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func stampOf(file string) fileStamp {
	fi, err := os.Stat(file)
	if err != nil {
		return fileStamp{}
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = s.Ino
	}
	return st
}

func newBusiness(file string, log *slog.Logger, agg *aggregator.Aggregator, pm *probes.Manager) *business {
	b := &business{file: file, log: log, agg: agg, pm: pm, cur: map[string]*probes.UserFunc{}, builtin: map[string]bool{}}
	for _, m := range agg.Metrics() {
		b.builtin[m.Name] = true
	}
	return b
}

// apply checks entries and puts the valid ones in force. Unchanged entries
// keep their metric (and so their series); removed ones lose theirs.
func (b *business) apply(entries []userfunc.Entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	next := map[string]*probes.UserFunc{}
	var list []*probes.UserFunc
	var errs []string
	names := map[string]int{}
	for i := range entries {
		e := &entries[i]
		where := fmt.Sprintf("config %s: functions[%d]", b.file, i)
		if e.Metric != "" {
			where += " (" + e.Metric + ")"
		}
		if err := e.Validate(b.builtin); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		if j, dup := names[e.Metric]; dup {
			errs = append(errs, fmt.Sprintf("%s: metric %q is already defined by functions[%d] (give each entry its own metric)", where, e.Metric, j))
			continue
		}
		names[e.Metric] = i
		k := e.Key()
		f := b.cur[k]
		if f == nil {
			f = probes.NewUserFunc(e)
		}
		next[k] = f
		list = append(list, f)
	}
	for k, f := range next {
		if _, ok := b.cur[k]; !ok {
			b.agg.AddMetric(f.Metric)
		}
	}
	b.pm.SetUserFuncs(list)
	for k, f := range b.cur {
		if _, ok := next[k]; !ok {
			b.agg.RemoveMetric(f.Metric)
		}
	}
	b.cur = next
	b.errors = errs
	for _, e := range errs {
		b.log.Error("business function skipped", "err", e)
		if b.countError != nil {
			b.countError("userfunc", "invalid_config")
		}
	}
	if len(list) > 0 || len(errs) > 0 {
		b.log.Info("business functions", "active", len(list), "invalid", len(errs))
	}
}

// reload rereads the file and applies its functions: section. A file that
// no longer parses keeps the previous set in force.
func (b *business) reload(why string) {
	b.mu.Lock()
	b.stamp = stampOf(b.file)
	b.mu.Unlock()
	cfg, err := LoadConfig(b.file)
	if err != nil {
		b.log.Error("configuration not reloaded; the previous business functions stay in force", "why", why, "err", err)
		if b.countError != nil {
			b.countError("userfunc", "invalid_config")
		}
		return
	}
	b.log.Info("reloading business functions", "why", why, "file", b.file)
	b.apply(cfg.Functions)
	if b.onChange != nil {
		b.onChange()
	}
}

// watch reloads on SIGHUP and when the file's modification time, size or
// inode changes (checked every interval), until ctx ends.
func (b *business) watch(ctx context.Context, interval time.Duration) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if b.file == "" {
		<-ctx.Done()
		return
	}
	b.mu.Lock()
	b.stamp = stampOf(b.file)
	b.mu.Unlock()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			b.reload("SIGHUP")
		case <-t.C:
			st := stampOf(b.file)
			b.mu.Lock()
			changed := st != b.stamp && st != (fileStamp{})
			b.mu.Unlock()
			if changed {
				b.reload("file changed")
			}
		}
	}
}

// Errors returns the configuration problems of the last load.
func (b *business) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// attachUser attaches the business functions that select a newly
// instrumented process and counts and logs their errors.
func (a *agent) attachUser(p discover.Process, svc string, bin *symbols.Binary, id aggregator.TargetID) []probes.ProbeStatus {
	st := a.probes.AttachUser(p.PID, p.ExePath, p.Exe, svc, bin, id)
	a.userErrors(p.PID, p.Exe, st, nil)
	return st
}

// userErrors logs and counts the business probe errors in st that were not
// already in old.
func (a *agent) userErrors(pid int, exe string, st, old []probes.ProbeStatus) {
	seen := map[string]bool{}
	for _, s := range old {
		seen[s.Family+"\x00"+s.Error] = true
	}
	for _, s := range st {
		if s.Error == "" || seen[s.Family+"\x00"+s.Error] {
			continue
		}
		a.countError("userfunc", "attach_failed")
		a.log.Warn("business function not attached", "pid", pid, "exe", exe, "probe", s.Family, "err", s.Error)
	}
}

// refreshUserStatuses rebuilds every target's business probe statuses
// after a reload.
func (a *agent) refreshUserStatuses() {
	a.mu.Lock()
	ts := make([]*target, 0, len(a.targets))
	for _, t := range a.targets {
		ts = append(ts, t)
	}
	a.mu.Unlock()
	for _, t := range ts {
		st := a.probes.UserStatus(t.proc.PID)
		a.mu.Lock()
		var old []probes.ProbeStatus
		for _, s := range t.statuses {
			if strings.HasPrefix(s.Family, "userfunc:") {
				old = append(old, s)
			}
		}
		t.statuses = append(append([]probes.ProbeStatus{}, t.att.Probes...), st...)
		a.mu.Unlock()
		a.userErrors(t.proc.PID, t.proc.Exe, st, old)
	}
}
