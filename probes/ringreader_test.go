package probes

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/rlimit"
)

// ringWriter is a BPF program that writes one 24-byte record per run into
// a ring: its run number (a counter in an array map) and two fixed words.
func ringWriter(t testing.TB, ring *ebpf.Map) (*ebpf.Program, *ebpf.Map) {
	t.Helper()
	counter, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { counter.Close() })
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			// key = 0; v = lookup(counter, &key); n = (*v)++
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, counter.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R6, asm.R0, 0, asm.DWord),
			asm.Add.Imm(asm.R6, 1),
			asm.StoreMem(asm.R0, 0, asm.R6, asm.DWord),
			// record = {n, 0x1111111111111111, 0x2222222222222222}
			asm.StoreMem(asm.RFP, -32, asm.R6, asm.DWord),
			asm.LoadImm(asm.R7, 0x1111111111111111, asm.DWord),
			asm.StoreMem(asm.RFP, -24, asm.R7, asm.DWord),
			asm.LoadImm(asm.R7, 0x2222222222222222, asm.DWord),
			asm.StoreMem(asm.RFP, -16, asm.R7, asm.DWord),
			asm.LoadMapPtr(asm.R1, ring.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -32),
			asm.Mov.Imm(asm.R3, 24),
			asm.Mov.Imm(asm.R4, 0),
			asm.FnRingbufOutput.Call(),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog, counter
}

func newTestRing(t *testing.T) *ebpf.Map { return newTestRingOf(t, os.Getpagesize()) }

func newTestRingOf(t testing.TB, size int) *ebpf.Map {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root in CI")
		}
		t.Skip("needs root (BPF ring buffers)")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: uint32(size)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ring.Close() })
	return ring
}

// The reader hands over every record, in order and intact, through many
// wraps of a one-page ring, at most max per read; reading allocates nothing.
func TestRingReaderReadsEveryRecordInPlace(t *testing.T) {
	ring := newTestRing(t)
	prog, _ := ringWriter(t, ring)
	rd, err := newRingReader(ring)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.close()
	var next uint64 = 1
	check := func(raw []byte) {
		if len(raw) != 24 {
			t.Fatalf("record of %d bytes, want 24", len(raw))
		}
		n := binary.LittleEndian.Uint64(raw)
		if n != next || binary.LittleEndian.Uint64(raw[8:]) != 0x1111111111111111 || binary.LittleEndian.Uint64(raw[16:]) != 0x2222222222222222 {
			t.Fatalf("record %x, want run %d", raw, next)
		}
		next++
	}
	in := []byte{14: 0}
	// A page holds 128 records of 32 bytes: write 100 at a time, so that
	// reads wrap around the ring's end at every other round.
	for round := 0; round < 40; round++ {
		if _, err := prog.Run(&ebpf.RunOptions{Data: in, Repeat: 100}); err != nil {
			t.Fatal(err)
		}
		got := 0
		for {
			n, more := rd.read(30, check)
			if n > 30 {
				t.Fatalf("read %d records, at most 30 asked", n)
			}
			got += n
			if !more {
				break
			}
		}
		if got != 100 {
			t.Fatalf("round %d: %d records read, want 100", round, got)
		}
	}
	if _, err := prog.Run(&ebpf.RunOptions{Data: in, Repeat: 100}); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(50, func() { rd.read(1, check) }); allocs != 0 {
		t.Errorf("%v allocations per record read, want 0", allocs)
	}
	// A full ring loses what does not fit, and reading resumes after.
	if _, err := prog.Run(&ebpf.RunOptions{Data: in, Repeat: 300}); err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		n, more := rd.read(64, func([]byte) {})
		got += n
		if !more {
			break
		}
	}
	// A page of 32-byte records, but for one: the kernel reserves only
	// while the unread bytes stay below the ring's size.
	if got != 127 {
		t.Errorf("%d records read from a full one-page ring, want 127", got)
	}
}

// wait returns at its timeout, when a producer wakes the reader, and, for
// good, after interrupt.
func TestRingReaderWaitAndInterrupt(t *testing.T) {
	ring := newTestRing(t)
	prog, _ := ringWriter(t, ring)
	rd, err := newRingReader(ring)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.close()
	if err := rd.wait(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// A record written (with a wake-up: flags 0) makes the ring readable.
	if _, err := prog.Run(&ebpf.RunOptions{Data: []byte{14: 0}, Repeat: 1}); err != nil {
		t.Fatal(err)
	}
	if err := rd.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n, _ := rd.read(64, func([]byte) {}); n != 1 {
		t.Fatalf("read %d records, want 1", n)
	}
	done := make(chan error, 1)
	go func() { done <- rd.wait(time.Minute) }()
	time.Sleep(10 * time.Millisecond)
	rd.interrupt()
	select {
	case err := <-done:
		if !errors.Is(err, errReaderClosed) {
			t.Errorf("wait after interrupt: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("interrupt did not end a wait")
	}
	if err := rd.wait(time.Minute); !errors.Is(err, errReaderClosed) {
		t.Errorf("second wait after interrupt: %v", err)
	}
}

// BenchmarkRingRead is the reader's own share of an event: taking a
// record from the ring in place (the records written by the kernel
// between rounds, off the clock).
func BenchmarkRingRead(b *testing.B) {
	ring := newTestRingOf(b, 1<<20)
	prog, _ := ringWriter(b, ring)
	rd, err := newRingReader(ring)
	if err != nil {
		b.Fatal(err)
	}
	defer rd.close()
	in := []byte{14: 0}
	var sum uint64
	fn := func(raw []byte) { sum += uint64(raw[0]) }
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		n := min(b.N-done, 16384)
		if _, err := prog.Run(&ebpf.RunOptions{Data: in, Repeat: uint32(n)}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for {
			got, more := rd.read(holdBatch, fn)
			done += got
			if !more {
				break
			}
		}
	}
}
