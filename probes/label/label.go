// Package label checks the values the probe families read from another
// program's memory before they become labels: HTTP status codes, methods,
// ports, and texts (valid UTF-8 without control characters). An
// implausible value says the program was misread (or, for what a peer
// sent, that the peer is broken); the family refuses the event. Nothing
// here allocates.
package label

import (
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// PlausibleStatus reports whether code is a final HTTP status code a Go
// program plausibly answered or received. RFC 9110 allows 100–599; within
// the sparsely used classes only the range of registered codes is accepted
// (100–103, 200–226, 300–308), because a misread field typically holds two
// adjacent flag bytes (0x0100 = 256, 0x0101 = 257) or a pointer's low bits;
// 4xx and 5xx are accepted whole, where servers do use unregistered codes
// (nginx's 444 and 499, 520–527 behind CDNs).
func PlausibleStatus(code uint16) bool {
	switch {
	case code >= 100 && code <= 103:
		return true
	case code >= 200 && code <= 226:
		return true
	case code >= 300 && code <= 308:
		return true
	case code >= 400 && code <= 599:
		return true
	}
	return false
}

// tchar marks the bytes of an RFC 9110 token: "!" / "#" / "$" / "%" / "&" /
// "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// MaxMethodLen bounds a method: the BPF programs copy at most this many
// bytes (longer methods arrive cut, still tokens, and become _OTHER).
const MaxMethodLen = 16

// PlausibleMethod reports whether m is an HTTP method token of at most
// maxMethodLen bytes. The empty method is judged by the caller.
func PlausibleMethod(m []byte) bool {
	if len(m) > MaxMethodLen {
		return false
	}
	for _, c := range m {
		if !tchar[c] {
			return false
		}
	}
	return true
}

// Text checks a text read from a program before it becomes a label:
// valid UTF-8, and no control characters (C0 or DEL; with sqlSpace, the
// white space of SQL — tab, newline, vertical tab, form feed, carriage
// return — is allowed). A text that may have been cut by its buffer
// (truncated) may end in the first bytes of a rune: those are trimmed
// rather than refused, so that the label stays valid UTF-8. It does not
// allocate.
func Text(b []byte, truncated, sqlSpace bool) ([]byte, bool) {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				if !sqlSpace || c < '\t' || c > '\r' {
					return nil, false
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			if truncated && !utf8.FullRune(b[i:]) {
				return b[:i], true // a rune cut by the buffer's end
			}
			return nil, false
		}
		i += size
	}
	return b, true
}

// PlausiblePort reports whether p is a decimal port number 1–65535 (the
// empty port, absent from the host, is judged by the caller).
func PlausiblePort(p []byte) bool {
	if len(p) == 0 || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n >= 1 && n <= 65535
}

var knownMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true,
	"CONNECT": true, "OPTIONS": true, "TRACE": true, "PATCH": true, "QUERY": true,
}

// KnownMethod reports whether m is one of the methods exported by name (the
// others become _OTHER).
func KnownMethod(m []byte) bool { return knownMethods[string(m)] }

// Chars views the first n bytes of a char array from a BPF event.
func Chars(a []int8, n int) []byte {
	if n > len(a) {
		n = len(a)
	}
	if n <= 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&a[0])), n)
}

// protocolVersions spell network.protocol.version by major and minor
// version, "2" and "3" rather than "2.0" and "3.0" as the semantic
// conventions write them; built once so that no event allocates one.
var protocolVersions = func() (v [10][10]string) {
	for major := range v {
		for minor := range v[major] {
			v[major][minor] = strconv.Itoa(major) + "." + strconv.Itoa(minor)
		}
		if major >= 2 {
			v[major][0] = strconv.Itoa(major)
		}
	}
	return v
}()

// ProtocolVersion returns the network.protocol.version of an HTTP version
// as net/http holds it (Request or Response ProtoMajor, ProtoMinor): its
// parser takes one digit each, so anything larger was misread.
func ProtocolVersion(major, minor uint8) (string, bool) {
	if major > 9 || minor > 9 {
		return "", false
	}
	return protocolVersions[major][minor], true
}
