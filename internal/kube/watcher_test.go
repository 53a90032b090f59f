package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blindspot-dev/blindspot/internal/container"
)

const (
	node     = "node-a"
	podUID   = "5f3c8a1e-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
	appID    = "3f7b2c9d81e04a56b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4"
	sidecarD = "aaaabbbbccccddddeeeeffff00001111222233334444555566667777888899990"
	token    = "test-token"
)

func controller(kind, name, uid string) []tOwner {
	yes := true
	api := "apps/v1"
	if kind == "Job" || kind == "CronJob" {
		api = "batch/v1"
	}
	return []tOwner{{APIVersion: api, Kind: kind, Name: name, UID: uid, Controller: &yes, BlockOwnerDeletion: &yes}}
}

// newPod is a pod of the node as the API sends it, with the fields the
// watcher skips too.
func newPod(uid string, owners []tOwner, containers ...string) tPod {
	var p tPod
	p.Metadata = tMeta{
		Namespace: "shop", Name: "checkout-7d9f8b6c5-x2x4z", UID: uid, CreationTimestamp: "2026-12-01T21:00:00Z",
		Labels:          map[string]string{AppNameLabel: "checkout", "pod-template-hash": "7d9f8b6c5"},
		Annotations:     map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-12-01T20:59:00Z"},
		OwnerReferences: owners,
		ManagedFields:   []map[string]any{{"manager": "kubelet", "operation": "Update", "fieldsV1": map[string]any{"f:status": map[string]any{}}}},
	}
	p.Spec.NodeName = node
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, tContainer{Name: c, Image: "registry.example/" + c})
	}
	p.Status.Phase = "Running"
	return p
}

// syncBuffer is a log the watcher writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newWatcher returns a watcher of the fake API's node, with short
// retries, not started.
func newWatcher(t *testing.T, f *fakeAPI, opts Options) (*Watcher, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if opts.Node == "" {
		opts.Node = node
	}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := NewForConfig(&ClientConfig{Server: f.srv.URL, Token: token}, opts)
	if err != nil {
		t.Fatal(err)
	}
	w.retry = backoff{min: 5 * time.Millisecond, max: 50 * time.Millisecond}
	return w, logs
}

func run(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w.Start(ctx)
}

func waitSynced(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !w.WaitSynced(ctx) {
		t.Fatalf("pods not synced: %+v", w.Status())
	}
}

// start runs a watcher of the fake API and waits for its first list.
func start(t *testing.T, f *fakeAPI, opts Options) (*Watcher, *syncBuffer) {
	t.Helper()
	w, logs := newWatcher(t, f, opts)
	run(t, w)
	waitSynced(t, w)
	return w, logs
}

// eventually polls cond (bounded: 10s) for the watcher to deliver.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// watching waits until the nth watch stream is open.
func watching(t *testing.T, f *fakeAPI, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("watch stream %d", n), func() bool { return f.streaming(n) })
}

func found(w *Watcher, uid string) bool {
	_, ok := w.Lookup(container.Info{PodUID: uid})
	return ok
}

