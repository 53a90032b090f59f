package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The Kubernetes tests run a real agent with a kubeconfig pointing at an
// API server of the test's own on loopback, which serves the pods of one
// node (only when asked with the node's field selector) and ReplicaSets;
// the target runs in a cgroup laid out as the kubelet lays out a pod's
// container, made by the test on this host. Nothing of the agent is faked.

const e2eNode = "node-e2e"

// fakeAPI is a minimal Kubernetes API server: list and watch pods (with
// the node field selector), get ReplicaSets.
type fakeAPI struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	pods     map[types.UID]*corev1.Pod
	rs       map[string]*appsv1.ReplicaSet
	rv       int
	watchers map[chan []byte]bool
	stop     chan struct{}
	badSel   []string // pod requests without the node's field selector
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{t: t, pods: map[types.UID]*corev1.Pod{}, rs: map[string]*appsv1.ReplicaSet{},
		rv: 1, watchers: map[chan []byte]bool{}, stop: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		close(f.stop)
		f.srv.Close()
	})
	return f
}

// kubeconfig writes a kubeconfig for the server and returns its path.
func (f *fakeAPI) kubeconfig(t *testing.T) string {
	return writeKubeconfig(t, f.srv.URL)
}

func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: %q}}]
users: [{name: e2e, user: {token: e2e-token}}]
contexts: [{name: e2e, context: {cluster: e2e, user: e2e}}]
current-context: e2e
`, server)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fakeAPI) addReplicaSet(rs *appsv1.ReplicaSet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rs[rs.Namespace+"/"+rs.Name] = rs
}

// setPod adds or changes a pod, and tells the watchers.
func (f *fakeAPI) setPod(p *corev1.Pod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	kind := "MODIFIED"
	if f.pods[p.UID] == nil {
		kind = "ADDED"
	}
	f.rv++
	p = p.DeepCopy()
	p.ResourceVersion = strconv.Itoa(f.rv)
	f.pods[p.UID] = p
	ev := watchEvent(kind, p)
	for ch := range f.watchers {
		select {
		case ch <- ev:
		default:
			f.t.Errorf("watcher too slow")
		}
	}
}

func watchEvent(kind string, obj any) []byte {
	b, _ := json.Marshal(map[string]any{"type": kind, "object": obj})
	return append(b, '\n')
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	q := r.URL.Query()
	switch {
	case r.URL.Path == "/api/v1/pods":
		if q.Get("fieldSelector") != "spec.nodeName="+e2eNode {
			f.mu.Lock()
			f.badSel = append(f.badSel, r.URL.RawQuery)
			f.mu.Unlock()
			http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`, 403)
			return
		}
		if q.Get("watch") == "true" || q.Get("watch") == "1" {
			f.watch(w, r, q.Get("sendInitialEvents") == "true")
			return
		}
		f.mu.Lock()
		list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
		list.ResourceVersion = strconv.Itoa(f.rv)
		for _, p := range f.pods {
			list.Items = append(list.Items, *p)
		}
		f.mu.Unlock()
		json.NewEncoder(w).Encode(list)
	case strings.HasPrefix(r.URL.Path, "/apis/apps/v1/namespaces/"):
		// /apis/apps/v1/namespaces/NS/replicasets/NAME
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/apis/apps/v1/namespaces/"), "/")
		f.mu.Lock()
		var rs *appsv1.ReplicaSet
		if len(parts) == 3 && parts[1] == "replicasets" {
			rs = f.rs[parts[0]+"/"+parts[2]]
		}
		f.mu.Unlock()
		if rs == nil {
			http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`, 404)
			return
		}
		json.NewEncoder(w).Encode(rs)
	default:
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`, 404)
	}
}

// watch streams events until the client or the test goes. With
// sendInitialEvents (client-go's streaming list) the pods come first as
// ADDED events, then the bookmark that ends them.
func (f *fakeAPI) watch(w http.ResponseWriter, r *http.Request, initial bool) {
	ch := make(chan []byte, 64)
	f.mu.Lock()
	f.watchers[ch] = true
	var first [][]byte
	if initial {
		for _, p := range f.pods {
			first = append(first, watchEvent("ADDED", p))
		}
		first = append(first, watchEvent("BOOKMARK", map[string]any{
			"kind": "Pod", "apiVersion": "v1",
			"metadata": map[string]any{"resourceVersion": strconv.Itoa(f.rv), "annotations": map[string]string{"k8s.io/initial-events-end": "true"}},
		}))
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.watchers, ch)
		f.mu.Unlock()
	}()
	fl := w.(http.Flusher)
	w.WriteHeader(200)
	for _, ev := range first {
		w.Write(ev)
	}
	fl.Flush()
	timeout := time.After(time.Minute) // the reflector watches again
	for {
		select {
		case ev := <-ch:
			w.Write(ev)
			fl.Flush()
		case <-r.Context().Done():
			return
		case <-f.stop:
			return
		case <-timeout:
			return
		}
	}
}

