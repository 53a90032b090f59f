package lifecycle

import (
	"maps"

	"github.com/blindspot-dev/blindspot/internal/container"
	"github.com/blindspot-dev/blindspot/internal/kube"
	"github.com/blindspot-dev/blindspot/probes/discover"
)

// Placement tells which Kubernetes pod a container belongs to:
// *kube.Watcher.
type Placement interface {
	// Lookup returns the pod and container of a process's cgroup.
	Lookup(c container.Info) (kube.Meta, bool)
	// Changed receives after the known pods change.
	Changed() <-chan struct{}
}

var _ Placement = (*kube.Watcher)(nil)

// where is what is known of where a process runs.
type where struct {
	container container.Info
	// pod is the process's pod; inPod is false when it is not known (a
	// host process, a container outside Kubernetes, a pod not listed yet
	// or an unreachable API).
	pod   kube.Meta
	inPod bool
}

// locate reads the process's container from its cgroup, and asks the
// placement for its pod. Outside Kubernetes (no placement) it does
// nothing: not even the cgroup is read.
func (a *Agent) locate(p discover.Process) where {
	if a.place == nil {
		return where{}
	}
	c, err := a.container(p.PID)
	if err != nil {
		return where{}
	}
	return a.lookup(c)
}

func (a *Agent) lookup(c container.Info) where {
	w := where{container: c}
	if c.ID != "" {
		w.pod, w.inPod = a.place.Lookup(c)
	}
	return w
}

// maybePod reports whether the process may be in a pod not known yet.
func (w where) maybePod() bool { return !w.inPod && w.container.PodUID != "" }

// labels are the series labels of the process (kube.LabelNames).
func (w where) labels() map[string]string {
	if !w.inPod {
		return nil
	}
	return w.pod.SeriesLabels()
}

// resource is the process's further OpenTelemetry resource attributes:
// its own OTEL_RESOURCE_ATTRIBUTES (attrs), under what the agent found
// (k8s.*, container.id), which wins where both name an attribute.
func (w where) resource(attrs map[string]string) map[string]string {
	var found map[string]string
	switch {
	case w.inPod:
		found = w.pod.Resource(w.container.ID)
	case w.container.ID != "":
		found = map[string]string{"container.id": w.container.ID}
	}
	if len(found) == 0 {
		return attrs
	}
	out := maps.Clone(attrs)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, found)
	return out
}

func (w where) subject(exe, service string) Subject {
	return Subject{Exe: exe, Service: service, InPod: w.inPod, Namespace: w.pod.Namespace, PodLabels: w.pod.Labels}
}

// placementChanged looks again at where the processes run, after the
// known pods changed: a process whose pod became known gets its labels,
// one whose pod changed (its owner, a container's name) gets the new
// ones, and a process the selection turned down for want of its pod's
// namespace or labels is looked at again. A process keeps the service
// name it was attached with: its business functions were chosen by it.
func (a *Agent) placementChanged() {
	a.mu.Lock()
	retry := make([]discover.Process, 0, len(a.awaitingPod))
	for _, p := range a.awaitingPod {
		retry = append(retry, p)
	}
	clear(a.awaitingPod)
	ts := make([]*target, 0, len(a.targets))
	for _, t := range a.targets {
		ts = append(ts, t)
	}
	a.mu.Unlock()
	for _, t := range ts {
		w := a.lookup(t.where.container)
		labels := w.labels()
		res := w.resource(t.attrs)
		if maps.Equal(labels, t.where.labels()) && maps.Equal(res, t.where.resource(t.attrs)) {
			continue
		}
		a.agg.SetPlacement(t.id, labels, res)
		a.mu.Lock()
		t.where = w
		t.status.Kubernetes = labels
		a.mu.Unlock()
	}
	for _, p := range retry {
		if a.alive(p) {
			a.started(p)
		}
	}
}
