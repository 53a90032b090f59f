package goruntime

import (
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// A program whose memory changes while the sampler reads it (a racing
// writer, or a hostile program writing its own runtime's globals) never
// makes the sampler panic nor grow without bound: the sampler reads this
// process's fake runtime — allglen and allgptr, the g array, the gs and
// the GC state — while a goroutine overwrites all of it with random values,
// plausible and not.
func TestSampleUnderRacingWriter(t *testing.T) {
	f := newFixture(t)
	p := f.proc
	p.opts.Logger = slog.New(slog.DiscardHandler)
	if err := p.resolveBias(); err != nil {
		t.Fatal(err)
	}
	if p.gErr != nil || p.gcErr != nil {
		t.Fatalf("setup: goroutines %v, gc %v", p.gErr, p.gcErr)
	}
	const nG = 512
	hdr := make([]uint64, 2)                          // allglen, allgptr
	arr := make([]uint64, nG)                         // the g pointers
	gs := make([]byte, nG*int(p.gWinLen+p.gWinLo+64)) // the gs
	gc := make([]byte, 64<<10)                        // memstats, gcController, gomaxprocs
	addr := func(b unsafe.Pointer) uint64 { return uint64(uintptr(b)) - p.bias }
	p.globals["runtime.allglen"] = addr(unsafe.Pointer(&hdr[0]))
	p.globals["runtime.allgptr"] = addr(unsafe.Pointer(&hdr[1]))
	p.globals["runtime.memstats"] = addr(unsafe.Pointer(&gc[0]))
	p.globals["runtime.gcController"] = addr(unsafe.Pointer(&gc[16<<10]))
	p.globals["runtime.gomaxprocs"] = addr(unsafe.Pointer(&gc[60<<10]))
	if p.msPause+2048 > 16<<10 || p.gcMapped+8 > 44<<10 {
		t.Fatalf("runtime.mstats/gcController offsets beyond the fake memory: %d %d", p.msPause, p.gcMapped)
	}
	gBase := uint64(uintptr(unsafe.Pointer(&gs[0])))
	arrBase := uint64(uintptr(unsafe.Pointer(&arr[0])))

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(1, 2))
		for !stop.Load() {
			switch r.IntN(4) {
			case 0: // plausible header
				atomic.StoreUint64(&hdr[0], uint64(r.IntN(nG+1)))
				atomic.StoreUint64(&hdr[1], arrBase)
			case 1: // anything
				atomic.StoreUint64(&hdr[0], r.Uint64()>>uint(r.IntN(64)))
				atomic.StoreUint64(&hdr[1], r.Uint64())
			}
			if r.IntN(2) == 0 { // plausible GC settings, any counts
				gc[p.msEnable] = 1
				binary.LittleEndian.PutUint32(gc[16<<10+p.gcPercent:], uint32(r.IntN(200)))
				binary.LittleEndian.PutUint32(gc[60<<10:], uint32(1+r.IntN(64)))
			}
			for i := 0; i < 64; i++ {
				j := r.IntN(nG)
				if r.IntN(2) == 0 {
					atomic.StoreUint64(&arr[j], gBase+uint64(r.IntN(len(gs)-int(p.gWinLen)))&^7-p.gWinLo)
				} else {
					atomic.StoreUint64(&arr[j], r.Uint64())
				}
				k := r.IntN(len(gs) - 8)
				binary.LittleEndian.PutUint64(gs[k:], r.Uint64())
				k = r.IntN(len(gc) - 8)
				binary.LittleEndian.PutUint64(gc[k:], r.Uint64())
			}
			runtime.Gosched()
		}
	}()
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()

	deadline := time.Now().Add(3 * time.Second)
	now := time.Now()
	samples, counted, gcRead := 0, 0, 0
	for ; samples < 5000 && time.Now().Before(deadline); samples++ {
		// Errors say the memory made no sense: the next sample tries again.
		p.gErr, p.gcErr, p.gValidated = nil, nil, samples%2 == 0
		now = now.Add(time.Second)
		p.sample(f.sh, now)
		if p.gErr == nil {
			counted++
		}
		if p.gcErr == nil {
			gcRead++
		}
	}
	// The writer leaves plausible values often enough for the whole
	// decoding path to run, not only its first checks.
	if counted == 0 {
		t.Error("no sample got as far as counting goroutines")
	}
	if len(p.fns) > maxFnsCache {
		t.Errorf("%d start functions cached, bound %d", len(p.fns), maxFnsCache)
	}
	if n := len(f.values("blindspot_go_goroutine_live")); n > p.opts.TopFunctions+1 {
		t.Errorf("%d blindspot_go_goroutine_live series, bound %d", n, p.opts.TopFunctions+1)
	}
	t.Logf("%d samples under a racing writer, %d counted goroutines, %d read the GC state: no panic; last errors: goroutines %v, gc %v", samples, counted, gcRead, p.gErr, p.gcErr)
}
