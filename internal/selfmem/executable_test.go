package selfmem

import (
	"encoding/binary"
	"os"
	"reflect"
	"unsafe"

	"bytes"
	"crypto/sha256"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReadOnlyMappings(t *testing.T) {
	maps := `00400000-011d3000 r-xp 00000000 fd:01 1234 /usr/bin/agent
011d3000-02115000 r--p 00dd3000 fd:01 1234 /usr/bin/agent
02115000-02232000 rw-p 01d15000 fd:01 1234 /usr/bin/agent
02232000-0427d000 rw-p 00000000 00:00 0
7fc2eedfd000-7fc2eeffe000 r--s 00000000 00:0e 99 anon_inode:bpf-map
7fc33b7a0000-7fc33b8f6000 r-xp 00026000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
7fc33b900000-7fc33b901000 r--p 00000000 fd:01 78 /opt/my agent/agent
`
	got, err := readOnlyMappings(strings.NewReader(maps), "/usr/bin/agent")
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{{0x400000, 0x11d3000}, {0x11d3000, 0x2115000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %x, want %x", got, want)
	}
	// A path with a space is one path.
	if got, err := readOnlyMappings(strings.NewReader(maps), "/opt/my agent/agent"); err != nil || len(got) != 1 {
		t.Errorf("path with a space: %x, %v", got, err)
	}
	for _, bad := range []string{
		"zz-011d3000 r-xp 00000000 fd:01 1234 /usr/bin/agent\n",
		"011d3000 r-xp 00000000 fd:01 1234 /usr/bin/agent\n",
		"02000000-01000000 r-xp 00000000 fd:01 1234 /usr/bin/agent\n",
	} {
		if _, err := readOnlyMappings(strings.NewReader(bad), "/usr/bin/agent"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// work runs code of several packages, touching their pages.
func work() string {
	var v map[string]any
	json.Unmarshal([]byte(`{"a":[1,2,{"b":"c"}]}`), &v)
	re := regexp.MustCompile(`^a(b+)c$`)
	sum := sha256.Sum256([]byte(re.ReplaceAllString("abbbc", "$1")))
	return strings.ToUpper(string(sum[:4]))
}

// The test binary's own pages go back to the kernel and come back as they
// are used: the program goes on as before.
func TestPageOut(t *testing.T) {
	e, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	want := work()
	before, after, err := e.PageOut()
	if err != nil {
		t.Fatal(err)
	}
	if before <= 0 || after >= before {
		t.Fatalf("resident %d bytes before the page-out, %d after: want fewer after", before, after)
	}
	if got := work(); got != want {
		t.Fatalf("after the page-out: %q, want %q", got, want)
	}
	again, err := e.Resident()
	if err != nil {
		t.Fatal(err)
	}
	if again <= after {
		t.Errorf("resident %d bytes after running code again, %d right after the page-out: want more", again, after)
	}
	t.Logf("resident: %d KB, %d KB after the page-out, %d KB after running again", before>>10, after>>10, again>>10)

	// A call pages out when the pages grew by the threshold since the
	// call before it (or the page-out), and measures only otherwise.
	if paged, _, _, err := e.PageOutIfGrown(1 << 40); err != nil || paged {
		t.Errorf("grown by less than the threshold: paged out %v, %v", paged, err)
	}
	touchAbsentPage(t, e)
	if paged, _, _, err := e.PageOutIfGrown(1); err != nil || !paged {
		t.Errorf("grown by more than the threshold: paged out %v, %v", paged, err)
	}
	if paged, _, _, err := e.PageOutIfGrown(1 << 40); err != nil || paged {
		t.Errorf("right after a page-out: paged out %v, %v", paged, err)
	}
}

// touchAbsentPage reads a byte of a page of e that is not resident
// (through /proc/self/mem, which maps it as a read through memory would).
func touchAbsentPage(t *testing.T, e *Executable) {
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	page := uintptr(os.Getpagesize())
	var entry [8]byte
	for _, m := range e.maps {
		for at := m.end - page; at >= m.start; at -= page {
			if _, err := pm.ReadAt(entry[:], int64(at/page*8)); err != nil {
				t.Fatal(err)
			}
			if binary.LittleEndian.Uint64(entry[:])&pagemapPresent == 0 {
				if _, err := mem.ReadAt(entry[:1], int64(at)); err != nil {
					t.Fatal(err)
				}
				return
			}
		}
	}
	t.Fatal("every page of the executable resident")
}

// Only pages of the file are handed back: a page the process wrote (its
// private copy) is left out of the runs, though it counts as resident.
func TestScanPagesSkipsPrivateCopies(t *testing.T) {
	page := os.Getpagesize()
	f, err := os.CreateTemp(t.TempDir(), "mapped")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(bytes.Repeat([]byte{7}, 4*page)); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, 4*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	sum := 0
	for i := 0; i < 4; i++ {
		sum += int(m[i*page]) // every page read: the file's
	}
	m[2*page] = 1 // the third written: a private copy
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	start := uintptr(unsafe.Pointer(&m[0]))
	var runs [][2]uintptr
	n, err := scanPages(pm, start, start+uintptr(4*page), make([]byte, 16), func(lo, hi uintptr) {
		runs = append(runs, [2]uintptr{lo - start, hi - start})
	})
	if err != nil {
		t.Fatal(err)
	}
	p := uintptr(page)
	want := [][2]uintptr{{0, 2 * p}, {3 * p, 4 * p}}
	if n != 4 || !reflect.DeepEqual(runs, want) {
		t.Errorf("%d pages resident, runs %x; want 4 and %x (sum %d)", n, runs, want, sum)
	}
}
