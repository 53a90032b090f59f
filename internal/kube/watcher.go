package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/blindspot-dev/blindspot/internal/container"
)

// Options configure a Watcher. The zero value of a field takes its default.
type Options struct {
	// Node is the agent's node: only its pods are watched.
	Node string
	// Resync is how often every pod is looked at again, which retries the
	// owners that could not be read (default 5 minutes).
	Resync time.Duration
	// OwnerTTL is how long an owner's controller is remembered (default
	// 10 minutes).
	OwnerTTL time.Duration
	// OwnerCacheSize bounds the remembered owners (default 4096).
	OwnerCacheSize int
	Logger         *slog.Logger
}

// Watcher keeps the pods of one node, indexed for Lookup.
type Watcher struct {
	opts     Options
	client   *client
	owners   *ownerCache
	selector string // the node's pods
	changed  chan struct{}
	synced   chan struct{} // closed once the pods are listed

	// pageSize is the pods asked for per page of a list.
	pageSize int
	// retry paces the requests after failures.
	retry backoff
	// healthyWatch is how long a watch that brings no event must last to
	// count as a success (one that ends at once is a failure).
	healthyWatch time.Duration

	mu          sync.RWMutex
	pods        map[string]*podEntry // by UID
	byContainer map[string]containerRef
	listed      bool
	state       State
	lastErr     string
	since       time.Time
}

type podEntry struct {
	// src is the pod as last seen, looked at again at each resync.
	src  *pod
	meta Meta
	// containers maps the IDs in the pod's status to container names.
	containers map[string]string
	// only is the pod's one container, "" when it has several.
	only string
}

type containerRef struct {
	pod  string // UID
	name string
}

// State is how the watch fares.
type State string

const (
	// Connecting: the first list of the node's pods has not arrived.
	Connecting State = "connecting"
	// Connected: the pods are listed and watched.
	Connected State = "connected"
	// Unreachable: the last request to the API failed.
	Unreachable State = "unreachable"
)

// Status describes the watch for the status page.
type Status struct {
	Node  string
	State State
	// Error is the last error while Unreachable.
	Error string
	// Since is when the state began.
	Since time.Time
	// Pods is the number of the node's pods known.
	Pods int
}

// ErrNoNode is returned when the agent does not know its node.
var ErrNoNode = errors.New("node name unknown: set NODE_NAME from the downward API (fieldRef spec.nodeName) or kubernetes.node_name in the configuration")

// NewForConfig returns a Watcher of the pods of opts.Node, read through
// the API cfg describes. Every response of the API server tells the
// Watcher whether it is reachable. Start starts it.
func NewForConfig(cfg *ClientConfig, opts Options) (*Watcher, error) {
	if opts.Node == "" {
		return nil, ErrNoNode
	}
	if opts.Resync <= 0 {
		opts.Resync = 5 * time.Minute
	}
	if opts.OwnerTTL <= 0 {
		opts.OwnerTTL = 10 * time.Minute
	}
	if opts.OwnerCacheSize <= 0 {
		opts.OwnerCacheSize = 4096
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	w := &Watcher{
		opts:         opts,
		selector:     "spec.nodeName=" + opts.Node,
		changed:      make(chan struct{}, 1),
		synced:       make(chan struct{}),
		pageSize:     500,
		retry:        backoff{min: time.Second, max: 30 * time.Second},
		healthyWatch: 10 * time.Second,
		pods:         map[string]*podEntry{},
		byContainer:  map[string]containerRef{},
		state:        Connecting, since: time.Now(),
	}
	c, err := newClient(cfg, w.observe)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	w.client = c
	w.owners = newOwnerCache(c.getOwner, opts.OwnerTTL, opts.OwnerCacheSize)
	return w, nil
}

// Start lists and watches the node's pods until ctx ends.
func (w *Watcher) Start(ctx context.Context) {
	go w.run(ctx)
}

// WaitSynced waits until the node's pods are listed, or ctx ends.
func (w *Watcher) WaitSynced(ctx context.Context) bool {
	select {
	case <-w.synced:
		return true
	case <-ctx.Done():
		return false
	}
}

// errGone is the API saying that the resource version a watch or a list
// asked for is no longer kept (HTTP 410): the pods are listed afresh.
var errGone = errors.New("resource version gone")

// run lists the pods, then watches them from the list's resource version
// for as long as the watch lasts: the server ends it after a while, and a
// new one goes on from the last version seen. When the API cannot say
// what happened meanwhile (an error, a version it no longer keeps), the
// pods are listed again and replace those known. Failures are retried
// after a backoff.
func (w *Watcher) run(ctx context.Context) {
	resync := time.NewTicker(w.opts.Resync)
	defer resync.Stop()
	retry := w.retry
	var rv string
	listRV := "0" // the first list may come from the API server's cache
	needList := true
	for ctx.Err() == nil {
		if needList {
			got, err := w.list(ctx, listRV)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if isStatus(err, http.StatusGone) {
					listRV = "" // the latest, then
				}
				w.observe(err)
				w.wait(ctx, &retry, err)
				continue
			}
			rv, listRV, needList = got, got, false
		}
		start := time.Now()
		last, events, err := w.watch(ctx, rv, resync.C)
		if ctx.Err() != nil {
			return
		}
		if last != "" {
			rv, listRV = last, last
		}
		healthy := events > 0 || time.Since(start) >= w.healthyWatch
		if healthy {
			retry.reset()
		}
		switch {
		case err == nil: // the server's timeout
			if healthy {
				continue
			}
			err = errors.New("watch of pods ended at once")
		case errors.Is(err, errGone):
			w.opts.Logger.Debug("kubernetes pods listed again: the watch's resource version is gone", "rv", rv)
			needList, listRV = true, ""
			if healthy {
				continue
			}
		default:
			w.observe(err)
			needList = true
		}
		w.wait(ctx, &retry, err)
	}
}

