package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

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
	client   API
	informer cache.SharedIndexInformer
	owners   *ownerCache
	changed  chan struct{}

	mu          sync.RWMutex
	pods        map[types.UID]*podEntry
	byContainer map[string]containerRef
	state       State
	lastErr     string
	since       time.Time
}

type podEntry struct {
	meta Meta
	// containers maps the IDs in the pod's status to container names.
	containers map[string]string
	// only is the pod's one container, "" when it has several.
	only string
}

type containerRef struct {
	pod  types.UID
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

// Config returns the API client configuration: the kubeconfig file when
// one is named, else the in-cluster service account.
func Config(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster configuration: %w", err)
	}
	return cfg, nil
}

// NewForConfig returns a Watcher whose client is made from cfg. Every
// response of the API server tells the Watcher whether it is reachable.
func NewForConfig(cfg *rest.Config, opts Options) (*Watcher, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "blindspot"
	var w *Watcher
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			switch {
			case err != nil:
				w.observe(err)
			case resp.StatusCode >= 500:
				w.observe(fmt.Errorf("%s %s: %s", req.Method, req.URL.Path, resp.Status))
			default:
				w.observe(nil)
			}
			return resp, err
		})
	})
	client, err := newRESTAPI(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	w, err = New(client, opts)
	return w, err
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// New returns a Watcher of the pods of opts.Node. Start starts it.
func New(client API, opts Options) (*Watcher, error) {
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
		opts: opts, client: client,
		owners:      newOwnerCache(client, opts.OwnerTTL, opts.OwnerCacheSize),
		changed:     make(chan struct{}, 1),
		pods:        map[types.UID]*podEntry{},
		byContainer: map[string]containerRef{},
		state:       Connecting, since: time.Now(),
	}
	node := fields.OneTermEqualSelector("spec.nodeName", opts.Node).String()
	pods := client.Pods(func(o *metav1.ListOptions) { o.FieldSelector = node })
	w.informer = cache.NewSharedIndexInformer(pods, &corev1.Pod{}, opts.Resync, cache.Indexers{})
	// Only what Lookup uses is kept of each pod.
	if err := w.informer.SetTransform(slimPod); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	if err := w.informer.SetWatchErrorHandler(func(_ *cache.Reflector, err error) { w.observe(err) }); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	_, err := w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { w.storeObj(obj) },
		UpdateFunc: func(_, obj any) {
			// A resync hands the cached pod back unchanged: its owners are
			// looked at again (one that could not be read may be now), but
			// it says nothing of the API's health.
			w.storeObj(obj)
		},
		DeleteFunc: w.deleteObj,
	})
	if err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	return w, nil
}

// slimPod drops what the watcher never reads (managed fields, the pod's
// spec but for its containers' names), so a node's pods cost little.
func slimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	pod.ManagedFields = nil
	pod.Annotations = nil
	spec := corev1.PodSpec{NodeName: pod.Spec.NodeName}
	for _, c := range pod.Spec.Containers {
		spec.Containers = append(spec.Containers, corev1.Container{Name: c.Name})
	}
	for _, c := range pod.Spec.InitContainers {
		spec.InitContainers = append(spec.InitContainers, corev1.Container{Name: c.Name})
	}
	pod.Spec = spec
	return pod, nil
}

// Start lists and watches the node's pods until ctx ends.
func (w *Watcher) Start(ctx context.Context) {
	go w.informer.RunWithContext(ctx)
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), w.informer.HasSynced) {
			w.observe(nil)
			w.notify()
		}
	}()
}

// WaitSynced waits until the node's pods are listed, or ctx ends.
func (w *Watcher) WaitSynced(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), w.informer.HasSynced)
}

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
	if w == nil {
		return // a request made while the client is built
	}
	w.mu.Lock()
	prev := w.state
	switch {
	case err != nil:
		w.state, w.lastErr = Unreachable, err.Error()
	case w.informer != nil && w.informer.HasSynced():
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

func (w *Watcher) storeObj(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := &podEntry{
		meta: Meta{
			Namespace: pod.Namespace, Pod: pod.Name, PodUID: string(pod.UID), Node: pod.Spec.NodeName,
			Labels: maps.Clone(pod.Labels),
			Owners: w.owners.resolve(ctx, pod.Namespace, &pod.ObjectMeta),
		},
		containers: map[string]string{},
	}
	if len(pod.Spec.Containers) == 1 && len(pod.Spec.InitContainers) == 0 && len(pod.Spec.EphemeralContainers) == 0 {
		e.only = pod.Spec.Containers[0].Name
	}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, cs := range list {
			if id := containerID(cs.ContainerID); id != "" {
				e.containers[id] = cs.Name
			}
		}
	}
	w.mu.Lock()
	old := w.pods[pod.UID]
	if old != nil {
		for id := range old.containers {
			delete(w.byContainer, id)
		}
	}
	w.pods[pod.UID] = e
	for id, name := range e.containers {
		w.byContainer[id] = containerRef{pod: pod.UID, name: name}
	}
	w.mu.Unlock()
	if old == nil || !old.equal(e) {
		w.notify()
	}
}

func (w *Watcher) deleteObj(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	w.mu.Lock()
	if old := w.pods[pod.UID]; old != nil {
		for id := range old.containers {
			delete(w.byContainer, id)
		}
		delete(w.pods, pod.UID)
	}
	w.mu.Unlock()
	w.notify()
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
		if c.PodUID == "" || types.UID(c.PodUID) == ref.pod {
			e := w.pods[ref.pod]
			m := e.meta
			m.Container = ref.name
			return m, true
		}
	}
	if e, ok := w.pods[types.UID(c.PodUID)]; ok && c.PodUID != "" {
		m := e.meta
		m.Container = e.only
		return m, true
	}
	return Meta{}, false
}