func TestWatchesOnlyItsNode(t *testing.T) {
	f := newFakeAPI(t, node)
	f.setPod(newPod(podUID, nil, "app"))
	w, _ := start(t, f, Options{})
	watching(t, f, 1)
	for _, r := range f.allRequests() {
		if r.method != http.MethodGet || r.path != podsPath {
			t.Errorf("%s %s: the agent only lists and watches pods of all namespaces", r.method, r.path)
		}
		if sel := r.query.Get("fieldSelector"); sel != "spec.nodeName="+node {
			t.Errorf("pods asked for with field selector %q, want spec.nodeName=%s", sel, node)
		}
		if ua, auth, accept := r.header.Get("User-Agent"), r.header.Get("Authorization"), r.header.Get("Accept"); ua != "blindspot" || auth != "Bearer "+token || accept != "application/json" {
			t.Errorf("request headers User-Agent %q, Authorization %q, Accept %q", ua, auth, accept)
		}
	}
	lists, watches := f.podRequests()
	if len(lists) != 1 || len(watches) != 1 {
		t.Fatalf("%d lists and %d watches of pods, want one each", len(lists), len(watches))
	}
	if l := lists[0].query; l.Get("limit") != "500" || l.Get("resourceVersion") != "0" {
		t.Errorf("first list %v: want pages of 500 from the server's cache (resourceVersion 0)", l)
	}
	wq := watches[0].query
	if wq.Get("resourceVersion") != "101" || wq.Get("allowWatchBookmarks") != "true" {
		t.Errorf("watch %v: want it from the list's version 101, with bookmarks", wq)
	}
	if s, err := strconv.Atoi(wq.Get("timeoutSeconds")); err != nil || s < 300 || s >= 600 {
		t.Errorf("watch timeoutSeconds %q, want 5 to 10 minutes", wq.Get("timeoutSeconds"))
	}
	if st := w.Status(); st.State != Connected || st.Pods != 1 || st.Node != node {
		t.Errorf("status %+v", st)
	}
}

func TestPodAppearsChangesOwnerAndLeaves(t *testing.T) {
	f := newFakeAPI(t, node)
	f.addReplicaSet("shop", "checkout-7d9f8b6c5", "rs-1", &controller("Deployment", "checkout", "dep-checkout")[0])
	f.addReplicaSet("shop", "checkout-canary-5c6d7", "rs-2", &controller("Deployment", "checkout-canary", "dep-canary")[0])
	w, _ := start(t, f, Options{})
	proc := container.Info{ID: appID, PodUID: podUID, Runtime: "containerd"}
	if _, ok := w.Lookup(proc); ok {
		t.Fatal("a pod found before it exists")
	}

	// Appears, before its container's ID reaches the status: found by UID.
	p := newPod(podUID, controller("ReplicaSet", "checkout-7d9f8b6c5", "rs-1"), "app")
	f.setPod(p)
	var m Meta
	eventually(t, "the pod", func() (ok bool) { m, ok = w.Lookup(proc); return })
	want := Meta{
		Namespace: "shop", Pod: p.Metadata.Name, PodUID: podUID, Node: node, Container: "app",
		Owners: Owners{ReplicaSet: "checkout-7d9f8b6c5", Deployment: "checkout", WorkloadKind: "Deployment", Workload: "checkout"},
	}
	checkMeta(t, m, want)
	if m.Labels[AppNameLabel] != "checkout" || len(m.Labels) != 2 {
		t.Errorf("labels = %v", m.Labels)
	}

	// A sidecar is added and both IDs reach the status: each process gets
	// its own container's name; the pod UID alone no longer tells.
	p.Spec.Containers = append(p.Spec.Containers, tContainer{Name: "proxy"})
	p.Status.ContainerStatuses = []tContainerStatus{
		{Name: "app", ContainerID: "containerd://" + appID},
		{Name: "proxy", ContainerID: "containerd://" + sidecarD},
	}
	f.setPod(p)
	eventually(t, "the sidecar", func() bool {
		m, _ := w.Lookup(container.Info{ID: sidecarD, PodUID: podUID})
		return m.Container == "proxy"
	})
	if m, _ := w.Lookup(proc); m.Container != "app" {
		t.Errorf("app process in container %q", m.Container)
	}
	if m, ok := w.Lookup(container.Info{PodUID: podUID}); !ok || m.Container != "" {
		t.Errorf("by pod UID alone in a two-container pod: container %q, %v; want none", m.Container, ok)
	}
	// A container ID of another pod's UID is not this pod's.
	if _, ok := w.Lookup(container.Info{ID: appID, PodUID: "0000"}); ok {
		t.Error("a container found under another pod's UID")
	}

	// Init and ephemeral containers are known by their IDs too.
	initID, debugID := strings.Repeat("1", 64), strings.Repeat("2", 64)
	p.Spec.InitContainers = []tContainer{{Name: "migrate"}}
	p.Status.InitContainerStatuses = []tContainerStatus{{Name: "migrate", ContainerID: "cri-o://" + initID}}
	p.Status.EphemeralContainerStatuses = []tContainerStatus{{Name: "debugger", ContainerID: "docker://" + debugID}}
	f.setPod(p)
	eventually(t, "the init and ephemeral containers", func() bool {
		a, _ := w.Lookup(container.Info{ID: initID})
		b, _ := w.Lookup(container.Info{ID: debugID})
		return a.Container == "migrate" && b.Container == "debugger"
	})

	// Changes owner: adopted by another ReplicaSet of another Deployment.
	p.Metadata.OwnerReferences = controller("ReplicaSet", "checkout-canary-5c6d7", "rs-2")
	f.setPod(p)
	eventually(t, "the new owner", func() bool { m, _ := w.Lookup(proc); return m.Owners.Deployment == "checkout-canary" })
	m, _ = w.Lookup(proc)
	want.Owners = Owners{ReplicaSet: "checkout-canary-5c6d7", Deployment: "checkout-canary", WorkloadKind: "Deployment", Workload: "checkout-canary"}
	checkMeta(t, m, want)

	// Orphaned: no controller, no workload.
	p.Metadata.OwnerReferences = nil
	f.setPod(p)
	eventually(t, "the orphan", func() bool { m, _ := w.Lookup(proc); return m.Owners == Owners{} })

	// Leaves.
	f.deletePod(podUID)
	eventually(t, "the pod to go", func() bool { _, ok := w.Lookup(proc); return !ok })
	for _, id := range []string{sidecarD, initID, debugID} {
		if _, ok := w.Lookup(container.Info{ID: id}); ok {
			t.Errorf("container %s is still indexed", id[:8])
		}
	}
	if st := w.Status(); st.State != Connected || st.Pods != 0 || st.Node != node {
		t.Errorf("status %+v", st)
	}
	if lists, _ := f.podRequests(); len(lists) != 1 {
		t.Errorf("%d lists: every change came by the watch, want 1", len(lists))
	}
}

