package symbols

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Versions in string constants: a library that puts its release into a
// constant (grpc-go's user agent, "grpc-go/" + Version) leaves it in the
// read-only data of every program that uses it, module information or not
// (Debian builds without it). Go string data is not NUL-terminated: the
// constant runs straight into the next one ("grpc-go/1.33.3grpc-trace-bin"),
// so a version is read as MAJOR.MINOR.PATCH and no further: a pre-release
// suffix is not read, and a patch number could run into a next string that
// starts with a digit (the major and minor cannot: dots delimit them).

// VersionStrings is what ReadVersionStrings found.
type VersionStrings struct {
	// Found are the distinct versions "vMAJOR.MINOR.PATCH" that follow the
	// prefix, in order of first appearance (at most maxVersionStrings).
	Found []string
	// Malformed are texts that follow the prefix, start with a digit and
	// are no version (at most maxVersionStrings).
	Malformed []string
}

const (
	maxVersionDigits  = 4 // per number: longer is malformed
	maxVersionStrings = 4 // distinct versions or malformed texts kept
	versionScanChunk  = 64 << 10
)

// ReadVersionStrings reads the binary's .rodata once, in fixed-size
// chunks (charged to the read budget), and returns the versions that
// follow prefix there. Results are cached per prefix.
func (b *Binary) ReadVersionStrings(prefix string) (VersionStrings, error) {
	b.cacheMu.Lock()
	v, ok := b.versionStrings[prefix]
	b.cacheMu.Unlock()
	if ok {
		return v.vs, v.err
	}
	vs, err := b.readVersionStrings(prefix)
	b.cacheMu.Lock()
	if b.versionStrings == nil {
		b.versionStrings = map[string]versionStringsResult{}
	}
	b.versionStrings[prefix] = versionStringsResult{vs, err}
	b.cacheMu.Unlock()
	return vs, err
}

type versionStringsResult struct {
	vs  VersionStrings
	err error
}

func (b *Binary) readVersionStrings(prefix string) (VersionStrings, error) {
	if b.ef == nil {
		return VersionStrings{}, errors.New("no ELF file")
	}
	s := b.ef.Section(".rodata")
	if s == nil {
		return VersionStrings{}, errors.New("no .rodata section")
	}
	if s.Type == elf.SHT_NOBITS || s.Flags&elf.SHF_COMPRESSED != 0 {
		return VersionStrings{}, fmt.Errorf("section .rodata: no plain data")
	}
	if s.Size > maxSectionSize || b.size > 0 && (s.Offset > uint64(b.size) || s.Size > uint64(b.size)-s.Offset) {
		return VersionStrings{}, fmt.Errorf("section .rodata lies outside the file")
	}
	if err := b.charge(s.Size); err != nil {
		return VersionStrings{}, fmt.Errorf("read section .rodata: %w", err)
	}
	vs, err := scanVersions(io.NewSectionReader(s.ReaderAt, 0, int64(s.Size)), []byte(prefix))
	if err != nil {
		return VersionStrings{}, fmt.Errorf("read section .rodata: %w", err)
	}
	return vs, nil
}

// scanVersions reads r to its end through one buffer of
// versionScanChunk bytes plus a tail, and returns the versions that
// follow prefix. Time is linear in the bytes read; memory is the buffer.
func scanVersions(r io.Reader, prefix []byte) (VersionStrings, error) {
	var vs VersionStrings
	if len(prefix) == 0 || len(prefix) > 64 {
		return vs, errors.New("version prefix must be 1 to 64 bytes")
	}
	// An occurrence is parsed once the bytes that can belong to it are in
	// the buffer: the prefix and the longest version with one byte after.
	keep := len(prefix) + 3*maxVersionDigits + 2 + 1
	buf := make([]byte, versionScanChunk+keep)
	n, eof := 0, false
	for !eof {
		m, err := io.ReadFull(r, buf[n:])
		n += m
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			eof = true
		case err != nil:
			return VersionStrings{}, err
		}
		// Occurrences starting before limit are complete in buf[:n].
		limit := n - keep + 1
		if eof {
			limit = n
		}
		i := 0
		for i < limit {
			j := bytes.Index(buf[i:n], prefix)
			if j < 0 || i+j >= limit {
				break
			}
			at := i + j + len(prefix)
			vs.add(parseVersionAt(buf[at:n]))
			i = at
		}
		if eof {
			break
		}
		// Keep what a later occurrence may still start in.
		if i < limit {
			i = limit
		}
		n = copy(buf, buf[i:n])
	}
	for i, v := range vs.Found {
		vs.Found[i] = "v" + v
	}
	for i, m := range vs.Malformed {
		vs.Malformed[i] = strconv.Quote(m)
	}
	return vs, nil
}

// add records one parse result (text as read): a version, a malformed
// text, or neither. Known texts are compared without a copy.
func (vs *VersionStrings) add(text []byte, malformed bool) {
	list := &vs.Found
	if malformed {
		list = &vs.Malformed
	} else if text == nil {
		return
	}
	for _, have := range *list {
		if have == string(text) {
			return
		}
	}
	if len(*list) < maxVersionStrings {
		*list = append(*list, string(text))
	}
}

// parseVersionAt reads MAJOR.MINOR.PATCH at the start of b: the version;
// nil when b starts with no digit (the prefix was not a version's);
// malformed when it starts with a digit but is no version (a missing
// number, a leading zero, a number too long), with what was read of it.
func parseVersionAt(b []byte) (text []byte, malformed bool) {
	if len(b) == 0 || !isDigit(b[0]) {
		return nil, false
	}
	i := 0
	for part := 0; part < 3; part++ {
		if part > 0 {
			if i >= len(b) || b[i] != '.' {
				return b[:min(i+1, len(b))], true
			}
			i++
		}
		start := i
		for i < len(b) && isDigit(b[i]) && i-start <= maxVersionDigits {
			i++
		}
		if d := i - start; d == 0 || d > maxVersionDigits || d > 1 && b[start] == '0' {
			return b[:min(i+1, len(b))], true
		}
	}
	return b[:i], false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
