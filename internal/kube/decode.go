package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The API's objects, as far as the watcher reads them: encoding/json
// skips every other field while it decodes.

// objectMeta is an object's metadata.
type objectMeta struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace"`
	UID             string            `json:"uid"`
	ResourceVersion string            `json:"resourceVersion"`
	Labels          map[string]string `json:"labels"`
	OwnerReferences ownerRefs         `json:"ownerReferences"`
}

// ownerReference names an object's owner.
type ownerReference struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
	Controller *bool  `json:"controller"`
}

// ownerRefs is what the watcher reads of an object's owner references:
// the first that is its managing controller (the API allows one). The
// others are read one at a time and dropped.
type ownerRefs struct {
	controller *ownerReference
}

func (o *ownerRefs) UnmarshalJSON(b []byte) error {
	*o = ownerRefs{}
	var r ownerReference // one for all: each element costs no allocation
	return eachElement(b, func(dec *json.Decoder) error {
		r = ownerReference{}
		if err := dec.Decode(&r); err != nil {
			return err
		}
		if r.Controller != nil && *r.Controller && o.controller == nil {
			c := r
			o.controller = &c
		}
		return nil
	})
}

// eachElement calls fn to decode each element of a JSON array (or none
// of null), so that a long array costs what is kept of it, not a slice
// of all its elements.
func eachElement(b []byte, fn func(*json.Decoder) error) error {
	if string(b) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := expectDelim(dec, '['); err != nil {
		return err
	}
	for dec.More() {
		if err := fn(dec); err != nil {
			return err
		}
	}
	return expectDelim(dec, ']')
}

// controllerOf returns the reference to the object's managing controller,
// nil when it has none.
func controllerOf(m *objectMeta) *ownerReference { return m.OwnerReferences.controller }

// containerNames is what the watcher reads of a list of containers: how
// many, and the first one's name.
type containerNames struct {
	n     int
	first string
}

func (c *containerNames) UnmarshalJSON(b []byte) error {
	*c = containerNames{}
	var ct struct {
		Name string `json:"name"`
	}
	return eachElement(b, func(dec *json.Decoder) error {
		ct.Name = ""
		if err := dec.Decode(&ct); err != nil {
			return err
		}
		if c.n == 0 {
			c.first = ct.Name
		}
		c.n++
		return nil
	})
}

type containerStatus struct {
	Name        string `json:"name"`
	ContainerID string `json:"containerID"`
}

// containerStatuses are the statuses of a pod's containers that name a
// container ID (one not started yet names none).
type containerStatuses []containerStatus

func (cs *containerStatuses) UnmarshalJSON(b []byte) error {
	*cs = nil
	var s containerStatus
	return eachElement(b, func(dec *json.Decoder) error {
		s = containerStatus{}
		if err := dec.Decode(&s); err != nil {
			return err
		}
		if s.ContainerID != "" {
			*cs = append(*cs, s)
		}
		return nil
	})
}

// pod is a pod as the watcher keeps it.
type pod struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		NodeName            string         `json:"nodeName"`
		Containers          containerNames `json:"containers"`
		InitContainers      containerNames `json:"initContainers"`
		EphemeralContainers containerNames `json:"ephemeralContainers"`
	} `json:"spec"`
	Status struct {
		InitContainerStatuses      containerStatuses `json:"initContainerStatuses"`
		ContainerStatuses          containerStatuses `json:"containerStatuses"`
		EphemeralContainerStatuses containerStatuses `json:"ephemeralContainerStatuses"`
	} `json:"status"`
}

// check refuses a pod the API would never send: one that cannot be told
// apart from others.
func (p *pod) check() error {
	if p.Metadata.UID == "" || p.Metadata.Name == "" || p.Metadata.Namespace == "" {
		return fmt.Errorf("pod %q in namespace %q without uid, name or namespace", p.Metadata.Name, p.Metadata.Namespace)
	}
	return nil
}