func checkMeta(t *testing.T, got, want Meta) {
	t.Helper()
	got.Labels, want.Labels = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("meta = %+v\nwant   %+v", got, want)
	}
}

func TestWorkloadKinds(t *testing.T) {
	f := newFakeAPI(t, node)
	yes := true
	f.addJob("shop", "report-29000000", "job-1", &tOwner{APIVersion: "batch/v1", Kind: "CronJob", Name: "report", UID: "cj-1", Controller: &yes})
	f.addJob("shop", "migrate", "job-2", nil)
	f.addReplicaSet("shop", "lonely", "rs-3", nil)
	f.addReplicaSet("shop", "web-6f7", "rs-4", &tOwner{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "web", UID: "ro-1", Controller: &yes})
	// An owner that is not the controller is no workload.
	f.addReplicaSet("shop", "adopted", "rs-6", &tOwner{APIVersion: "apps/v1", Kind: "Deployment", Name: "not-controller", UID: "dep-x"})
	w, _ := start(t, f, Options{})
	for i, c := range []struct {
		owner []tOwner
		want  Owners
	}{
		{controller("StatefulSet", "db", "ss-1"), Owners{StatefulSet: "db", WorkloadKind: "StatefulSet", Workload: "db"}},
		{controller("DaemonSet", "logs", "ds-1"), Owners{DaemonSet: "logs", WorkloadKind: "DaemonSet", Workload: "logs"}},
		{controller("Job", "report-29000000", "job-1"), Owners{Job: "report-29000000", CronJob: "report", WorkloadKind: "CronJob", Workload: "report"}},
		{controller("Job", "migrate", "job-2"), Owners{Job: "migrate", WorkloadKind: "Job", Workload: "migrate"}},
		{controller("ReplicaSet", "lonely", "rs-3"), Owners{ReplicaSet: "lonely", WorkloadKind: "ReplicaSet", Workload: "lonely"}},
		{controller("ReplicaSet", "web-6f7", "rs-4"), Owners{ReplicaSet: "web-6f7", WorkloadKind: "Rollout", Workload: "web"}},
		{controller("ReplicaSet", "adopted", "rs-6"), Owners{ReplicaSet: "adopted", WorkloadKind: "ReplicaSet", Workload: "adopted"}},
		// The ReplicaSet under that name is another object: no deployment.
		{controller("ReplicaSet", "lonely", "rs-stale"), Owners{ReplicaSet: "lonely"}},
		// A ReplicaSet that does not exist: the workload is not guessed.
		{controller("ReplicaSet", "ghost-123", "rs-5"), Owners{ReplicaSet: "ghost-123"}},
		// An owner reference that is not the controller: a bare pod.
		{[]tOwner{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "lonely", UID: "rs-3"}}, Owners{}},
		{nil, Owners{}},
	} {
		uid := podUID[:35] + string(rune('a'+i))
		p := newPod(uid, c.owner, "app")
		p.Metadata.Name = "p"
		f.setPod(p)
		var m Meta
		eventually(t, "pod", func() (ok bool) { m, ok = w.Lookup(container.Info{PodUID: uid}); return })
		if m.Owners != c.want {
			t.Errorf("owner %+v: %+v, want %+v", c.owner, m.Owners, c.want)
		}
		f.deletePod(uid)
		eventually(t, "pod gone", func() bool { return !found(w, uid) })
	}
}

