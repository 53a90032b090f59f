package probes

import (
	"time"
	"unicode/utf8"
)

// Verdict is what a decoder made of one event: folded into a shard,
// malformed, or implausible for a reason. An implausible event is exported
// under no labels at all: it is counted in blindspot_events_invalid_total
// and weighed by the invalid-event policy (invalid.go).
type Verdict uint8

const (
	Decoded   Verdict = iota // folded into the shard
	Malformed                // too short, or of a shape no BPF program writes
	// Implausible values, checked where they are decoded.
	InvalidStatus     // HTTP status a correctly read program cannot have
	InvalidPeerStatus // HTTP client status outside the plausible set, as a peer may send
	InvalidMethod     // HTTP method not an RFC 9110 token
	InvalidPeerMethod // HTTP/2 request method not a token, as a client may send
	InvalidUTF8       // a label text (route pattern, host, SQL text, business string) not valid UTF-8 or with control characters
	InvalidPath       // a request path used as the route not valid UTF-8 or with control characters
	InvalidPort       // server port not 1–65535
	InvalidDuration   // end before start, or a day or longer
	InvalidHost       // HTTP client URL host longer than a DNS name and port
	numVerdicts
)

// invalidReasons are the reason labels of blindspot_events_invalid_total.
var invalidReasons = [numVerdicts]string{
	InvalidStatus:     "status",
	InvalidPeerStatus: "status",
	InvalidMethod:     "method",
	InvalidPeerMethod: "method",
	InvalidUTF8:       "utf8",
	InvalidPath:       "path",
	InvalidPort:       "port",
	InvalidDuration:   "duration",
	InvalidHost:       "host",
}

// invalid reports whether v is one of the implausible verdicts.
func (v Verdict) invalid() bool { return v >= InvalidStatus && v < numVerdicts }

// evidence reports whether an event with this verdict tells that the
// probes misread the program, and so counts against its family in the
// invalid-event policy. Only what neither the program nor its peers can
// produce when read correctly is evidence. Not evidence, though refused
// all the same: a path (decoded from what a client sent: a request for
// /%FF has the path "/\xff"), an HTTP/2 method (net/http checks only that
// it is a valid header value), and a client's status from 0 to 999 (what
// the server sent: some answer 999). Such an event counts as a plausibly
// read one in the policy.
func (v Verdict) evidence() bool {
	switch v {
	case InvalidPeerStatus, InvalidPeerMethod, InvalidPath, InvalidHost:
		return false
	}
	return v.invalid()
}

// maxEventDuration bounds a plausible duration. A call in flight longer
// than Options.InFlightTTL (default 1 h, at most maxInFlightTTL) is swept,
// so a correct probe never reports one this long.
const maxEventDuration = 24 * time.Hour

// maxInFlightTTL caps Options.InFlightTTL below maxEventDuration.
const maxInFlightTTL = maxEventDuration - 10*time.Minute

// plausibleDuration checks the two timestamps of an event (both from
// bpf_ktime_get_ns).
func plausibleDuration(start, end uint64) bool {
	return end >= start && end-start < uint64(maxEventDuration)
}

// plausibleStatus reports whether code is a final HTTP status code a Go
// program plausibly answered or received. RFC 9110 allows 100–599; within
// the sparsely used classes only the range of registered codes is accepted
// (100–103, 200–226, 300–308), because a misread field typically holds two
// adjacent flag bytes (0x0100 = 256, 0x0101 = 257) or a pointer's low bits;
// 4xx and 5xx are accepted whole, where servers do use unregistered codes
// (nginx's 444 and 499, 520–527 behind CDNs).
func plausibleStatus(code uint16) bool {
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

// maxMethodLen bounds a method: the BPF programs copy at most this many
// bytes (longer methods arrive cut, still tokens, and become _OTHER).
const maxMethodLen = 16

// plausibleMethod reports whether m is an HTTP method token of at most
// maxMethodLen bytes. The empty method is judged by the caller.
func plausibleMethod(m []byte) bool {
	if len(m) > maxMethodLen {
		return false
	}
	for _, c := range m {
		if !tchar[c] {
			return false
		}
	}
	return true
}

// labelText checks a text read from a program before it becomes a label:
// valid UTF-8, and no control characters (C0 or DEL; with sqlSpace, the
// white space of SQL — tab, newline, vertical tab, form feed, carriage
// return — is allowed). A text that may have been cut by its buffer
// (truncated) may end in the first bytes of a rune: those are trimmed
// rather than refused, so that the label stays valid UTF-8. It does not
// allocate.
func labelText(b []byte, truncated, sqlSpace bool) ([]byte, bool) {
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

// plausiblePort reports whether p is a decimal port number 1–65535 (the
// empty port, absent from the host, is judged by the caller).
func plausiblePort(p []byte) bool {
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
