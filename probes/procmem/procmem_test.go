package procmem

import (
	"os"
	"testing"
	"unsafe"
)

var probe = [4]uint64{0x1122334455667788, 2, 3, 4}

func TestReadOwnMemory(t *testing.T) {
	pid := os.Getpid()
	addr := uint64(uintptr(unsafe.Pointer(&probe[0])))
	w, err := Word(pid, addr)
	if err != nil || w != probe[0] {
		t.Fatalf("Word = %#x, %v; want %#x", w, err, probe[0])
	}
	buf := make([]byte, 16)
	if err := Read(pid, addr+8, buf); err != nil || buf[0] != 2 || buf[8] != 3 {
		t.Fatalf("Read = %v, %v", buf, err)
	}
	if err := Read(pid, 8, buf); err == nil {
		t.Fatal("reading an unmapped address succeeded")
	}
}

func TestExeMapStart(t *testing.T) {
	start, err := ExeMapStart(os.Getpid())
	if err != nil || start == 0 {
		t.Fatalf("ExeMapStart = %#x, %v", start, err)
	}
}