func ownerRef(kind, name, uid string) ownerRefs {
	yes := true
	return ownerRefs{&ownerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: uid, Controller: &yes}}
}

func (f *fakeAPI) ownerGets() int {
	n := 0
	for _, r := range f.allRequests() {
		if strings.HasPrefix(r.path, "/apis/") {
			n++
		}
	}
	return n
}

// TestOwnerCache: the pods of one ReplicaSet cost one GET of it; an
// answer is asked again after its TTL, a failure sooner.
func TestOwnerCache(t *testing.T) {
	f := newFakeAPI(t, node)
	f.addReplicaSet("shop", "checkout-7d9f8b6c5", "rs-1", &controller("Deployment", "checkout", "dep-1")[0])
	w, _ := newWatcher(t, f, Options{})
	c := newOwnerCache(w.client.getOwner, time.Minute, 2)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	meta := &objectMeta{OwnerReferences: ownerRef("ReplicaSet", "checkout-7d9f8b6c5", "rs-1")}
	for range 5 {
		if o := c.resolve(context.Background(), "shop", meta); o.Deployment != "checkout" {
			t.Fatalf("owners %+v", o)
		}
	}
	if c.gets != 1 || f.ownerGets() != 1 {
		t.Errorf("%d GETs (%d at the server) for 5 pods of one ReplicaSet, want 1", c.gets, f.ownerGets())
	}
	now = now.Add(2 * time.Minute)
	c.resolve(context.Background(), "shop", meta)
	if c.gets != 2 {
		t.Errorf("%d GETs after the TTL, want 2", c.gets)
	}
	// The API fails: not cached for the whole TTL.
	f.setOwnersFail(true)
	now = now.Add(2 * time.Minute)
	if o := c.resolve(context.Background(), "shop", meta); o.Deployment != "" || o.ReplicaSet != "checkout-7d9f8b6c5" {
		t.Errorf("owners while the API fails: %+v", o)
	}
	c.resolve(context.Background(), "shop", meta)
	if c.gets != 3 {
		t.Errorf("%d GETs, want a failure remembered for %v", c.gets, c.failTTL)
	}
	f.setOwnersFail(false)
	now = now.Add(c.failTTL + time.Second)
	if o := c.resolve(context.Background(), "shop", meta); o.Deployment != "checkout" {
		t.Errorf("owners once the API answers again: %+v", o)
	}
	if c.gets != 4 || f.ownerGets() != 4 {
		t.Errorf("%d GETs (%d at the server), want a failure retried after %v", c.gets, f.ownerGets(), c.failTTL)
	}
	// Bounded.
	for i := range 10 {
		c.resolve(context.Background(), "shop", &objectMeta{OwnerReferences: ownerRef("ReplicaSet", "x", "u"+string(rune('0'+i)))})
	}
	if len(c.entries) > 2 {
		t.Errorf("%d cached owners, bound 2", len(c.entries))
	}
	// A name that is no object's is not put in a path.
	if o := c.resolve(context.Background(), "shop", &objectMeta{OwnerReferences: ownerRef("ReplicaSet", "../../../api/v1/secrets", "u-x")}); o.Deployment != "" {
		t.Errorf("owners %+v", o)
	}
	for _, r := range f.allRequests() {
		if strings.Contains(r.path, "secrets") {
			t.Errorf("asked for %s", r.path)
		}
	}
}