// wait sleeps for the next backoff after a failure.
func (w *Watcher) wait(ctx context.Context, retry *backoff, err error) {
	d := retry.next()
	w.opts.Logger.Debug("kubernetes pods: retrying", "err", err, "in", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// list lists the node's pods at resource version rv, page by page, and
// replaces the known pods with them. It returns the list's version.
func (w *Watcher) list(ctx context.Context, rv string) (string, error) {
	var pods []*pod
	var listRV, cont string
	for page := 0; ; page++ {
		if page == maxPages {
			return "", fmt.Errorf("list pods: more than %d pages", maxPages)
		}
		lm, err := w.client.listPods(ctx, w.selector, rv, cont, w.pageSize, func(p *pod) error {
			if len(pods) == maxPods {
				return fmt.Errorf("more than %d pods on the node", maxPods)
			}
			pods = append(pods, p)
			return nil
		})
		if err != nil {
			return "", err
		}
		if page == 0 {
			listRV = lm.ResourceVersion
		}
		if lm.Continue == "" {
			break
		}
		cont = lm.Continue
	}
	if listRV == "" {
		return "", errors.New("list pods: the list has no resourceVersion to watch from")
	}
	w.replace(pods)
	return listRV, nil
}

// replace makes pods the known pods: those not among them are gone.
func (w *Watcher) replace(pods []*pod) {
	keep := make(map[string]bool, len(pods))
	for _, p := range pods {
		w.store(p)
		keep[p.Metadata.UID] = true
	}
	w.mu.Lock()
	gone := false
	for uid := range w.pods {
		if !keep[uid] {
			w.dropLocked(uid)
			gone = true
		}
	}
	first := !w.listed
	w.listed = true
	w.mu.Unlock()
	if first {
		w.observe(nil) // connected, before anyone waiting for the list hears of it
		close(w.synced)
	}
	if gone || first {
		w.notify()
	}
}

// watchGrace is how long past the server's timeout a watch is kept open
// before the agent gives up on it.
const watchGrace = time.Minute

// watch follows the pods' changes from rv until the watch ends; between
// events, each tick of resync looks at every pod again. It returns the
// last resource version seen and the number of events.
func (w *Watcher) watch(ctx context.Context, rv string, resync <-chan time.Time) (last string, events int, err error) {
	timeout := watchTimeout()
	ctx, cancel := context.WithTimeout(ctx, timeout+watchGrace)
	defer cancel()
	body, err := w.client.watchPods(ctx, w.selector, rv, timeout)
	if err != nil {
		if isStatus(err, http.StatusGone) {
			return "", 0, errGone
		}
		return "", 0, fmt.Errorf("watch pods: %w", err)
	}
	defer body.Close()
	evc := make(chan event)
	errc := make(chan error, 1)
	go func() {
		dec := newEventDecoder(body)
		for {
			ev, err := dec.next()
			if err != nil {
				errc <- err
				return
			}
			select {
			case evc <- ev:
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			}
		}
	}()
	for {
		select {
		case ev := <-evc:
			switch ev.typ {
			case added, modified:
				w.store(&ev.pod)
			case deleted:
				w.remove(ev.pod.Metadata.UID)
			case failed:
				if ev.status.Code == http.StatusGone {
					return last, events, errGone
				}
				return last, events, fmt.Errorf("watch pods: %w", &apiError{method: http.MethodGet, path: podsPath,
					code: ev.status.Code, reason: ev.status.Reason, message: oneLine(ev.status.Message)})
			}
			if ev.rv != "" {
				last = ev.rv
			}
			events++
		case err := <-errc:
			if err == io.EOF {
				return last, events, nil
			}
			return last, events, fmt.Errorf("watch pods: %w", err)
		case <-resync:
			w.resync()
		case <-ctx.Done():
			return last, events, ctx.Err()
		}
	}
}

// resync looks at every pod again: its owners may be known now.
func (w *Watcher) resync() {
	w.mu.RLock()
	pods := make([]*pod, 0, len(w.pods))
	for _, e := range w.pods {
		pods = append(pods, e.src)
	}
	w.mu.RUnlock()
	for _, p := range pods {
		w.store(p)
	}
}

// backoff paces retries: exponential from min to max, each delay drawn
// between half and all of its step so that agents do not retry together.
type backoff struct {
	min, max time.Duration
	step     time.Duration
}

func (b *backoff) next() time.Duration {
	if b.step == 0 {
		b.step = b.min
	} else {
		b.step = min(2*b.step, b.max)
	}
	half := b.step / 2
	return half + rand.N(b.step-half+1)
}

func (b *backoff) reset() { b.step = 0 }

// Changed receives after the known pods change (at most one pending).
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

func (w *Watcher) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// observe records the outcome of a request to the API.
func (w *Watcher) observe(err error) {
	w.mu.Lock()
	prev := w.state
	switch {
	case err != nil:
		w.state, w.lastErr = Unreachable, err.Error()
	case w.listed:
		w.state, w.lastErr = Connected, ""
	case w.state == Unreachable:
		w.state, w.lastErr = Connecting, ""
	}
	changed := w.state != prev
	if changed {
		w.since = time.Now()
	}
	st := w.state
	w.mu.Unlock()
	switch {
	case changed && st == Unreachable:
		w.opts.Logger.Warn("kubernetes API unreachable: metrics go on without pod labels", "err", err)
	case changed && st == Connected && prev == Unreachable:
		w.opts.Logger.Info("kubernetes API reachable again")
	}
}

// Status returns the state of the watch.
func (w *Watcher) Status() Status {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return Status{Node: w.opts.Node, State: w.state, Error: w.lastErr, Since: w.since, Pods: len(w.pods)}
}

// store indexes a pod as it is now, with its owners resolved.
func (w *Watcher) store(pod *pod) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md := &pod.Metadata
	e := &podEntry{
		src: pod,
		meta: Meta{
			Namespace: md.Namespace, Pod: md.Name, PodUID: md.UID, Node: pod.Spec.NodeName,
			Labels: maps.Clone(md.Labels),
			Owners: w.owners.resolve(ctx, md.Namespace, md),
		},
		containers: map[string]string{},
	}
	if pod.Spec.Containers.n == 1 && pod.Spec.InitContainers.n == 0 && pod.Spec.EphemeralContainers.n == 0 {
		e.only = pod.Spec.Containers.first
	}
	for _, list := range []containerStatuses{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, cs := range list {
			if id := containerID(cs.ContainerID); id != "" {
				e.containers[id] = cs.Name
			}
		}
	}
	w.mu.Lock()
	old := w.pods[md.UID]
	if old != nil {
		for id := range old.containers {
			delete(w.byContainer, id)
		}
	}
	w.pods[md.UID] = e
	for id, name := range e.containers {
		w.byContainer[id] = containerRef{pod: md.UID, name: name}
	}
	w.mu.Unlock()
	if old == nil || !old.equal(e) {
		w.notify()
	}
}

// remove forgets a deleted pod.
func (w *Watcher) remove(uid string) {
	w.mu.Lock()
	w.dropLocked(uid)
	w.mu.Unlock()
	w.notify()
}

func (w *Watcher) dropLocked(uid string) {
	if old := w.pods[uid]; old != nil {
		for id := range old.containers {
			delete(w.byContainer, id)
		}
		delete(w.pods, uid)
	}
}

func (e *podEntry) equal(o *podEntry) bool {
	return e.meta.Namespace == o.meta.Namespace && e.meta.Pod == o.meta.Pod && e.meta.Node == o.meta.Node &&
		e.meta.Owners == o.meta.Owners && e.only == o.only &&
		maps.Equal(e.meta.Labels, o.meta.Labels) && maps.Equal(e.containers, o.containers)
}

// containerID strips the runtime prefix of a status's container ID
// ("containerd://<id>", "cri-o://<id>", "docker://<id>").
func containerID(s string) string {
	if _, id, ok := strings.Cut(s, "://"); ok {
		return id
	}
	return ""
}

// Lookup returns the pod and container a process's cgroup names: by its
// container ID when the pod's status lists it, else by the pod UID in the
// cgroup path (the container's name then only when the pod has one).
func (w *Watcher) Lookup(c container.Info) (Meta, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if ref, ok := w.byContainer[c.ID]; ok && c.ID != "" {
		if c.PodUID == "" || c.PodUID == ref.pod {
			e := w.pods[ref.pod]
			m := e.meta
			m.Container = ref.name
			return m, true
		}
	}
	if e, ok := w.pods[c.PodUID]; ok && c.PodUID != "" {
		m := e.meta
		m.Container = e.only
		return m, true
	}
	return Meta{}, false
}
