package kube

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeAPI is a Kubernetes API server of the tests' own, strict where the
// real one is: it lists the pods of one node only when asked with its
// field selector, by pages (limit, continue), watches them from a
// resource version (replaying what came after it, or 410 Gone when that
// version is compacted away), sends bookmarks, and answers GETs of
// ReplicaSets and Jobs. Its objects are written with types of its own,
// not the package's, so that a field the package misnames is not
// decoded as it was encoded.
type fakeAPI struct {
	t    *testing.T
	srv  *httptest.Server
	node string

	mu       sync.Mutex
	pods     map[string]tPod // by UID
	owners   map[string]any  // "replicasets/NS/NAME", "jobs/NS/NAME"
	rv       int
	log      []logged // the events after minRV
	minRV    int      // a watch from before it is Gone
	watchers map[*fakeWatch]bool
	streams  int // watches that were streamed
	requests []fakeRequest

	down       bool // every request answers 503
	ownersFail bool // owner GETs answer 500
	// goneStatus answers a watch from a compacted version with HTTP 410
	// instead of a 200 stream holding one ERROR event (servers do both).
	goneStatus bool
	// onList and onWatch, when set, answer in place of the server.
	onList, onWatch func(w http.ResponseWriter, r *http.Request) bool
}

type logged struct {
	rv   int
	line []byte
}

type fakeWatch struct {
	seq  int // the how-manieth stream
	ch   chan []byte
	drop chan struct{} // closed: end the stream
	// cut ends the stream in the middle of an event.
	cut bool
}

type fakeRequest struct {
	method, path string
	query        url.Values
	header       http.Header
	client       string // the client certificate's common name
}

// The API's objects, as the fake server writes them.
type tMeta struct {
	Name              string            `json:"name,omitempty"`
	Namespace         string            `json:"namespace,omitempty"`
	UID               string            `json:"uid,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	CreationTimestamp string            `json:"creationTimestamp,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	OwnerReferences   []tOwner          `json:"ownerReferences,omitempty"`
	ManagedFields     []map[string]any  `json:"managedFields,omitempty"`
}

type tOwner struct {
	APIVersion         string `json:"apiVersion"`
	Kind               string `json:"kind"`
	Name               string `json:"name"`
	UID                string `json:"uid"`
	Controller         *bool  `json:"controller,omitempty"`
	BlockOwnerDeletion *bool  `json:"blockOwnerDeletion,omitempty"`
}

type tContainer struct {
	Name  string `json:"name"`
	Image string `json:"image,omitempty"`
}

type tContainerStatus struct {
	Name        string `json:"name"`
	ContainerID string `json:"containerID,omitempty"`
	Ready       bool   `json:"ready"`
}