// TestResyncRetriesOwners: an owner that could not be read is read again
// at the next resync, without a new list or watch.
func TestResyncRetriesOwners(t *testing.T) {
	f := newFakeAPI(t, node)
	f.addReplicaSet("shop", "checkout-7d9f8b6c5", "rs-1", &controller("Deployment", "checkout", "dep-1")[0])
	f.setOwnersFail(true)
	f.setPod(newPod(podUID, controller("ReplicaSet", "checkout-7d9f8b6c5", "rs-1"), "app"))
	w, _ := start(t, f, Options{Resync: 20 * time.Millisecond, OwnerTTL: 10 * time.Millisecond})
	m, ok := w.Lookup(container.Info{PodUID: podUID})
	if !ok || m.Owners != (Owners{ReplicaSet: "checkout-7d9f8b6c5"}) {
		t.Fatalf("while the ReplicaSet cannot be read: %+v, %v", m.Owners, ok)
	}
	watching(t, f, 1)
	f.setOwnersFail(false)
	eventually(t, "the deployment", func() bool {
		m, _ := w.Lookup(container.Info{PodUID: podUID})
		return m.Owners.Deployment == "checkout"
	})
	if lists, watches := f.podRequests(); len(lists) != 1 || len(watches) != 1 {
		t.Errorf("%d lists, %d watches: want the resync to have read the owner", len(lists), len(watches))
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	w, err := NewForConfig(&ClientConfig{Server: "http://" + addr}, Options{Node: node, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	w.retry = backoff{min: 5 * time.Millisecond, max: 50 * time.Millisecond}
	run(t, w)
	eventually(t, "unreachable", func() bool { return w.Status().State == Unreachable })
	if st := w.Status(); !strings.Contains(st.Error, "connection refused") {
		t.Errorf("status %+v does not say why", st)
	}
	if _, ok := w.Lookup(container.Info{ID: appID, PodUID: podUID}); ok {
		t.Error("lookup succeeded with no pods")
	}
}

func TestNoNode(t *testing.T) {
	if _, err := NewForConfig(&ClientConfig{Server: "https://127.0.0.1:6443"}, Options{}); !errors.Is(err, ErrNoNode) {
		t.Errorf("err = %v, want ErrNoNode", err)
	}
}

// TestPagination: a node's pods come in pages, each asked for with the
// token the previous one gave.
func TestPagination(t *testing.T) {
	f := newFakeAPI(t, node)
	for i := range 5 {
		f.setPod(newPod(fmt.Sprintf("uid-%d", i), nil, "app"))
	}
	w, _ := newWatcher(t, f, Options{})
	w.pageSize = 2
	run(t, w)
	waitSynced(t, w)
	for i := range 5 {
		if !found(w, fmt.Sprintf("uid-%d", i)) {
			t.Errorf("pod %d not listed", i)
		}
	}
	lists, _ := f.podRequests()
	if len(lists) != 3 {
		t.Fatalf("%d list requests for 5 pods by 2, want 3", len(lists))
	}
	for i, want := range []string{"", "2", "4"} {
		q := lists[i].query
		if q.Get("limit") != "2" || q.Get("continue") != want {
			t.Errorf("page %d asked with %v, want limit 2, continue %q", i, q, want)
		}
		if i > 0 && q.Has("resourceVersion") {
			t.Errorf("page %d asked with a resourceVersion and a continue token", i)
		}
	}
	if st := w.Status(); st.Pods != 5 || st.State != Connected {
		t.Errorf("status %+v", st)
	}
}

// TestGoneRelists: a watch from a version the server no longer keeps is
// answered 410 Gone (as an ERROR event, or as the response's status):
// the pods are listed again, at the latest version, and a pod deleted
// while the watch was down is gone.
func TestGoneRelists(t *testing.T) {
	for _, asStatus := range []bool{false, true} {
		t.Run(fmt.Sprintf("status=%v", asStatus), func(t *testing.T) {
			f := newFakeAPI(t, node)
			f.goneStatus = asStatus
			f.setPod(newPod("uid-a", nil, "app"))
			f.setPod(newPod("uid-b", nil, "app"))
			w, _ := start(t, f, Options{})
			watching(t, f, 1)
			f.deleteUnseen("uid-b")
			eventually(t, "the deleted pod to go", func() bool { return !found(w, "uid-b") })
			if !found(w, "uid-a") {
				t.Error("the pod that stayed is gone")
			}
			lists, watches := f.podRequests()
			if len(lists) != 2 || len(watches) < 2 {
				t.Fatalf("%d lists, %d watches; want a watch that is refused, then one list", len(lists), len(watches))
			}
			if watches[1].query.Get("resourceVersion") != "102" {
				t.Errorf("second watch from %q, want 102", watches[1].query.Get("resourceVersion"))
			}
			if lists[1].query.Has("resourceVersion") {
				t.Errorf("list after 410 asked for version %q, want the latest", lists[1].query.Get("resourceVersion"))
			}
			eventually(t, "connected", func() bool { return w.Status().State == Connected && w.Status().Pods == 1 })
			// The watch goes on from the new list's version.
			watching(t, f, 2)
			f.setPod(newPod("uid-c", nil, "app"))
			eventually(t, "a pod after the re-list", func() bool { return found(w, "uid-c") })
		})
	}
}

// TestDroppedWatch: a watch the server ends between two events is
// opened again from the last version seen (a bookmark's too), without a
// list; one cut in the middle of an event is an error, and the pods are
// listed again.
func TestDroppedWatch(t *testing.T) {
	f := newFakeAPI(t, node)
	f.setPod(newPod("uid-a", nil, "app"))
	w, logs := start(t, f, Options{})
	watching(t, f, 1)
	f.dropWatches(false)
	f.setPod(newPod("uid-b", nil, "app")) // while no watch is open, maybe
	eventually(t, "the pod added while the watch was down", func() bool { return found(w, "uid-b") })
	watching(t, f, 2)
	rv := f.bookmark()
	f.dropWatches(false)
	watching(t, f, 3)
	lists, watches := f.podRequests()
	if len(lists) != 1 {
		t.Errorf("%d lists, want the watch to go on without one", len(lists))
	}
	if got := watches[2].query.Get("resourceVersion"); got != strconv.Itoa(rv) {
		t.Errorf("watch after a bookmark from %q, want the bookmark's %d", got, rv)
	}

	f.dropWatches(true)
	eventually(t, "a list after a cut watch", func() bool { l, _ := f.podRequests(); return len(l) == 2 })
	eventually(t, "connected", func() bool { return w.Status().State == Connected })
	if st := w.Status(); st.Pods != 2 {
		t.Errorf("status %+v", st)
	}
	if !strings.Contains(logs.String(), "unexpected EOF") {
		t.Errorf("the cut watch is not logged:\n%s", logs)
	}
}

// TestRetriesUntilReachable: while the API fails the watcher says so and
// retries; when it answers again the pods are listed and the state is
// connected; the same when it fails after the first list.
func TestRetriesUntilReachable(t *testing.T) {
	f := newFakeAPI(t, node)
	f.setPod(newPod("uid-a", nil, "app"))
	f.setDown(true)
	w, _ := newWatcher(t, f, Options{})
	if st := w.Status(); st.State != Connecting {
		t.Errorf("before it starts: %+v", st)
	}
	run(t, w)
	eventually(t, "unreachable", func() bool { return w.Status().State == Unreachable })
	if st := w.Status(); !strings.Contains(st.Error, "503 Service Unavailable") {
		t.Errorf("status %+v does not say why", st)
	}
	eventually(t, "retries", func() bool { l, _ := f.podRequests(); return len(l) >= 3 })
	select {
	case <-w.synced:
		t.Fatal("synced without a list")
	default:
	}
	f.setDown(false)
	waitSynced(t, w)
	eventually(t, "connected", func() bool { return w.Status().State == Connected })
	if st := w.Status(); st.Error != "" || st.Pods != 1 {
		t.Errorf("status %+v", st)
	}

	// Down again, with the watch cut: unreachable, then back with the pod
	// added meanwhile.
	watching(t, f, 1)
	f.setDown(true)
	f.dropWatches(true)
	eventually(t, "unreachable again", func() bool { return w.Status().State == Unreachable })
	f.setPod(newPod("uid-b", nil, "app"))
	f.setDown(false)
	eventually(t, "reachable again", func() bool { return w.Status().State == Connected && found(w, "uid-b") })
}

func TestBackoff(t *testing.T) {
	b := backoff{min: time.Second, max: 30 * time.Second}
	step := time.Second
	seen := map[time.Duration]bool{}
	for range 12 {
		d := b.next()
		if d < step/2 || d > step {
			t.Errorf("delay %v, want between %v and %v", d, step/2, step)
		}
		if step == 30*time.Second {
			seen[d] = true
		}
		step = min(2*step, 30*time.Second)
	}
	if len(seen) < 2 {
		t.Errorf("delays at the cap %v: want them spread", seen)
	}
	b.reset()
	if d := b.next(); d < time.Second/2 || d > time.Second {
		t.Errorf("after a reset: %v", d)
	}
}

// TestMalformedEvents: an event that is not one is an error that ends the
// watch; the pods are listed again, nothing else changes.
func TestMalformedEvents(t *testing.T) {
	f := newFakeAPI(t, node)
	f.setPod(newPod("uid-a", nil, "app"))
	w, logs := start(t, f, Options{})
	for i, c := range []struct{ line, logged string }{
		{"garbage\n", "invalid character"},
		{`{"type":"ADDED","object":{"metadata":{"uid":1}}}` + "\n", "cannot unmarshal number"},
		{`{"type":"EXPLODED","object":{}}` + "\n", `unknown type \"EXPLODED\"`},
		{`{"type":"ADDED","object":{"metadata":{"name":"x","namespace":"y"}}}` + "\n", "without uid"},
		{`{"type":"ADDED"}` + "\n", "without an object"},
		{`{"type":"ERROR","object":{"kind":"Status","code":500,"message":"etcd is sad"}}` + "\n", "etcd is sad"},
		{`[1,2,3]` + "\n", "cannot unmarshal array"},
		{`{"type":"MODIFIED","object":{"metadata":{"uid":"uid-a","name":"p","namespace":"shop"},"spec":{"containers":"app"}}}` + "\n", `app where \"[\" was expected`},
	} {
		watching(t, f, i+1)
		f.inject(c.line)
		eventually(t, "a list after "+c.line, func() bool { l, _ := f.podRequests(); return len(l) == i+2 })
		eventually(t, "connected", func() bool { return w.Status().State == Connected })
		if !strings.Contains(logs.String(), c.logged) {
			t.Errorf("%q: the log does not say %q", c.line, c.logged)
		}
		if st := w.Status(); st.Pods != 1 || !found(w, "uid-a") {
			t.Errorf("after %q: %+v", c.line, st)
		}
	}
}

// TestOversizedObject: an event or a listed pod past the bound is an
// error, read no further than the bound, and the watcher goes on.
func TestOversizedObject(t *testing.T) {
	const sent = 256 << 20
	huge := func(w http.ResponseWriter, prefix string) int64 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		n, _ := w.Write([]byte(prefix))
		written := int64(n)
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		for written < sent {
			n, err := w.Write(chunk)
			written += int64(n)
			if err != nil {
				break
			}
		}
		return written
	}
	for _, list := range []bool{false, true} {
		t.Run(fmt.Sprintf("list=%v", list), func(t *testing.T) {
			f := newFakeAPI(t, node)
			f.setPod(newPod("uid-a", nil, "app"))
			var once atomic.Bool
			var written atomic.Int64
			hook := func(w http.ResponseWriter, r *http.Request) bool {
				if once.Swap(true) {
					return false
				}
				if list {
					written.Store(huge(w, `{"kind":"PodList","metadata":{"resourceVersion":"5"},"items":[{"metadata":{"name":"`))
				} else {
					written.Store(huge(w, `{"type":"ADDED","object":{"metadata":{"name":"`))
				}
				return true
			}
			if list {
				f.onList = hook
			} else {
				f.onWatch = hook
			}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			w, logs := start(t, f, Options{})
			eventually(t, "the oversized object read", func() bool { return written.Load() > 0 })
			eventually(t, "pods listed after it", func() bool { l, _ := f.podRequests(); return len(l) == 2 })
			eventually(t, "connected", func() bool { return w.Status().State == Connected && found(w, "uid-a") })
			runtime.ReadMemStats(&after)
			if n := written.Load(); n > 64<<20 {
				t.Errorf("the server wrote %d MiB before the watcher gave up, want the 8 MiB bound and the sockets' buffers", n>>20)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 96<<20 {
				t.Errorf("%d MiB allocated reading an object the server made %d MiB long", n>>20, sent>>20)
			}
			if !strings.Contains(logs.String(), "larger than 8 MiB") {
				t.Errorf("the log does not say the object was too large:\n%s", logs)
			}
		})
	}
}

func TestSeriesLabelsAndResource(t *testing.T) {
	m := Meta{Namespace: "shop", Pod: "p", PodUID: podUID, Node: node, Container: "app",
		Owners: Owners{ReplicaSet: "rs", Deployment: "d", WorkloadKind: "Deployment", Workload: "d"}}
	l := m.SeriesLabels()
	want := map[string]string{"k8s_namespace_name": "shop", "k8s_pod_name": "p", "k8s_container_name": "app", "k8s_node_name": node, "k8s_deployment_name": "d"}
	if len(l) != len(want) {
		t.Errorf("labels %v, want %v", l, want)
	}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("%s = %q, want %q", k, l[k], v)
		}
	}
	for k := range l {
		found := false
		for _, n := range LabelNames {
			found = found || n == k
		}
		if !found {
			t.Errorf("label %s not in LabelNames", k)
		}
	}
	r := m.Resource(appID)
	if r["k8s.pod.uid"] != podUID || r["container.id"] != appID || r["k8s.replicaset.name"] != "rs" || r["k8s.deployment.name"] != "d" {
		t.Errorf("resource %v", r)
	}
}
