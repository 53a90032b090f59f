package kube

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/blindspot-dev/blindspot/internal/container"
)

const (
	node     = "node-a"
	podUID   = "5f3c8a1e-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
	appID    = "3f7b2c9d81e04a56b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4"
	sidecarD = "aaaabbbbccccddddeeeeffff00001111222233334444555566667777888899990"
)

func controller(kind, name, uid string) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID(uid), Controller: &yes}}
}

func replicaSet(name, uid, deployment string) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID(uid)}}
	if deployment != "" {
		rs.OwnerReferences = controller("Deployment", deployment, "dep-"+deployment)
	}
	return rs
}

func pod(owners []metav1.OwnerReference, containers ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: "checkout-7d9f8b6c5-x2x4z", UID: podUID,
			Labels: map[string]string{AppNameLabel: "checkout"}, OwnerReferences: owners,
		},
		Spec: corev1.PodSpec{NodeName: node},
	}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "registry.example/" + c})
	}
	return p
}

func start(t *testing.T, objs ...runtime.Object) (*fake.Clientset, *Watcher) {
	t.Helper()
	client := fake.NewClientset(objs...)
	w, err := New(clientsetAPI{client}, Options{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w.Start(ctx)
	sync, done := context.WithTimeout(ctx, 10*time.Second)
	defer done()
	if !w.WaitSynced(sync) {
		t.Fatal("pods not synced")
	}
	return client, w
}

// eventually polls cond (bounded: 10s) for the informer to deliver.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchesOnlyItsNode(t *testing.T) {
	client, _ := start(t)
	var lists, watches int
	for _, a := range client.Actions() {
		if a.GetResource().Resource != "pods" {
			continue
		}
		var sel string
		switch a := a.(type) {
		case k8stesting.ListAction:
			sel, lists = a.GetListRestrictions().Fields.String(), lists+1
		case k8stesting.WatchAction:
			sel, watches = a.GetWatchRestrictions().Fields.String(), watches+1
		default:
			t.Errorf("unexpected %s of pods: the agent only reads", a.GetVerb())
			continue
		}
		if sel != "spec.nodeName="+node {
			t.Errorf("%s of pods with field selector %q, want spec.nodeName=%s", a.GetVerb(), sel, node)
		}
		if a.GetNamespace() != "" {
			t.Errorf("%s of pods in namespace %q, want all namespaces", a.GetVerb(), a.GetNamespace())
		}
	}
	if lists != 1 || watches != 1 {
		t.Errorf("%d lists and %d watches of pods, want one each", lists, watches)
	}
}

func TestPodAppearsChangesOwnerAndLeaves(t *testing.T) {
	client, w := start(t,
		replicaSet("checkout-7d9f8b6c5", "rs-1", "checkout"),
		replicaSet("checkout-canary-5c6d7", "rs-2", "checkout-canary"),
	)
	ctx := context.Background()
	proc := container.Info{ID: appID, PodUID: podUID, Runtime: "containerd"}
	if _, ok := w.Lookup(proc); ok {
		t.Fatal("a pod found before it exists")
	}

	// Appears, before its container's ID reaches the status: found by UID.
	p := pod(controller("ReplicaSet", "checkout-7d9f8b6c5", "rs-1"), "app")
	if _, err := client.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var m Meta
	eventually(t, "the pod", func() (ok bool) { m, ok = w.Lookup(proc); return })
	want := Meta{
		Namespace: "shop", Pod: p.Name, PodUID: podUID, Node: node, Container: "app",
		Owners: Owners{ReplicaSet: "checkout-7d9f8b6c5", Deployment: "checkout", WorkloadKind: "Deployment", Workload: "checkout"},
	}
	checkMeta(t, m, want)
	if m.Labels[AppNameLabel] != "checkout" {
		t.Errorf("labels = %v", m.Labels)
	}

	// A sidecar is added and both IDs reach the status: each process gets
	// its own container's name; the pod UID alone no longer tells.
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "proxy"})
	p.Status.ContainerStatuses = []corev1.ContainerStatus{
		{Name: "app", ContainerID: "containerd://" + appID},
		{Name: "proxy", ContainerID: "containerd://" + sidecarD},
	}
	if _, err := client.CoreV1().Pods("shop").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
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

	// Changes owner: adopted by another ReplicaSet of another Deployment.
	p.OwnerReferences = controller("ReplicaSet", "checkout-canary-5c6d7", "rs-2")
	if _, err := client.CoreV1().Pods("shop").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new owner", func() bool { m, _ := w.Lookup(proc); return m.Owners.Deployment == "checkout-canary" })
	m, _ = w.Lookup(proc)
	want.Owners = Owners{ReplicaSet: "checkout-canary-5c6d7", Deployment: "checkout-canary", WorkloadKind: "Deployment", Workload: "checkout-canary"}
	checkMeta(t, m, want)

	// Orphaned: no controller, no workload.
	p.OwnerReferences = nil
	if _, err := client.CoreV1().Pods("shop").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the orphan", func() bool { m, _ := w.Lookup(proc); return m.Owners == Owners{} })

	// Leaves.
	if err := client.CoreV1().Pods("shop").Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pod to go", func() bool { _, ok := w.Lookup(proc); return !ok })
	if _, ok := w.Lookup(container.Info{ID: sidecarD}); ok {
		t.Error("the sidecar's container is still indexed")
	}
	if st := w.Status(); st.State != Connected || st.Pods != 0 || st.Node != node {
		t.Errorf("status %+v", st)
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
	yes := true
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "report-29000000", UID: "job-1",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: "report", UID: "cj-1", Controller: &yes}}}}
	bareJob := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "migrate", UID: "job-2"}}
	bareRS := replicaSet("lonely", "rs-3", "")
	rolloutRS := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-6f7", UID: "rs-4",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "web", UID: "ro-1", Controller: &yes}}}}
	client, w := start(t, job, bareJob, bareRS, rolloutRS)
	for i, c := range []struct {
		owner []metav1.OwnerReference
		want  Owners
	}{
		{controller("StatefulSet", "db", "ss-1"), Owners{StatefulSet: "db", WorkloadKind: "StatefulSet", Workload: "db"}},
		{controller("DaemonSet", "logs", "ds-1"), Owners{DaemonSet: "logs", WorkloadKind: "DaemonSet", Workload: "logs"}},
		{controller("Job", "report-29000000", "job-1"), Owners{Job: "report-29000000", CronJob: "report", WorkloadKind: "CronJob", Workload: "report"}},
		{controller("Job", "migrate", "job-2"), Owners{Job: "migrate", WorkloadKind: "Job", Workload: "migrate"}},
		{controller("ReplicaSet", "lonely", "rs-3"), Owners{ReplicaSet: "lonely", WorkloadKind: "ReplicaSet", Workload: "lonely"}},
		{controller("ReplicaSet", "web-6f7", "rs-4"), Owners{ReplicaSet: "web-6f7", WorkloadKind: "Rollout", Workload: "web"}},
		// The ReplicaSet under that name is another object: no deployment.
		{controller("ReplicaSet", "lonely", "rs-stale"), Owners{ReplicaSet: "lonely"}},
		// A ReplicaSet that does not exist: the workload is not guessed.
		{controller("ReplicaSet", "ghost-123", "rs-5"), Owners{ReplicaSet: "ghost-123"}},
		{nil, Owners{}},
	} {
		p := pod(c.owner, "app")
		p.Name = "p"
		p.UID = types.UID(podUID[:35] + string(rune('a'+i)))
		if _, err := client.CoreV1().Pods("shop").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var m Meta
		eventually(t, "pod", func() (ok bool) { m, ok = w.Lookup(container.Info{PodUID: string(p.UID)}); return })
		if m.Owners != c.want {
			t.Errorf("owner %v: %+v, want %+v", c.owner, m.Owners, c.want)
		}
		client.CoreV1().Pods("shop").Delete(context.Background(), "p", metav1.DeleteOptions{})
		eventually(t, "pod gone", func() bool { _, ok := w.Lookup(container.Info{PodUID: string(p.UID)}); return !ok })
	}
}