type tPod struct {
	Kind       string `json:"kind,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
	Metadata   tMeta  `json:"metadata"`
	Spec       struct {
		NodeName            string       `json:"nodeName,omitempty"`
		Containers          []tContainer `json:"containers"`
		InitContainers      []tContainer `json:"initContainers,omitempty"`
		EphemeralContainers []tContainer `json:"ephemeralContainers,omitempty"`
	} `json:"spec"`
	Status struct {
		Phase                      string             `json:"phase,omitempty"`
		InitContainerStatuses      []tContainerStatus `json:"initContainerStatuses,omitempty"`
		ContainerStatuses          []tContainerStatus `json:"containerStatuses,omitempty"`
		EphemeralContainerStatuses []tContainerStatus `json:"ephemeralContainerStatuses,omitempty"`
	} `json:"status"`
}

type tOwnerObject struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Metadata   tMeta  `json:"metadata"`
	Spec       any    `json:"spec,omitempty"`
}

func newFakeAPI(t *testing.T, node string) *fakeAPI { return newFakeAPITLS(t, node, nil) }

// newFakeAPITLS serves HTTPS with tlsCfg (plain HTTP when nil).
func newFakeAPITLS(t *testing.T, node string, tlsCfg *tls.Config) *fakeAPI {
	f := &fakeAPI{t: t, node: node, pods: map[string]tPod{}, owners: map[string]any{}, rv: 100,
		watchers: map[*fakeWatch]bool{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	if tlsCfg != nil {
		f.srv.TLS = tlsCfg
		f.srv.StartTLS()
	} else {
		f.srv.Start()
	}
	t.Cleanup(func() {
		f.dropWatches(false)
		f.srv.Close()
	})
	return f
}

func statusJSON(code int, reason, msg string) string {
	b, _ := json.Marshal(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure",
		"reason": reason, "message": msg, "code": code})
	return string(b)
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintln(w, statusJSON(code, reason, msg))
}

func eventLine(typ string, obj any) []byte {
	b, err := json.Marshal(map[string]any{"type": typ, "object": obj})
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// broadcastLocked logs an event at the current version and sends it to
// the watchers.
func (f *fakeAPI) broadcastLocked(line []byte) {
	f.log = append(f.log, logged{f.rv, line})
	for fw := range f.watchers {
		select {
		case fw.ch <- line:
		default:
			f.t.Errorf("a watcher is too slow")
		}
	}
}

// setPod adds or changes a pod.
func (f *fakeAPI) setPod(p tPod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	typ := "MODIFIED"
	if _, ok := f.pods[p.Metadata.UID]; !ok {
		typ = "ADDED"
	}
	f.rv++
	p.Kind, p.APIVersion = "Pod", "v1"
	p.Metadata.ResourceVersion = strconv.Itoa(f.rv)
	f.pods[p.Metadata.UID] = p
	f.broadcastLocked(eventLine(typ, p))
}

// deletePod deletes a pod.
func (f *fakeAPI) deletePod(uid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[uid]
	if !ok {
		f.t.Fatalf("no pod %s to delete", uid)
	}
	delete(f.pods, uid)
	f.rv++
	p.Metadata.ResourceVersion = strconv.Itoa(f.rv)
	f.broadcastLocked(eventLine("DELETED", p))
}

// deleteUnseen deletes a pod while the watches are down, and forgets the
// history before it (as etcd's compaction does): a watch from before it
// is Gone.
func (f *fakeAPI) deleteUnseen(uid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.pods[uid]; !ok {
		f.t.Fatalf("no pod %s to delete", uid)
	}
	for fw := range f.watchers {
		close(fw.drop)
		delete(f.watchers, fw)
	}
	delete(f.pods, uid)
	f.rv++
	f.minRV, f.log = f.rv, nil
}

// bookmark moves the version on (as changes the node's watch does not
// see do) and tells the watchers with a bookmark.
func (f *fakeAPI) bookmark() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv += 5
	f.broadcastLocked(eventLine("BOOKMARK", map[string]any{"kind": "Pod", "apiVersion": "v1",
		"metadata": map[string]any{"resourceVersion": strconv.Itoa(f.rv)}}))
	return f.rv
}

// inject sends raw bytes to the watchers, unlogged.
func (f *fakeAPI) inject(line string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for fw := range f.watchers {
		fw.ch <- []byte(line)
	}
}

// streaming tells whether the nth watch stream is open.
func (f *fakeAPI) streaming(n int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for fw := range f.watchers {
		if fw.seq == n {
			return true
		}
	}
	return false
}

// dropWatches ends the open watches: between two events, or (cut) in the
// middle of one.
func (f *fakeAPI) dropWatches(cut bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for fw := range f.watchers {
		fw.cut = cut
		close(fw.drop)
		delete(f.watchers, fw)
	}
}

func (f *fakeAPI) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *fakeAPI) setOwnersFail(fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ownersFail = fail
}

func (f *fakeAPI) addReplicaSet(ns, name, uid string, owner *tOwner) {
	f.addOwner("replicasets", "apps/v1", "ReplicaSet", ns, name, uid, owner)
}

func (f *fakeAPI) addJob(ns, name, uid string, owner *tOwner) {
	f.addOwner("jobs", "batch/v1", "Job", ns, name, uid, owner)
}

func (f *fakeAPI) addOwner(resource, apiVersion, kind, ns, name, uid string, owner *tOwner) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := tOwnerObject{Kind: kind, APIVersion: apiVersion, Metadata: tMeta{Namespace: ns, Name: name, UID: uid, ResourceVersion: "7",
		Labels: map[string]string{"pod-template-hash": "abc"}}, Spec: map[string]any{"replicas": 2}}
	if owner != nil {
		o.Metadata.OwnerReferences = []tOwner{*owner}
	}
	f.owners[resource+"/"+ns+"/"+name] = o
}

// podRequests returns the requests of pods: lists and watches.
func (f *fakeAPI) podRequests() (lists, watches []fakeRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.podRequestsLocked()
}

func (f *fakeAPI) podRequestsLocked() (lists, watches []fakeRequest) {
	for _, r := range f.requests {
		if r.path != podsPath {
			continue
		}
		if r.query.Get("watch") == "true" {
			watches = append(watches, r)
		} else {
			lists = append(lists, r)
		}
	}
	return lists, watches
}

func (f *fakeAPI) allRequests() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	client := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		client = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	f.mu.Lock()
	f.requests = append(f.requests, fakeRequest{r.Method, r.URL.Path, r.URL.Query(), r.Header.Clone(), client})
	down := f.down
	f.mu.Unlock()
	if down {
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the API server is down")
		return
	}
	if r.Method != http.MethodGet {
		writeStatus(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "read only")
		return
	}
	q := r.URL.Query()
	switch {
	case r.URL.Path == podsPath:
		if q.Get("fieldSelector") != "spec.nodeName="+f.node {
			writeStatus(w, http.StatusForbidden, "Forbidden", "pods of other nodes are not for this agent")
			return
		}
		if q.Get("watch") == "true" {
			if f.onWatch != nil && f.onWatch(w, r) {
				return
			}
			f.watch(w, r)
			return
		}
		if f.onList != nil && f.onList(w, r) {
			return
		}
		f.list(w, q)
	case strings.HasPrefix(r.URL.Path, "/apis/apps/v1/namespaces/"), strings.HasPrefix(r.URL.Path, "/apis/batch/v1/namespaces/"):
		// /apis/GROUP/v1/namespaces/NS/RESOURCE/NAME
		parts := strings.Split(r.URL.Path, "/")
		f.mu.Lock()
		fail := f.ownersFail
		var obj any
		if len(parts) == 8 {
			obj = f.owners[parts[6]+"/"+parts[5]+"/"+parts[7]]
		}
		f.mu.Unlock()
		switch {
		case fail:
			writeStatus(w, http.StatusInternalServerError, "InternalError", "etcdserver: request timed out")
		case obj == nil:
			writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("%s not found", r.URL.Path))
		default:
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(obj)
		}
	default:
		writeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
	}
}

// list answers a page of the node's pods, in UID order. A continue
// token is the offset of the page.
func (f *fakeAPI) list(w http.ResponseWriter, q url.Values) {
	if q.Get("continue") != "" && q.Get("resourceVersion") != "" {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "specifying resource version is not allowed when using continue")
		return
	}
	f.mu.Lock()
	uids := slices.Sorted(func(yield func(string) bool) {
		for uid := range f.pods {
			if !yield(uid) {
				return
			}
		}
	})
	off := 0
	if c := q.Get("continue"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 0 || n > len(uids) {
			f.mu.Unlock()
			writeStatus(w, http.StatusBadRequest, "BadRequest", "bad continue token")
			return
		}
		off = n
	}
	end := len(uids)
	if l, _ := strconv.Atoi(q.Get("limit")); l > 0 && off+l < end {
		end = off + l
	}
	items := make([]tPod, 0, end-off)
	for _, uid := range uids[off:end] {
		items = append(items, f.pods[uid])
	}
	meta := map[string]any{"resourceVersion": strconv.Itoa(f.rv)}
	if end < len(uids) {
		meta["continue"] = strconv.Itoa(end)
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": items})
}

// watch streams the events after the version asked for, then those to
// come, until dropped.
func (f *fakeAPI) watch(w http.ResponseWriter, r *http.Request) {
	from, err := strconv.Atoi(r.URL.Query().Get("resourceVersion"))
	if err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "a watch needs a resourceVersion")
		return
	}
	fw := &fakeWatch{ch: make(chan []byte, 1024), drop: make(chan struct{})}
	f.mu.Lock()
	if from < f.minRV {
		goneStatus, msg := f.goneStatus, fmt.Sprintf("too old resource version: %d (%d)", from, f.minRV)
		f.mu.Unlock()
		if goneStatus {
			writeStatus(w, http.StatusGone, "Expired", msg)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(eventLine("ERROR", json.RawMessage(statusJSON(http.StatusGone, "Expired", msg))))
		return
	}
	for _, l := range f.log {
		if l.rv > from {
			fw.ch <- l.line
		}
	}
	f.streams++
	fw.seq = f.streams
	f.watchers[fw] = true
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	fl.Flush()
	for {
		select {
		case line := <-fw.ch:
			w.Write(line)
			fl.Flush()
		case <-fw.drop:
			f.mu.Lock()
			cut := fw.cut
			f.mu.Unlock()
			if cut {
				w.Write([]byte(`{"type":"ADDED","object":{"metadata":{"na`))
				fl.Flush()
				panic(http.ErrAbortHandler) // the connection ends mid-event
			}
			for { // what was sent before the drop is written first
				select {
				case line := <-fw.ch:
					w.Write(line)
				default:
					fl.Flush()
					return
				}
			}
		case <-r.Context().Done():
			f.mu.Lock()
			delete(f.watchers, fw)
			f.mu.Unlock()
			return
		}
	}
}
