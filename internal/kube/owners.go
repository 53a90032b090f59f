package kube

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// getOwnerFunc reads the metadata of a pod's owner of a kind (ReplicaSet,
// Job) in a namespace.
type getOwnerFunc func(ctx context.Context, kind, namespace, name string) (*objectMeta, error)

// ownerCache remembers the controller of each ReplicaSet and Job the
// node's pods name, by the owner's UID (a ReplicaSet deleted and made
// again under its name is another object). Answers are kept for ttl, so
// that an owner that changes (a ReplicaSet adopted by another Deployment)
// is seen again in time; failures for failTTL, so that an unreachable API
// is not asked once per pod event. At most max entries: past it the cache
// starts over, which costs GETs, never memory.
type ownerCache struct {
	get          getOwnerFunc
	ttl, failTTL time.Duration
	max          int
	now          func() time.Time

	mu      sync.Mutex
	entries map[string]ownerEntry
	gets    int // GETs sent (tests check the cache is used)
}

type ownerEntry struct {
	parent  ownerReference // the owner's own controller; Kind "" if none
	ok      bool           // the API answered
	expires time.Time
}

func newOwnerCache(get getOwnerFunc, ttl time.Duration, max int) *ownerCache {
	return &ownerCache{
		get: get, ttl: ttl, failTTL: min(ttl, 30*time.Second), max: max,
		now: time.Now, entries: map[string]ownerEntry{},
	}
}

// errOwnerReplaced is returned when the object under an owner's name is
// not the owner the pod names (another UID).
var errOwnerReplaced = errors.New("owner was replaced")

// parent returns the controller of the pod's owner ref (a ReplicaSet's
// Deployment, a Job's CronJob): Kind "" when it has none. ok is false
// when the API did not say.
func (c *ownerCache) parent(ctx context.Context, namespace string, ref ownerReference) (ownerReference, bool) {
	now := c.now()
	c.mu.Lock()
	e, hit := c.entries[ref.UID]
	c.mu.Unlock()
	if hit && now.Before(e.expires) {
		return e.parent, e.ok
	}
	if ref.Kind != "ReplicaSet" && ref.Kind != "Job" {
		return ownerReference{}, false
	}
	meta, err := c.get(ctx, ref.Kind, namespace, ref.Name)
	if err == nil && meta.UID != ref.UID {
		err = errOwnerReplaced
	}
	e = ownerEntry{expires: now.Add(c.ttl)}
	switch {
	case err == nil:
		e.ok = true
		if p := controllerOf(meta); p != nil {
			e.parent = *p
		}
	case isStatus(err, http.StatusNotFound) || errors.Is(err, errOwnerReplaced):
		// Gone: the pod is being orphaned or will go too. Not known.
	default:
		e.expires = now.Add(c.failTTL)
	}
	c.mu.Lock()
	c.gets++
	if len(c.entries) >= c.max {
		clear(c.entries)
	}
	c.entries[ref.UID] = e
	c.mu.Unlock()
	return e.parent, e.ok
}

// resolve walks a pod's controller chain.
func (c *ownerCache) resolve(ctx context.Context, namespace string, pod *objectMeta) Owners {
	var o Owners
	ref := controllerOf(pod)
	if ref == nil {
		return o // a bare pod: no workload
	}
	switch ref.Kind {
	case "StatefulSet":
		o.StatefulSet = ref.Name
	case "DaemonSet":
		o.DaemonSet = ref.Name
	case "ReplicaSet", "Job":
		if ref.Kind == "ReplicaSet" {
			o.ReplicaSet = ref.Name
		} else {
			o.Job = ref.Name
		}
		parent, ok := c.parent(ctx, namespace, *ref)
		if !ok {
			return o // the workload is not known: no guess
		}
		switch {
		case parent.Kind == "":
			o.WorkloadKind, o.Workload = ref.Kind, ref.Name
		case parent.Kind == "Deployment" && ref.Kind == "ReplicaSet":
			o.Deployment = parent.Name
		case parent.Kind == "CronJob" && ref.Kind == "Job":
			o.CronJob = parent.Name
		default: // another controller (an Argo Rollout, an operator's kind)
			o.WorkloadKind, o.Workload = parent.Kind, parent.Name
		}
		if o.Workload != "" {
			return o
		}
	default:
		o.WorkloadKind, o.Workload = ref.Kind, ref.Name
		return o
	}
	for _, w := range []struct{ kind, name string }{
		{"Deployment", o.Deployment}, {"StatefulSet", o.StatefulSet}, {"DaemonSet", o.DaemonSet},
		{"CronJob", o.CronJob},
	} {
		if w.name != "" {
			o.WorkloadKind, o.Workload = w.kind, w.name
			break
		}
	}
	return o
}
