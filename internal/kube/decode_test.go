package kube

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// allocBound is what decoding n bytes of JSON may allocate: a small
// multiple of them. (Long arrays are read an element at a time and only
// what is kept grows a slice: the container statuses that name an ID, 12
// times their bytes at worst.)
func allocBound(n int) uint64 { return uint64(32*n + 1<<20) }

func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

const samplePod = `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"checkout-7d9f8b6c5-x2x4z","generateName":"checkout-7d9f8b6c5-","namespace":"shop","uid":"5f3c8a1e-2b4d-4e6f-8a9b-0c1d2e3f4a5b","resourceVersion":"4242","creationTimestamp":"2026-12-01T21:00:00Z","labels":{"app.kubernetes.io/name":"checkout","pod-template-hash":"7d9f8b6c5"},"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-12-01T20:59:00Z"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"checkout-7d9f8b6c5","uid":"rs-1","controller":true,"blockOwnerDeletion":true}],"managedFields":[{"manager":"kubelet","operation":"Update","apiVersion":"v1","time":"2026-12-01T21:00:01Z","fieldsType":"FieldsV1","fieldsV1":{"f:status":{}},"subresource":"status"}]},"spec":{"volumes":[{"name":"kube-api-access","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}}]}}],"containers":[{"name":"app","image":"registry.example/app:1.2","ports":[{"containerPort":8080,"protocol":"TCP"}],"resources":{"limits":{"cpu":"1"}}},{"name":"proxy","image":"registry.example/proxy:3"}],"initContainers":[{"name":"migrate","image":"registry.example/migrate"}],"restartPolicy":"Always","nodeName":"node-a","serviceAccountName":"checkout"},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2026-12-01T21:00:05Z"}],"hostIP":"10.0.0.5","podIP":"10.244.1.7","startTime":"2026-12-01T21:00:00Z","initContainerStatuses":[{"name":"migrate","state":{"terminated":{"exitCode":0,"reason":"Completed"}},"ready":true,"restartCount":0,"image":"registry.example/migrate","imageID":"sha256:aa","containerID":"containerd://1111111111111111111111111111111111111111111111111111111111111111"}],"containerStatuses":[{"name":"app","state":{"running":{"startedAt":"2026-12-01T21:00:03Z"}},"ready":true,"restartCount":0,"image":"registry.example/app:1.2","imageID":"sha256:bb","containerID":"containerd://3f7b2c9d81e04a56b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4","started":true},{"name":"proxy","ready":true,"restartCount":1,"image":"registry.example/proxy:3","imageID":"sha256:cc","containerID":"cri-o://aaaabbbbccccddddeeeeffff00001111222233334444555566667777888899990"}],"qosClass":"Burstable"}}`

