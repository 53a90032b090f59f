package lifecycle

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/internal/container"
	"github.com/blindspot-dev/blindspot/internal/kube"
)

// fakePlacement is a node's pods by container ID.
type fakePlacement struct {
	mu      sync.Mutex
	pods    map[string]kube.Meta
	changed chan struct{}
}

func (f *fakePlacement) Lookup(c container.Info) (kube.Meta, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.pods[c.ID]
	return m, ok
}

func (f *fakePlacement) Changed() <-chan struct{} { return f.changed }

func (f *fakePlacement) set(id string, m *kube.Meta) {
	f.mu.Lock()
	if m == nil {
		delete(f.pods, id)
	} else {
		f.pods[id] = *m
	}
	f.mu.Unlock()
	f.changed <- struct{}{}
}

// newPodRig is a rig whose processes run in containers: PID n in the
// container whose ID is containerOf(n) (PIDs of 100 and up run on the
// host).
func newPodRig(t *testing.T, sel Selection) (*rig, *fakePlacement) {
	t.Helper()
	place := &fakePlacement{pods: map[string]kube.Meta{}, changed: make(chan struct{})}
	r := newRig(t, sel, aggregator.Options{}, func(o *Options) {
		o.Placement = place
		o.Container = func(pid int) (container.Info, error) {
			if pid >= 100 {
				return container.Info{}, nil
			}
			return container.Info{ID: containerOf(pid), PodUID: "0a0a0a0a-0000-0000-0000-00000000000" + string(rune('0'+pid%10))}, nil
		}
	})
	return r, place
}

func containerOf(pid int) string { return strings.Repeat(string(rune('a'+pid%6)), 64) }

func podMeta(ns, name, app, deployment string) *kube.Meta {
	m := &kube.Meta{Namespace: ns, Pod: name, Node: "n1", Container: "app", Labels: map[string]string{"team": "pay"}}
	if app != "" {
		m.Labels[kube.AppNameLabel] = app
	}
	if deployment != "" {
		m.Owners = kube.Owners{ReplicaSet: deployment + "-1", Deployment: deployment, WorkloadKind: "Deployment", Workload: deployment}
	}
	return m
}

// In a pod, a program's service is OTEL_SERVICE_NAME, else its pod's
// app.kubernetes.io/name, else its workload, else its executable; its
// series and resource carry the pod.
func TestPodNaming(t *testing.T) {
	r, place := newPodRig(t, Selection{})
	place.pods[containerOf(1)] = *podMeta("shop", "p1", "checkout", "checkout-deploy")
	place.pods[containerOf(2)] = *podMeta("shop", "p2", "", "cart")
	place.pods[containerOf(3)] = *podMeta("shop", "p3", "ignored", "ignored")
	place.pods[containerOf(4)] = *podMeta("shop", "p4", "", "")
	r.host.env[3] = map[string]string{"OTEL_SERVICE_NAME": "from-env"}
	r.run(t)
	r.disco.send(started(proc(1, "/app/a")), started(proc(2, "/app/b")), started(proc(3, "/app/c")),
		started(proc(4, "/app/d")), started(proc(100, "/usr/bin/hostprog")))
	eventually(t, "five targets", func() bool { return len(r.a.Targets()) == 5 })
	want := map[int]string{1: "checkout", 2: "cart", 3: "from-env", 4: "d", 100: "hostprog"}
	for _, tg := range r.agg.Targets() {
		if tg.Service != want[tg.PID] {
			t.Errorf("pid %d: service %q, want %q", tg.PID, tg.Service, want[tg.PID])
		}
		switch tg.PID {
		case 100:
			if len(tg.Labels) != 0 || len(tg.Resource) != 0 {
				t.Errorf("host program labelled %v, resource %v", tg.Labels, tg.Resource)
			}
		case 1:
			wantLabels := map[string]string{"k8s_namespace_name": "shop", "k8s_pod_name": "p1", "k8s_container_name": "app",
				"k8s_node_name": "n1", "k8s_deployment_name": "checkout-deploy"}
			if !maps.Equal(tg.Labels, wantLabels) {
				t.Errorf("labels %v, want %v", tg.Labels, wantLabels)
			}
			if tg.Resource["container.id"] != containerOf(1) || tg.Resource["k8s.replicaset.name"] != "checkout-deploy-1" {
				t.Errorf("resource %v", tg.Resource)
			}
		}
	}
	for _, st := range r.a.Targets() {
		if st.PID == 1 && st.Kubernetes["k8s_pod_name"] != "p1" {
			t.Errorf("/targets: %+v", st)
		}
	}
}

// Selection by namespace and pod labels; a program whose pod is not known
// yet is looked at again when it is; a pod's labels follow it.
func TestPodSelectionAndChanges(t *testing.T) {
	sel := Selection{
		// (/sync/* lets the rig's settle see the agent's progress.)
		Include: []Match{{K8sNamespace: "shop*", K8sPodLabels: map[string]string{"team": "p*"}}, {Exe: "/sync/*"}},
		Exclude: []Match{{K8sNamespace: "shop-dev"}},
	}
	r, place := newPodRig(t, sel)
	place.pods[containerOf(1)] = *podMeta("shop", "p1", "a", "")
	place.pods[containerOf(2)] = *podMeta("shop-dev", "p2", "b", "")
	other := podMeta("shop", "p3", "c", "")
	other.Labels["team"] = "search"
	place.pods[containerOf(3)] = *other
	r.run(t)
	r.disco.send(started(proc(1, "/app/a")), started(proc(2, "/app/b")), started(proc(3, "/app/c")),
		started(proc(4, "/app/late")), started(proc(100, "/app/host")))
	r.settle(t)
	if got := targetPIDs(r.a.Targets()); !slices.Equal(got, []int{1}) {
		t.Fatalf("instrumented %v, want [1]", got)
	}
	// The pod of 4 becomes known: it is looked at again.
	place.set(containerOf(4), podMeta("shop", "p4", "late", "late-deploy"))
	eventually(t, "the late pod's program", func() bool { return len(r.a.Targets()) == 2 })
	// A pod changes owner: the labels follow, the service stays.
	place.set(containerOf(1), podMeta("shop", "p1", "renamed", "new-owner"))
	eventually(t, "the new owner", func() bool {
		for _, tg := range r.agg.Targets() {
			if tg.PID == 1 && tg.Labels["k8s_deployment_name"] == "new-owner" {
				return tg.Service == "a"
			}
		}
		return false
	})
	// The pod goes (its program runs on): the labels go.
	place.set(containerOf(1), nil)
	eventually(t, "the pod to go", func() bool {
		for _, tg := range r.agg.Targets() {
			if tg.PID == 1 {
				return len(tg.Labels) == 0 && tg.Resource["container.id"] == containerOf(1)
			}
		}
		return false
	})
}
