package probes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/rlimit"
)

// ringWriter is a BPF program that writes one record of words 8-byte
// words per run into a ring: its run number (a counter in an array map),
// then the fixed words ringWord(1), ringWord(2)...
func ringWriter(t testing.TB, ring *ebpf.Map, words int) (*ebpf.Program, *ebpf.Map) {
	t.Helper()
	counter, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { counter.Close() })
	rec := int16(-8 * (words + 1)) // the record, on the stack below the key
	insns := asm.Instructions{
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
		asm.StoreMem(asm.RFP, rec, asm.R6, asm.DWord),
	}
	for i := 1; i < words; i++ {
		insns = append(insns,
			asm.LoadImm(asm.R7, int64(ringWord(i)), asm.DWord),
			asm.StoreMem(asm.RFP, rec+int16(8*i), asm.R7, asm.DWord))
	}
	insns = append(insns,
		asm.LoadMapPtr(asm.R1, ring.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(rec)),
		asm.Mov.Imm(asm.R3, int32(8*words)),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRingbufOutput.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SocketFilter,
		License:      "GPL",
		Instructions: insns,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog, counter
}

// ringWord is ringWriter's fixed word i: 0x1111111111111111 * i.
func ringWord(i int) uint64 { return 0x1111111111111111 * uint64(i) }

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
// Records of 32 bytes tile the page; records of 48 bytes wrap around its
// end, and are handed over whole all the same.
func TestRingReaderReadsEveryRecordInPlace(t *testing.T) {
	for _, words := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d bytes", 8*(words+1)), func(t *testing.T) { testRingReader(t, words) })
	}
}

func testRingReader(t *testing.T, words int) {
	ring := newTestRing(t)
	prog, _ := ringWriter(t, ring, words)
	rd, err := newRingReader(ring)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.close()
	var next uint64 = 1
	check := func(raw []byte) {
		if len(raw) != 8*words {
			t.Fatalf("record of %d bytes, want %d", len(raw), 8*words)
		}
		ok := binary.LittleEndian.Uint64(raw) == next
		for i := 1; i < words; i++ {
			ok = ok && binary.LittleEndian.Uint64(raw[8*i:]) == ringWord(i)
		}
		if !ok {
			t.Fatalf("record %x, want run %d", raw, next)
		}
		next++
	}
	in := []byte{14: 0}
	// Write 100 records at a time (a page holds 128 of 32 bytes, 85 of
	// 48), so that reads wrap around the ring's end often.
	for round := 0; round < 40; round++ {
		if _, err := prog.Run(&ebpf.RunOptions{Data: in, Repeat: 60}); err != nil {
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
		if got != 60 {
			t.Fatalf("round %d: %d records read, want 60", round, got)
		}
	}
	if _, err := prog.Run(&ebpf.RunOptions{Data: in, Repeat: 80}); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(50, func() { rd.read(1, check) }); allocs != 0 {
		t.Errorf("%v allocations per record read, want 0", allocs)
	}
	rd.read(64, check)
	// A full ring loses what does not fit, and reading resumes after.
	if _, err := prog.Run(&ebpf.RunOptions{Data: in, Repeat: 300}); err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		n, more := rd.read(64, check)
		got += n
		if !more {
			break
		}
	}
	// The kernel reserves only while the unread bytes stay below the
	// ring's size: a page of records, but for the part of one.
	if want := (os.Getpagesize() - 1) / (8 * (words + 1)); got != want {
		t.Errorf("%d records read from a full one-page ring, want %d", got, want)
	}
}

// wait returns at its timeout, when a producer wakes the reader, and, for
// good, after interrupt.
func TestRingReaderWaitAndInterrupt(t *testing.T) {
	ring := newTestRing(t)
	prog, _ := ringWriter(t, ring, 3)
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
	prog, _ := ringWriter(b, ring, 3)
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
