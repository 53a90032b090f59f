package discover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// EventKind says what happened to a process.
type EventKind int

const (
	// Started: a process appeared, or replaced its image by exec.
	Started EventKind = iota
	// Exited: a process is gone, or its image was replaced by exec.
	Exited
)

// Event is one change.
type Event struct {
	Kind    EventKind
	Process Process
}

// execBatch is the least time between two scans made on exec
// notifications.
const execBatch = 20 * time.Millisecond

// Watcher reports processes starting and exiting.
type Watcher struct {
	interval time.Duration
	self     int
	known    map[int]Process
	execs    *ringbuf.Reader
	objs     *ExecObjects
	tp       link.Link
	// TracepointErr is set when exec notifications are unavailable and
	// discovery relies on scanning alone.
	TracepointErr error
}

// ExecObjects are the BPF objects of the exec tracepoint.
type ExecObjects = execObjects

// NewScanner returns a Watcher without exec notifications, for one-off
// scans.
func NewScanner() *Watcher {
	return &Watcher{self: os.Getpid(), known: map[int]Process{}}
}

// NewWatcher returns a Watcher that scans /proc every interval and, where
// the kernel allows, is told of every exec at once. Its own process is never
// reported.
func NewWatcher(interval time.Duration) *Watcher {
	w := &Watcher{interval: interval, self: os.Getpid(), known: map[int]Process{}}
	if err := w.openTracepoint(); err != nil {
		w.TracepointErr = err
	}
	return w
}

func (w *Watcher) openTracepoint() error {
	var objs execObjects
	if err := loadExecObjects(&objs, nil); err != nil {
		return fmt.Errorf("load exec tracepoint: %w", err)
	}
	tp, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sched_process_exec", Program: objs.OnExec})
	if err != nil {
		objs.Close()
		return fmt.Errorf("attach sched_process_exec: %w", err)
	}
	rd, err := ringbuf.NewReader(objs.Execs)
	if err != nil {
		tp.Close()
		objs.Close()
		return fmt.Errorf("read exec events: %w", err)
	}
	w.objs, w.tp, w.execs = &objs, tp, rd
	return nil
}

// Close releases the tracepoint.
func (w *Watcher) Close() {
	if w.execs != nil {
		w.execs.Close()
	}
	if w.tp != nil {
		w.tp.Close()
	}
	if w.objs != nil {
		w.objs.Close()
	}
}

// Run reports changes on out until ctx ends. The first scan reports every
// running process as Started.
func (w *Watcher) Run(ctx context.Context, out chan<- []Event) {
	execPIDs := make(chan int, 1024)
	if w.execs != nil {
		go func() {
			<-ctx.Done()
			w.execs.Close()
		}()
		go w.readExecs(execPIDs)
	}
	t := time.NewTicker(w.interval)
	defer t.Stop()
	var lastExecScan time.Time
	w.send(ctx, out, w.Scan(nil))
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.send(ctx, out, w.Scan(nil))
		case pid := <-execPIDs:
			// The first exec after a quiet spell is looked at at once (a
			// program's attach waits on it); within a burst, the execs are
			// gathered until execBatch has passed since the last look, so
			// that a storm of them costs one scan per execBatch.
			pids := map[int]bool{pid: true}
			if wait := execBatch - time.Since(lastExecScan); wait > 0 {
				deadline := time.After(wait)
			gather:
				for {
					select {
					case p := <-execPIDs:
						pids[p] = true
					case <-deadline:
						break gather
					}
				}
			}
		queued:
			for {
				select {
				case p := <-execPIDs:
					pids[p] = true
				default:
					break queued
				}
			}
			lastExecScan = time.Now()
			w.send(ctx, out, w.Scan(pids))
		}
	}
}

func (w *Watcher) send(ctx context.Context, out chan<- []Event, evs []Event) {
	if len(evs) == 0 {
		return
	}
	select {
	case out <- evs:
	case <-ctx.Done():
	}
}

func (w *Watcher) readExecs(pids chan<- int) {
	for {
		rec, err := w.execs.Read()
		if err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		if len(rec.RawSample) < 4 {
			continue
		}
		b := rec.RawSample
		pid := int(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
		select {
		case pids <- pid:
		default: // the next scan finds it
		}
	}
}

// Scan compares /proc with what it saw last. execed holds PIDs known to have
// run exec since: a known one among them is reported as exited and started
// again with its new image.
func (w *Watcher) Scan(execed map[int]bool) []Event {
	pids, err := listPIDs()
	if err != nil {
		return nil
	}
	var evs []Event
	seen := make(map[int]bool, len(pids))
	for _, pid := range pids {
		seen[pid] = true
		if pid == w.self {
			continue
		}
		old, known := w.known[pid]
		if known && !execed[pid] {
			continue
		}
		p, err := readProcess(pid)
		if err != nil {
			if known && old.Exe != "" {
				evs = append(evs, Event{Kind: Exited, Process: old})
			}
			delete(w.known, pid)
			if p.StartTicks != 0 {
				// Alive but without an executable (a kernel thread): remember
				// it so that it is not read again on every scan.
				w.known[pid] = Process{PID: pid, StartTicks: p.StartTicks}
			}
			continue
		}
		if known {
			if old.StartTicks == p.StartTicks && old.File == p.File {
				continue // an exec of a program we already hold, or a stray notice
			}
			if old.Exe != "" {
				evs = append(evs, Event{Kind: Exited, Process: old})
			}
		}
		w.known[pid] = p
		evs = append(evs, Event{Kind: Started, Process: p})
	}
	for pid, p := range w.known {
		if !seen[pid] {
			if p.Exe != "" {
				evs = append(evs, Event{Kind: Exited, Process: p})
			}
			delete(w.known, pid)
		}
	}
	return evs
}