// TestOwnerCache: the pods of one ReplicaSet cost one GET of it; an
// answer is asked again after its TTL, a failure sooner.
func TestOwnerCache(t *testing.T) {
	client := fake.NewClientset(replicaSet("checkout-7d9f8b6c5", "rs-1", "checkout"))
	c := newOwnerCache(clientsetAPI{client}, time.Minute, 2)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	ref := controller("ReplicaSet", "checkout-7d9f8b6c5", "rs-1")
	meta := &metav1.ObjectMeta{OwnerReferences: ref}
	for range 5 {
		if o := c.resolve(context.Background(), "shop", meta); o.Deployment != "checkout" {
			t.Fatalf("owners %+v", o)
		}
	}
	if c.gets != 1 {
		t.Errorf("%d GETs for 5 pods of one ReplicaSet, want 1", c.gets)
	}
	now = now.Add(2 * time.Minute)
	c.resolve(context.Background(), "shop", meta)
	if c.gets != 2 {
		t.Errorf("%d GETs after the TTL, want 2", c.gets)
	}
	// The API fails: not cached for the whole TTL.
	client.PrependReactor("get", "replicasets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	now = now.Add(2 * time.Minute)
	if o := c.resolve(context.Background(), "shop", meta); o.Deployment != "" || o.ReplicaSet != "checkout-7d9f8b6c5" {
		t.Errorf("owners while the API fails: %+v", o)
	}
	now = now.Add(c.failTTL + time.Second)
	c.resolve(context.Background(), "shop", meta)
	if c.gets != 4 {
		t.Errorf("%d GETs, want a failure retried after %v", c.gets, c.failTTL)
	}
	// Bounded.
	for i := range 10 {
		c.resolve(context.Background(), "shop", &metav1.ObjectMeta{OwnerReferences: controller("ReplicaSet", "x", "u"+string(rune('0'+i)))})
	}
	if len(c.entries) > 2 {
		t.Errorf("%d cached owners, bound 2", len(c.entries))
	}
}

func TestUnreachable(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("dial tcp 10.96.0.1:443: connect: connection refused")
	})
	w, err := New(clientsetAPI{client}, Options{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.Start(ctx)
	eventually(t, "unreachable", func() bool { return w.Status().State == Unreachable })
	if st := w.Status(); st.Error == "" {
		t.Errorf("status %+v names no error", st)
	}
	if _, ok := w.Lookup(container.Info{ID: appID, PodUID: podUID}); ok {
		t.Error("lookup succeeded with no pods")
	}
}

func TestNoNode(t *testing.T) {
	if _, err := New(clientsetAPI{fake.NewClientset()}, Options{}); !errors.Is(err, ErrNoNode) {
		t.Errorf("err = %v, want ErrNoNode", err)
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
