package symbols

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestScanVersions(t *testing.T) {
	const p = "grpc-go/"
	for _, c := range []struct {
		name      string
		data      string
		found     []string
		malformed []string
	}{
		{"found", "abc" + p + "1.64.0grpc-trace-bin", []string{"v1.64.0"}, nil},
		{"found at the end", "x" + p + "1.81.1", []string{"v1.81.1"}, nil},
		{"same twice", p + "1.33.3" + "zz" + p + "1.33.3", []string{"v1.33.3"}, nil},
		{"absent", "grpc-go grpc/1.2.3 go/1.2.3", nil, nil},
		{"prefix alone", p + "grpc-trace-bin" + p, nil, nil},
		{"two versions", p + "1.64.0xx" + p + "1.65.1", []string{"v1.64.0", "v1.65.1"}, nil},
		{"pre-release suffix not read", p + "1.66.0-dev", []string{"v1.66.0"}, nil},
		{"missing patch", p + "1.64x", nil, []string{`"1.64x"`}},
		{"missing minor", p + "1..0", nil, []string{`"1.."`}},
		{"truncated", p + "1.64.", nil, []string{`"1.64."`}},
		{"leading zero", p + "1.64.01", nil, []string{`"1.64.01"`}},
		{"number too long", p + "1.64.12345", nil, []string{`"1.64.12345"`}},
		{"malformed beside a version", p + "1.64.0" + p + "7", []string{"v1.64.0"}, []string{`"7"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			vs, err := scanVersions(strings.NewReader(c.data), []byte(p))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(vs.Found, c.found) || !reflect.DeepEqual(vs.Malformed, c.malformed) {
				t.Errorf("got found %q malformed %q, want %q %q", vs.Found, vs.Malformed, c.found, c.malformed)
			}
		})
	}
}

// TestScanVersionsChunks puts the version at every offset around the
// buffer's edges: an occurrence split across two reads is still read
// whole, once.
func TestScanVersionsChunks(t *testing.T) {
	const p = "grpc-go/"
	for off := versionScanChunk - 40; off < versionScanChunk+40; off++ {
		data := append(bytes.Repeat([]byte{'x'}, off), p+"1.64.0x"+p+"1.64.1"...)
		vs, err := scanVersions(bytes.NewReader(data), []byte(p))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"v1.64.0", "v1.64.1"}; !reflect.DeepEqual(vs.Found, want) || vs.Malformed != nil {
			t.Fatalf("offset %d: found %q malformed %q, want %q", off, vs.Found, vs.Malformed, want)
		}
	}
}

// TestScanVersionsHuge scans 64 MiB full of occurrences: the result stays
// bounded (maxVersionStrings each) and the memory is the buffer's.
func TestScanVersionsHuge(t *testing.T) {
	const p = "grpc-go/"
	unit := []byte(p + "1.2.3" + p + "9" + p + "1.2.4" + p + "1.2.5" + p + "1.2.6" + p + "1.2.7")
	size := int64(64 << 20)
	r := io.LimitReader(&repeatReader{unit: unit}, size)
	var vs VersionStrings
	var err error
	n := allocated(func() { vs, err = scanVersions(r, []byte(p)) })
	if err != nil {
		t.Fatal(err)
	}
	if len(vs.Found) != maxVersionStrings || len(vs.Malformed) != 1 {
		t.Errorf("found %q malformed %q, want %d versions and 1 malformed", vs.Found, vs.Malformed, maxVersionStrings)
	}
	if n > 1<<20 {
		t.Errorf("scanning %d bytes allocated %d, want at most 1 MiB", size, n)
	}
}

type repeatReader struct {
	unit []byte
	i    int
}

func (r *repeatReader) Read(b []byte) (int, error) {
	for k := range b {
		b[k] = r.unit[r.i]
		r.i = (r.i + 1) % len(r.unit)
	}
	return len(b), nil
}

func TestReadVersionStrings(t *testing.T) {
	b, err := Open(tinyTarget(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The test target links no grpc-go: nothing found.
	vs, err := b.ReadVersionStrings("grpc-go/")
	if err != nil {
		t.Fatal(err)
	}
	if vs.Found != nil || vs.Malformed != nil {
		t.Errorf("tiny target: found %q malformed %q, want nothing", vs.Found, vs.Malformed)
	}
	if _, err := b.ReadVersionStrings(""); err == nil {
		t.Error("empty prefix accepted")
	}
}

// FuzzScanVersions: any input, any prefix: no panic, and the memory is
// the buffer's whatever the input.
func FuzzScanVersions(f *testing.F) {
	f.Add([]byte("xxgrpc-go/1.64.0grpc-trace-bin"), "grpc-go/")
	f.Add([]byte("grpc-go/1.64.01grpc-go/1..grpc-go/"), "grpc-go/")
	f.Add([]byte("aaaa"), "a")
	f.Fuzz(func(t *testing.T, data []byte, prefix string) {
		var vs VersionStrings
		var err error
		n := allocated(func() { vs, err = scanVersions(bytes.NewReader(data), []byte(prefix)) })
		if err != nil {
			return
		}
		if len(vs.Found) > maxVersionStrings || len(vs.Malformed) > maxVersionStrings {
			t.Fatalf("kept %d versions and %d malformed", len(vs.Found), len(vs.Malformed))
		}
		if n > 1<<20 {
			t.Fatalf("%d bytes: allocated %d", len(data), n)
		}
	})
}

// A .rodata header claiming more than the file holds is refused before a
// byte is read.
func TestReadVersionStringsLyingHeader(t *testing.T) {
	data := readFile(t, tinyTarget(t))
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	idx := -1
	for i, s := range ef.Sections {
		if s.Name == ".rodata" {
			idx = i
		}
	}
	if idx < 0 {
		t.Fatal("no .rodata")
	}
	shoff := binary.LittleEndian.Uint64(data[0x28:])
	binary.LittleEndian.PutUint64(data[shoff+uint64(idx)*64+32:], 1<<40) // sh_size
	b, err := NewBinary(bytes.NewReader(data), "lying")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadVersionStrings("grpc-go/"); err == nil || !strings.Contains(err.Error(), "outside the file") {
		t.Errorf("ReadVersionStrings: %v, want the section refused", err)
	}
}
