package goruntime

import (
	"errors"
	"log/slog"
	"runtime"
	"testing"
	"time"
	"unsafe"
)

// A program whose allglen claims more goroutines than the agent's budget,
// or than its memory can hold (a hostile program writing its own runtime's
// globals), is refused before its g array is read: the refusal is counted
// by reason, the goroutine series are withdrawn rather than left at the
// last count, nothing near allglen × 8 bytes is allocated, and the next
// sample of a truthful allglen counts exactly again. A real program with
// more goroutines than the memory check's threshold is counted.
func TestAllglenBound(t *testing.T) {
	f := newFixture(t)
	p := f.proc
	p.opts.Logger = slog.New(slog.DiscardHandler)
	stop := spawn(checkAllglen + 2000) // past the threshold of the memory check
	defer stop()
	count := func() float64 {
		p.sample(f.sh, time.Now())
		if p.gErr != nil {
			t.Fatalf("sample of this process: %v", p.gErr)
		}
		got, want := f.values("go_goroutine_count")[""], runtime.NumGoroutine()
		if d := got - float64(want); d < -2 || d > 2 {
			t.Fatalf("go_goroutine_count %v, NumGoroutine %d", got, want)
		}
		return got
	}
	if n := count(); n < checkAllglen {
		t.Fatalf("counted %v goroutines, want more than %d", n, checkAllglen)
	}

	mem, err := residentAndSwap(p.pid)
	if err != nil {
		t.Fatal(err)
	}
	gsize := p.gWinLo + p.gWinLen
	if maxAllglen*gsize <= mem {
		t.Fatalf("this process's %d bytes could hold %d gs of %d bytes: no implausible allglen below the budget to test", mem, maxAllglen, gsize)
	}
	real := map[string]uint64{"runtime.allglen": p.globals["runtime.allglen"], "runtime.allgptr": p.globals["runtime.allgptr"]}
	arr := make([]uint64, 4) // a g array far shorter than the lies below
	for _, c := range []struct {
		n      uint64
		reason string
	}{
		{maxAllglen + 1, refusedBudget},
		{1 << 40, refusedBudget},
		{maxAllglen, refusedImplausible}, // within the budget, beyond the memory
	} {
		hdr := []uint64{c.n, uint64(uintptr(unsafe.Pointer(&arr[0])))}
		p.globals["runtime.allglen"] = uint64(uintptr(unsafe.Pointer(&hdr[0]))) - p.bias
		p.globals["runtime.allgptr"] = uint64(uintptr(unsafe.Pointer(&hdr[1]))) - p.bias
		before := p.refusedBy[c.reason]
		p.sample(f.sh, time.Now())
		runtime.KeepAlive(hdr)
		if !errors.Is(p.gErr, errRefused) {
			t.Fatalf("allglen %d: error %v, want a refusal", c.n, p.gErr)
		}
		if p.refusedBy[c.reason] != before+1 {
			t.Errorf("allglen %d: refusals %v, want one more for %s", c.n, p.refusedBy, c.reason)
		}
		if got := f.values("blindspot_go_goroutine_samples_refused_total")[c.reason]; got != float64(before+1) {
			t.Errorf("allglen %d: blindspot_go_goroutine_samples_refused_total{reason=%q} = %v, want %d", c.n, c.reason, got, before+1)
		}
		for _, m := range []string{"go_goroutine_count", "blindspot_go_goroutine_live", "blindspot_go_goroutine_oldest_age_seconds"} {
			if v := f.values(m); len(v) != 0 {
				t.Errorf("allglen %d: %s still exported after a refused sample: %v", c.n, m, v)
			}
		}
		if cap(p.ptrBuf) > 8*maxAllglen {
			t.Errorf("allglen %d: %d bytes of g pointers allocated, bound %d", c.n, cap(p.ptrBuf), 8*maxAllglen)
		}
		t.Logf("allglen %d refused: %v", c.n, p.gErr)
	}
	if p.stats.GoroutinesRefused != 3 {
		t.Errorf("Stats.GoroutinesRefused = %d, want 3", p.stats.GoroutinesRefused)
	}

	// The truth again: the next sample counts exactly.
	p.globals["runtime.allglen"], p.globals["runtime.allgptr"] = real["runtime.allglen"], real["runtime.allgptr"]
	count()
}
