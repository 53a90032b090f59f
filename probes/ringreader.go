package probes

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ringReader reads one BPF ring buffer (BPF_MAP_TYPE_RINGBUF) in place:
// each record is handed over as a slice of the mapped ring, not copied,
// and the space is handed back to the producers once per batch rather
// than once per record (the position is a cache line the producers read
// on every reserve). cilium/ebpf's ringbuf.Reader does the same reading
// with a copy, a lock and a position update per record: on the reader's
// path that was a third of the agent's CPU per event.
//
// The layout is the kernel's (kernel/bpf/ringbuf.c): a page holding the
// consumer position, which the reader writes; then, read-only, a page
// holding the producer position and the data pages. The kernel offers the
// data pages twice in a row, so that a record that wraps around reads
// contiguously; the reader maps them once, because every mapped page counts
// in its resident memory (2 MiB a ring), and copies the rare record that
// wraps. Each record starts with an 8-byte header: its length, with a busy
// bit while a producer writes it and a discard bit for one it gave up, then
// the data padded to 8 bytes (so a header never wraps).
type ringReader struct {
	cons, data []byte // the mappings
	consPos    *uint64
	prodPos    *uint64
	ring       []byte // the data pages, once
	mask       uint64
	// wrapped holds a record that wraps around the end of the ring. One
	// read crosses the end at most once (it reads less than the ring's
	// size), so the records it hands over never share this buffer.
	wrapped    []byte
	epfd, evfd int // epoll on the ring (producers' wake-ups) and on an eventfd (close)
	events     [2]unix.EpollEvent
}

const (
	ringBusyBit    = 1 << 31
	ringDiscardBit = 1 << 30
	ringHeaderSize = 8
	// ringBusySpins bounds the reads of a busy record's header before
	// read gives up for now (a few microseconds).
	ringBusySpins = 4096
)

func newRingReader(m *ebpf.Map) (*ringReader, error) {
	size := uint64(m.MaxEntries())
	if m.Type() != ebpf.RingBuf || size == 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("not a ring buffer of a power of two bytes: %v, %d", m.Type(), size)
	}
	page := os.Getpagesize()
	// Room for the events of every family; a larger record grows it.
	r := &ringReader{mask: size - 1, epfd: -1, evfd: -1, wrapped: make([]byte, 4096)}
	var err error
	if r.cons, err = unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("map consumer page: %w", err)
	}
	if r.data, err = unix.Mmap(m.FD(), int64(page), page+int(size), unix.PROT_READ, unix.MAP_SHARED); err != nil {
		r.close()
		return nil, fmt.Errorf("map data pages: %w", err)
	}
	r.consPos = (*uint64)(unsafe.Pointer(&r.cons[0]))
	r.prodPos = (*uint64)(unsafe.Pointer(&r.data[0]))
	r.ring = r.data[page:]
	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		r.close()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if r.evfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		r.close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	for _, fd := range []int{m.FD(), r.evfd} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			r.close()
			return nil, fmt.Errorf("epoll add: %w", err)
		}
	}
	return r, nil
}

// read hands fn the records present, at most max, and reports whether
// more may be there (max reached, or a record still being written). The
// records are valid only during fn: their space is handed back when read
// returns.
func (r *ringReader) read(max int, fn func(raw []byte)) (n int, more bool) {
	cons := atomic.LoadUint64(r.consPos)
	prod := atomic.LoadUint64(r.prodPos)
	defer func() { atomic.StoreUint64(r.consPos, cons) }()
	for n < max {
		if cons == prod {
			if prod = atomic.LoadUint64(r.prodPos); cons == prod {
				return n, false
			}
		}
		off := cons & r.mask
		hp := (*uint32)(unsafe.Pointer(&r.ring[off]))
		h := atomic.LoadUint32(hp)
		// A record being written is committed within a few hundred
		// nanoseconds (unless its producer was preempted): wait for it
		// here a little, rather than give the CPU away and come back
		// late.
		for spin := 0; h&ringBusyBit != 0 && spin < ringBusySpins; spin++ {
			h = atomic.LoadUint32(hp)
		}
		if h&ringBusyBit != 0 {
			return n, true // still being written: come back shortly
		}
		length := uint64(h &^ (ringBusyBit | ringDiscardBit))
		if length > r.mask+1-ringHeaderSize {
			// The kernel never writes this; stop rather than read past
			// the ring.
			cons = prod
			return n, false
		}
		if h&ringDiscardBit == 0 {
			fn(r.record((off+ringHeaderSize)&r.mask, length))
			n++
		}
		cons += ringHeaderSize + (length+7)&^7
	}
	return n, true
}

// record returns the length bytes of data at start: a slice of the ring,
// or of r.wrapped for a record that wraps around its end.
func (r *ringReader) record(start, length uint64) []byte {
	end := start + length
	if end <= uint64(len(r.ring)) {
		return r.ring[start:end:end]
	}
	if uint64(cap(r.wrapped)) < length {
		r.wrapped = make([]byte, length)
	}
	w := r.wrapped[:length:length]
	k := copy(w, r.ring[start:])
	copy(w[k:], r.ring)
	return w
}

// errReaderClosed is wait's answer once interrupt was called.
var errReaderClosed = errors.New("ring reader closed")

// wait blocks until a producer wakes the reader, timeout passes, or
// interrupt is called (errReaderClosed).
func (r *ringReader) wait(timeout time.Duration) error {
	ms := int((timeout + time.Millisecond - 1) / time.Millisecond)
	n, err := unix.EpollWait(r.epfd, r.events[:], ms)
	if err != nil && !errors.Is(err, unix.EINTR) {
		return fmt.Errorf("epoll wait: %w", err)
	}
	for _, ev := range r.events[:max(n, 0)] {
		if int(ev.Fd) == r.evfd {
			return errReaderClosed
		}
	}
	return nil
}

// interrupt makes wait return errReaderClosed, now and from then on.
func (r *ringReader) interrupt() {
	var one = [8]byte{1}
	unix.Write(r.evfd, one[:])
}

// close unmaps the ring; its goroutine must have returned.
func (r *ringReader) close() {
	for _, fd := range []int{r.epfd, r.evfd} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	for _, b := range [][]byte{r.cons, r.data} {
		if b != nil {
			unix.Munmap(b)
		}
	}
	r.cons, r.data, r.epfd, r.evfd = nil, nil, -1, -1
}
