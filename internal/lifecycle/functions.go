package lifecycle

import (
	"context"
	"fmt"
	"os"
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

// Functions keeps the configured business functions (the functions:
// section) in force: it checks each entry, registers its metric and hands
// the set to the probe manager; it reloads the section on a signal and when
// the file changes. A bad entry is reported (log and
// blindspot_probe_errors_total{probe="userfunc",reason="invalid_config"})
// and skipped; the others and the agent go on.
type Functions struct {
	file string
	// load rereads the file's functions: section.
	load func() ([]userfunc.Entry, error)
	a    *Agent

	mu      sync.Mutex
	cur     map[string]*userfunc.Func // by Entry.Key()
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

// NewFunctions returns the business functions of a's processes, read
// from file (empty: none) by load, which returns its functions: section.
// Nothing is in force until Apply.
func NewFunctions(a *Agent, file string, load func() ([]userfunc.Entry, error)) *Functions {
	b := &Functions{file: file, load: load, a: a, cur: map[string]*userfunc.Func{}, builtin: map[string]bool{}}
	for _, m := range a.agg.Metrics() {
		b.builtin[m.Name] = true
	}
	return b
}

// Apply checks entries and puts the valid ones in force. Unchanged entries
// keep their metric (and so their series); removed ones lose theirs.
func (b *Functions) Apply(entries []userfunc.Entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	next := map[string]*userfunc.Func{}
	var list []*userfunc.Func
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
			f = userfunc.NewFunc(e)
		}
		next[k] = f
		list = append(list, f)
	}
	for k, f := range next {
		if _, ok := b.cur[k]; !ok {
			b.a.agg.AddMetric(f.Metric)
		}
	}
	b.a.probes.SetUserFuncs(list)
	for k, f := range b.cur {
		if _, ok := next[k]; !ok {
			b.a.agg.RemoveMetric(f.Metric)
		}
	}
	b.cur = next
	b.errors = errs
	for _, e := range errs {
		b.a.log.Error("business function skipped", "err", e)
		b.a.countError("userfunc", "invalid_config")
	}
	if len(list) > 0 || len(errs) > 0 {
		b.a.log.Info("business functions", "active", len(list), "invalid", len(errs))
	}
}

// reload rereads the file and applies its functions: section. A file that
// no longer parses keeps the previous set in force.
func (b *Functions) reload(why string) {
	b.mu.Lock()
	b.stamp = stampOf(b.file)
	b.mu.Unlock()
	entries, err := b.load()
	if err != nil {
		b.a.log.Error("configuration not reloaded; the previous business functions stay in force", "why", why, "err", err)
		b.a.countError("userfunc", "invalid_config")
		return
	}
	b.a.log.Info("reloading business functions", "why", why, "file", b.file)
	b.Apply(entries)
	b.a.refreshUserStatuses()
}

// Watch reloads when hup receives (SIGHUP) and when the file's
// modification time, size or inode changes (checked every interval), until
// ctx ends. Without a file it only waits for ctx.
func (b *Functions) Watch(ctx context.Context, interval time.Duration, hup <-chan os.Signal) {
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
func (b *Functions) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// attachUser attaches the business functions that select a newly
// instrumented process and counts and logs their errors.
func (a *Agent) attachUser(p discover.Process, svc string, bin *symbols.Binary, id aggregator.TargetID) []probes.ProbeStatus {
	st := a.probes.AttachUser(p.PID, p.ExePath, p.Exe, svc, bin, id)
	a.userErrors(p.PID, p.Exe, st, nil)
	return st
}

// userErrors logs and counts the business probe errors in st that were not
// already in old.
func (a *Agent) userErrors(pid int, exe string, st, old []probes.ProbeStatus) {
	seen := map[string]bool{}
	for _, s := range old {
		seen[s.Family+"\x00"+s.Error+"\x00"+strings.Join(s.Left, "\x00")] = true
	}
	for _, s := range st {
		if seen[s.Family+"\x00"+s.Error+"\x00"+strings.Join(s.Left, "\x00")] {
			continue
		}
		if s.Error == "" && len(s.Left) > 0 {
			// A main.* function of an entry without service, not in
			// this program: perhaps misspelt.
			a.countError("userfunc", "function_not_found")
			a.log.Info("business function not in program", "pid", pid, "exe", exe, "probe", s.Family, "reason", s.Left[0])
			continue
		}
		if s.Error == "" {
			continue
		}
		a.countError("userfunc", "attach_failed")
		a.log.Warn("business function not attached", "pid", pid, "exe", exe, "probe", s.Family, "err", s.Error)
	}
}

// refreshUserStatuses rebuilds every target's business probe statuses
// after a reload.
func (a *Agent) refreshUserStatuses() {
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