// status is the API's Status object: what a failed request or an ERROR
// watch event carries.
type status struct {
	Kind    string `json:"kind"`
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// maxObject bounds one object of a list or one watch event, as read from
// the wire. The API server stores no object past 1.5 MiB (etcd's default
// request limit) and sends it in at most about twice that as JSON: a
// larger one is an error, not the agent's memory.
const maxObject = 8 << 20

// maxPods bounds the pods one list may hold (the kubelet runs at most a
// few hundred per node), and maxPages its pages.
const (
	maxPods  = 10000
	maxPages = 1000
)

var errTooLarge = fmt.Errorf("object larger than %d MiB", maxObject>>20)

// budgetReader reads until its budget is spent, then fails: refilled
// before each object, it bounds what a json.Decoder buffers for one.
type budgetReader struct {
	r io.Reader
	n int64
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	return n, err
}

// listMeta is a list's metadata: the version to watch from, and where
// the next page begins.
type listMeta struct {
	ResourceVersion string `json:"resourceVersion"`
	Continue        string `json:"continue"`
}

// decodePodList reads a page of a pod list, one pod at a time (a page is
// never held whole), handing each to fn.
func decodePodList(r io.Reader, fn func(*pod) error) (listMeta, error) {
	var lm listMeta
	br := &budgetReader{r: r, n: maxObject}
	dec := json.NewDecoder(br)
	if err := expectDelim(dec, '{'); err != nil {
		return lm, err
	}
	for dec.More() {
		br.n = maxObject
		tok, err := dec.Token()
		if err != nil {
			return lm, err
		}
		key, _ := tok.(string)
		switch key {
		case "metadata":
			if err := dec.Decode(&lm); err != nil {
				return lm, fmt.Errorf("list metadata: %w", err)
			}
		case "kind":
			var kind string
			if err := dec.Decode(&kind); err != nil {
				return lm, fmt.Errorf("list kind: %w", err)
			}
			if kind != "PodList" {
				return lm, fmt.Errorf("a %q where a PodList was expected", kind)
			}
		case "items":
			tok, err := dec.Token()
			if err != nil {
				return lm, fmt.Errorf("list items: %w", err)
			}
			if tok == nil {
				continue // "items": null
			}
			if d, ok := tok.(json.Delim); !ok || d != '[' {
				return lm, fmt.Errorf("list items: %v where an array was expected", tok)
			}
			for dec.More() {
				br.n = maxObject
				var p pod
				if err := dec.Decode(&p); err != nil {
					return lm, fmt.Errorf("list item: %w", err)
				}
				if err := p.check(); err != nil {
					return lm, err
				}
				if err := fn(&p); err != nil {
					return lm, err
				}
			}
			if err := expectDelim(dec, ']'); err != nil {
				return lm, err
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return lm, fmt.Errorf("list field %q: %w", key, err)
			}
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return lm, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return lm, errors.New("data after the list")
	}
	return lm, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("%v where %q was expected", tok, want)
	}
	return nil
}

// Watch event types.
const (
	added    = "ADDED"
	modified = "MODIFIED"
	deleted  = "DELETED"
	bookmark = "BOOKMARK"
	failed   = "ERROR"
)

// event is one decoded watch event.
type event struct {
	typ string
	// pod is the object of ADDED, MODIFIED and DELETED.
	pod pod
	// rv is the resource version the event brings the watch to.
	rv string
	// status is the Status of an ERROR.
	status status
}

// eventDecoder reads a watch's stream of JSON events, each bounded.
type eventDecoder struct {
	br  *budgetReader
	dec *json.Decoder
}

func newEventDecoder(r io.Reader) *eventDecoder {
	br := &budgetReader{r: r}
	return &eventDecoder{br: br, dec: json.NewDecoder(br)}
}

// next returns the next event; io.EOF when the stream ends between two.
func (d *eventDecoder) next() (event, error) {
	d.br.n = maxObject
	var raw struct {
		Type   string          `json:"type"`
		Object json.RawMessage `json:"object"`
	}
	if err := d.dec.Decode(&raw); err != nil {
		if errors.Is(err, errTooLarge) {
			return event{}, fmt.Errorf("watch event: %w", err)
		}
		if err == io.EOF {
			return event{}, io.EOF
		}
		return event{}, fmt.Errorf("decode watch event: %w", err)
	}
	return decodeEvent(raw.Type, raw.Object)
}

func decodeEvent(typ string, obj json.RawMessage) (event, error) {
	ev := event{typ: typ}
	if len(obj) == 0 {
		return ev, fmt.Errorf("watch event %q without an object", typ)
	}
	switch typ {
	case added, modified, deleted:
		if err := json.Unmarshal(obj, &ev.pod); err != nil {
			return ev, fmt.Errorf("decode %s pod: %w", typ, err)
		}
		if err := ev.pod.check(); err != nil {
			return ev, fmt.Errorf("%s: %w", typ, err)
		}
		ev.rv = ev.pod.Metadata.ResourceVersion
	case bookmark:
		var b struct {
			Metadata struct {
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(obj, &b); err != nil {
			return ev, fmt.Errorf("decode bookmark: %w", err)
		}
		ev.rv = b.Metadata.ResourceVersion
	case failed:
		if err := json.Unmarshal(obj, &ev.status); err != nil {
			return ev, fmt.Errorf("decode watch error: %w", err)
		}
	default:
		return ev, fmt.Errorf("watch event of unknown type %q", typ)
	}
	return ev, nil
}
