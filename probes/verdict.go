package probes

import "time"

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
	InvalidProto      // HTTP protocol version net/http cannot have accepted or produced
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
	InvalidProto:      "proto",
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

// MaxEventDuration bounds a plausible duration. A call in flight longer
// than Options.InFlightTTL (default 1 h, at most maxInFlightTTL) is swept,
// so a correct probe never reports one this long.
const MaxEventDuration = 24 * time.Hour

// maxInFlightTTL caps Options.InFlightTTL below MaxEventDuration.
const maxInFlightTTL = MaxEventDuration - 10*time.Minute

// PlausibleDuration checks the two timestamps of an event (both from
// bpf_ktime_get_ns).
func PlausibleDuration(start, end uint64) bool {
	return end >= start && end-start < uint64(MaxEventDuration)
}

// Reason is the reason label of blindspot_events_invalid_total an invalid
// verdict is counted under ("" for Decoded and Malformed).
func (v Verdict) Reason() string {
	if v >= numVerdicts {
		return ""
	}
	return invalidReasons[v]
}