// podCgroup makes a cgroup laid out as the kubelet's cgroupfs driver lays
// out a pod's container (.../pod<uid>/<container id>), in the cgroup v2
// hierarchy when the host has one, and returns the command that moves a
// shell into it before it execs the program.
func podCgroup(t *testing.T, podUID, containerID string) []string {
	t.Helper()
	base := ""
	for _, b := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(filepath.Join(b, "cgroup.procs")); err == nil {
			if _, err := os.Stat(filepath.Join(b, "cgroup.controllers")); err == nil {
				base = b // cgroup v2 (pure, or hybrid's unified)
				break
			}
		}
	}
	if base == "" {
		base = "/sys/fs/cgroup/pids" // cgroup v1 only
	}
	top := filepath.Join(base, fmt.Sprintf("blindspot-e2e-%d", os.Getpid()))
	dir := filepath.Join(top, "kubepods", "besteffort", "pod"+podUID, containerID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("make a pod's cgroup: %v", err)
	}
	t.Cleanup(func() {
		// Leaf first; the target has been killed and reaped by now
		// (its cleanup ran before this one).
		for d := dir; strings.HasPrefix(d, top); d = filepath.Dir(d) {
			for i := 0; i < 50 && os.Remove(d) != nil; i++ {
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
	return []string{"/bin/sh", "-c", `echo $$ > "$0" && shift && exec "$@"`, filepath.Join(dir, "cgroup.procs"), "--"}
}

// histCount sums the counts of a histogram's series whose labels include
// match.
func (s *scrape) histCount(name string, match map[string]string) uint64 {
	var n uint64
	for _, se := range s.histograms[name] {
		if hasLabels(se.labels, match) {
			n += se.count
		}
	}
	return n
}

func teapots(t *testing.T, tp *targetProc, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if code, _, err := tp.do("GET", "/teapot"); err != nil || code != 418 {
			t.Fatalf("GET /teapot: %d %v", code, err)
		}
	}
}

// waitCount waits (bounded) until the series matching match count want,
// then checks that no late event over-counts.
func waitCount(t *testing.T, a *agentProc, match map[string]string, want uint64) {
	t.Helper()
	const name = "http_server_request_duration_seconds"
	waitFor(10*time.Second, func() bool {
		s, err := a.scrape()
		return err == nil && s.histCount(name, match) >= want
	})
	time.Sleep(500 * time.Millisecond)
	s := a.mustScrape(t)
	if got := s.histCount(name, match); got != want {
		var lines []string
		for _, se := range s.histograms[name] {
			if se.labels["service_name"] == match["service_name"] {
				lines = append(lines, fmt.Sprintf("%v %d", se.labels, se.count))
			}
		}
		t.Errorf("%d requests counted with %v, want %d; series of the service:\n%s", got, match, want, strings.Join(lines, "\n"))
	}
}

func randomHex(n int) string {
	b := make([]byte, n/2)
	f, err := os.Open("/dev/urandom")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	f.Read(b)
	return fmt.Sprintf("%x", b)
}

func newUID() string {
	h := randomHex(32)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// TestKubernetes: a program in a pod's cgroup gets its pod's labels, its
// service name from app.kubernetes.io/name, and its workload through the
// ReplicaSet; a host program on the same agent gets none; the labels follow
// the pod when its owner changes; /targets and the status page say so.
func TestKubernetes(t *testing.T) {
	requireBPF(t)
	v := variantByName(t, "go126-plain")
	api := newFakeAPI(t)
	yes := true
	owner := func(kind, name, uid string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID(uid), Controller: &yes}}
	}
	api.addReplicaSet(&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout-7d9f8b6c5", UID: "rs-1",
		OwnerReferences: owner("Deployment", "checkout", "dep-1")}})
	api.addReplicaSet(&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout-v2-5c6d7", UID: "rs-2",
		OwnerReferences: owner("Deployment", "checkout-v2", "dep-2")}})
	app := fmt.Sprintf("checkout-%d", serviceSeq.Add(1))
	podUID, appID, proxyID := newUID(), randomHex(64), randomHex(64)
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout-7d9f8b6c5-x2x4z", UID: types.UID(podUID),
			Labels:          map[string]string{"app.kubernetes.io/name": app},
			OwnerReferences: owner("ReplicaSet", "checkout-7d9f8b6c5", "rs-1")},
		Spec: corev1.PodSpec{NodeName: e2eNode, Containers: []corev1.Container{{Name: "app"}, {Name: "proxy"}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{Name: "app", ContainerID: "containerd://" + appID}, {Name: "proxy", ContainerID: "containerd://" + proxyID}}},
	}
	api.setPod(pod)
	// Another node's pod is never asked for (the field selector).
	a := startAgent(t, fmt.Sprintf("kubernetes:\n  kubeconfig: %q\n  node_name: %s\n", api.kubeconfig(t), e2eNode))

	inPod := startTargetWrapped(t, podCgroup(t, podUID, appID), v.exe, "", nil)
	host := startTarget(t, v.exe, uniqueService("k8s-host", v))
	a.waitTargeted(t, inPod.pid, 10*time.Second)
	a.waitTargeted(t, host.pid, 10*time.Second)
	teapots(t, inPod, 7)
	teapots(t, host, 5)

	want := map[string]string{
		"service_name": app, "k8s_namespace_name": "shop", "k8s_pod_name": pod.Name, "k8s_container_name": "app",
		"k8s_node_name": e2eNode, "k8s_deployment_name": "checkout", "k8s_statefulset_name": "", "k8s_daemonset_name": "",
		"k8s_cronjob_name": "", "k8s_job_name": "",
	}
	waitCount(t, a, want, 7)
	hostLabels := map[string]string{"service_name": host.service}
	for _, l := range []string{"k8s_namespace_name", "k8s_pod_name", "k8s_container_name", "k8s_node_name", "k8s_deployment_name"} {
		hostLabels[l] = ""
	}
	waitCount(t, a, hostLabels, 5)

	ts := a.findTarget(inPod.pid)
	if ts == nil || ts.ServiceName != app || ts.Kubernetes["k8s_pod_name"] != pod.Name || ts.Kubernetes["k8s_deployment_name"] != "checkout" {
		t.Errorf("/targets for the pod's program: %+v", ts)
	}
	if ts := a.findTarget(host.pid); ts == nil || len(ts.Kubernetes) != 0 {
		t.Errorf("/targets for the host program: %+v", ts)
	}
	page, err := a.get("/")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), `data-state="connected"`) || !strings.Contains(string(page), "Node "+e2eNode) {
		t.Errorf("status page does not say the pods are watched:\n%s", page)
	}

	// The pod changes owner: its series follow, with every count kept.
	pod.OwnerReferences = owner("ReplicaSet", "checkout-v2-5c6d7", "rs-2")
	api.setPod(pod)
	want["k8s_deployment_name"] = "checkout-v2"
	waitFor(10*time.Second, func() bool {
		s, err := a.scrape()
		return err == nil && s.histCount("http_server_request_duration_seconds", want) == 7
	})
	teapots(t, inPod, 3)
	waitCount(t, a, want, 10)
	old := map[string]string{"service_name": app, "k8s_deployment_name": "checkout"}
	if n := a.mustScrape(t).histCount("http_server_request_duration_seconds", old); n != 0 {
		t.Errorf("%d requests still under the old deployment", n)
	}
	api.mu.Lock()
	if len(api.badSel) > 0 {
		t.Errorf("pods asked for without the node's field selector: %v", api.badSel)
	}
	api.mu.Unlock()
}

// TestKubernetesUnreachable: with the API unreachable, a program in a pod
// is still measured exactly, without pod labels, and the status page says
// why.
func TestKubernetesUnreachable(t *testing.T) {
	requireBPF(t)
	v := variantByName(t, "go126-plain")
	kubeconfig := writeKubeconfig(t, "http://"+freePort(t))
	a := startAgent(t, fmt.Sprintf("kubernetes:\n  kubeconfig: %q\n  node_name: %s\n", kubeconfig, e2eNode))
	svc := uniqueService("k8s-unreachable", v)
	tp := startTargetWrapped(t, podCgroup(t, newUID(), randomHex(64)), v.exe, svc, nil)
	a.waitTargeted(t, tp.pid, 20*time.Second)
	teapots(t, tp, 6)
	waitCount(t, a, map[string]string{"service_name": svc, "k8s_pod_name": "", "k8s_namespace_name": ""}, 6)
	page, err := a.get("/")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), `data-state="unreachable"`) || !strings.Contains(string(page), "connection refused") {
		t.Errorf("status page does not say the API is unreachable:\n%s", page)
	}
}