// TestDecodeEvents: a stream of events as the API server writes them.
func TestDecodeEvents(t *testing.T) {
	stream := `{"type":"ADDED","object":` + samplePod + "}\n" +
		`{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"4300","annotations":{"k8s.io/initial-events-end":"true"}},"spec":{"containers":null},"status":{}}}` + "\n" +
		`{"object":` + strings.Replace(samplePod, `"4242"`, `"4301"`, 1) + `,"type":"DELETED"}` + "\n" +
		`{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (4200)","reason":"Expired","code":410}}` + "\n"
	d := newEventDecoder(strings.NewReader(stream))
	var evs []event
	for {
		ev, err := d.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if len(evs) != 4 {
		t.Fatalf("%d events", len(evs))
	}
	p := evs[0].pod
	if evs[0].typ != added || evs[0].rv != "4242" || p.Metadata.UID != podUID || p.Metadata.Namespace != "shop" || p.Spec.NodeName != node ||
		p.Spec.Containers != (containerNames{2, "app"}) || p.Spec.InitContainers != (containerNames{1, "migrate"}) || len(p.Status.ContainerStatuses) != 2 ||
		p.Status.ContainerStatuses[1].ContainerID != "cri-o://"+sidecarD || p.Status.InitContainerStatuses[0].Name != "migrate" ||
		p.Metadata.Labels[AppNameLabel] != "checkout" {
		t.Errorf("pod %+v", evs[0])
	}
	if c := controllerOf(&p.Metadata); c == nil || c.Kind != "ReplicaSet" || c.UID != "rs-1" {
		t.Errorf("controller %+v", c)
	}
	if evs[1].typ != bookmark || evs[1].rv != "4300" {
		t.Errorf("bookmark %+v", evs[1])
	}
	if evs[2].typ != deleted || evs[2].rv != "4301" || evs[2].pod.Metadata.UID != podUID {
		t.Errorf("deletion %+v", evs[2])
	}
	if evs[3].typ != failed || evs[3].status.Code != 410 || evs[3].status.Reason != "Expired" {
		t.Errorf("error %+v", evs[3])
	}
}

func TestDecodePodList(t *testing.T) {
	list := `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"4242","continue":"eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDI0Mn0"},"items":[` +
		samplePod + "," + strings.Replace(samplePod, podUID, "other-uid", 1) + `]}`
	var uids []string
	lm, err := decodePodList(strings.NewReader(list), func(p *pod) error { uids = append(uids, p.Metadata.UID); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if lm.ResourceVersion != "4242" || lm.Continue == "" || len(uids) != 2 || uids[1] != "other-uid" {
		t.Errorf("list %+v, pods %v", lm, uids)
	}
	// Items before metadata, null items, no kind.
	lm, err = decodePodList(strings.NewReader(`{"items":null,"metadata":{"resourceVersion":"9"}}`), func(*pod) error { return errors.New("no pod") })
	if err != nil || lm.ResourceVersion != "9" {
		t.Errorf("null items: %+v %v", lm, err)
	}
	for _, bad := range []string{
		`{"kind":"Status","code":500}`,
		`{"items":[{"metadata":{"name":"x"}}]}`,
		`{"items":{}}`,
		`[]`,
		`{"items":[` + samplePod,
		`{"metadata":{"resourceVersion":"1"}} trailing`,
		``,
	} {
		if _, err := decodePodList(strings.NewReader(bad), func(*pod) error { return nil }); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestDecodeBounds: an object past maxObject is an error, read no
// further than about the bound; the decoding of any input allocates at
// most a small multiple of it.
func TestDecodeBounds(t *testing.T) {
	// An object that never ends.
	endless := io.MultiReader(strings.NewReader(`{"type":"ADDED","object":{"metadata":{"name":"`), &repeatReader{b: 'a', n: 1 << 30})
	cr := &countReader{r: endless}
	if _, err := newEventDecoder(cr).next(); !errors.Is(err, errTooLarge) {
		t.Errorf("err = %v, want errTooLarge", err)
	}
	if cr.n > maxObject+64<<10 {
		t.Errorf("read %d bytes of an endless event, bound %d", cr.n, maxObject)
	}
	cr = &countReader{r: io.MultiReader(strings.NewReader(`{"items":[{"metadata":{"name":"`), &repeatReader{b: 'a', n: 1 << 30})}
	if _, err := decodePodList(cr, func(*pod) error { return nil }); !errors.Is(err, errTooLarge) {
		t.Errorf("err = %v, want errTooLarge", err)
	}
	if cr.n > maxObject+64<<10 {
		t.Errorf("read %d bytes of an endless list item, bound %d", cr.n, maxObject)
	}
	// Many small pods in a list are each bounded, not the list.
	var b strings.Builder
	b.WriteString(`{"metadata":{"resourceVersion":"1"},"items":[`)
	for i := range 5000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(samplePod)
	}
	b.WriteString("]}")
	if b.Len() <= maxObject {
		t.Fatalf("list of %d bytes is not larger than one object", b.Len())
	}
	n := 0
	if _, err := decodePodList(strings.NewReader(b.String()), func(*pod) error { n++; return nil }); err != nil || n != 5000 {
		t.Errorf("%d pods of a %d MiB list: %v", n, b.Len()>>20, err)
	}
	// The costliest JSON for its size: empty owner references and labels.
	for _, worst := range []string{
		`{"type":"ADDED","object":{"metadata":{"uid":"u","name":"n","namespace":"s","ownerReferences":[` + strings.Repeat("{},", 300000) + `{}]}}}`,
		`{"type":"ADDED","object":{"metadata":{"uid":"u","name":"n","namespace":"s","labels":{` + strings.Repeat(`"a":"",`, 100000) + `"b":""}}}}`,
		`{"type":"ADDED","object":{"metadata":{"uid":"u","name":"n","namespace":"s"},"status":{"containerStatuses":[` + strings.Repeat(`{"containerID":"a"},`, 100000) + `{}]}}}`,
		`{"type":"ADDED","object":{"metadata":{"uid":"u","name":"n","namespace":"s"},"spec":{"containers":[` + strings.Repeat("{},", 300000) + `{}]}}}`,
	} {
		if n := allocated(func() { newEventDecoder(strings.NewReader(worst)).next() }); n > allocBound(len(worst)) {
			t.Errorf("%d bytes allocated decoding %d", n, len(worst))
		}
	}
}

type repeatReader struct {
	b byte
	n int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.n)
	for i := range p[:n] {
		p[i] = r.b
	}
	r.n -= n
	return n, nil
}

type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func checkEvent(t *testing.T, ev event) {
	switch ev.typ {
	case added, modified, deleted:
		if ev.pod.Metadata.UID == "" || ev.pod.Metadata.Name == "" || ev.pod.Metadata.Namespace == "" {
			t.Fatalf("%s of a pod without uid, name or namespace: %+v", ev.typ, ev.pod.Metadata)
		}
	case bookmark, failed:
	default:
		t.Fatalf("event of type %q decoded", ev.typ)
	}
}

// FuzzWatchEvent: a watch stream, whatever it holds, decodes into valid
// events or an error on one line, never a panic, within allocBound.
func FuzzWatchEvent(f *testing.F) {
	f.Add([]byte(`{"type":"ADDED","object":` + samplePod + "}\n"))
	f.Add([]byte(`{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"12"}}}` + "\n" + `{"type":"ERROR","object":{"kind":"Status","code":410}}`))
	f.Add([]byte(`{"type":"DELETED","object":{"metadata":{"uid":"u","name":"n","namespace":"s"}}}{"type":"MODIFIED","object":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var errs []error
		n := allocated(func() {
			d := newEventDecoder(bytes.NewReader(b))
			for range len(b) + 1 {
				ev, err := d.next()
				if err != nil {
					errs = append(errs, err)
					return
				}
				checkEvent(t, ev)
			}
			t.Fatal("more events than bytes")
		})
		if n > allocBound(len(b)) {
			t.Fatalf("decoding %d bytes allocated %d", len(b), n)
		}
		if err := errs[0]; err != io.EOF && strings.Contains(err.Error(), "\n") {
			t.Fatalf("error spans lines: %q", err)
		}
	})
}

// FuzzPodList: a list page, whatever it holds, decodes into valid pods or
// an error, never a panic, within allocBound.
func FuzzPodList(f *testing.F) {
	f.Add([]byte(`{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"4242","continue":"x"},"items":[` + samplePod + `]}`))
	f.Add([]byte(`{"items":null,"metadata":{"resourceVersion":"9"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var err error
		n := allocated(func() {
			_, err = decodePodList(bytes.NewReader(b), func(p *pod) error {
				checkEvent(t, event{typ: added, pod: *p})
				return nil
			})
		})
		if n > allocBound(len(b)) {
			t.Fatalf("decoding %d bytes allocated %d", len(b), n)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("error spans lines: %q", err)
		}
	})
}
