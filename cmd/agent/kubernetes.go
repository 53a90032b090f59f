package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/blindspot-dev/blindspot/exporter"
	"github.com/blindspot-dev/blindspot/internal/kube"
	"github.com/blindspot-dev/blindspot/internal/lifecycle"
)

// KubernetesConfig is the kubernetes: section: where the agent finds its
// node's pods, to label each program's series with its pod.
type KubernetesConfig struct {
	// Enabled turns the pod labels on or off; unset means on when the
	// agent runs in a pod (KUBERNETES_SERVICE_HOST is set) or Kubeconfig
	// is given, off elsewhere.
	Enabled *bool `yaml:"enabled"`
	// Kubeconfig is a kubeconfig file, for an agent outside the cluster;
	// in a pod the service account is used.
	Kubeconfig string `yaml:"kubeconfig"`
	// NodeName is the agent's node (default: $NODE_NAME, which the
	// DaemonSet sets from the downward API).
	NodeName string `yaml:"node_name"`
}

// syncWait bounds how long the agent waits for the node's pods before it
// looks at the programs running: past it, programs are attached without
// their pod's labels, which they get when the pods arrive.
const syncWait = 10 * time.Second

// kubernetes is the agent's view of its node's pods: a watcher, or why
// there is none although one was expected.
type kubernetes struct {
	watcher *kube.Watcher
	off     string // why the watch is off when it was asked for
	node    string
}

// newKubernetes sets up the pod watch the configuration asks for. Outside
// Kubernetes nothing is attempted. In a pod, a watch that cannot be set up
// (no node name, no service account) leaves the agent running without
// pod labels and says why; when enabled explicitly, it is an error.
func newKubernetes(cfg KubernetesConfig, getenv func(string) string, log *slog.Logger) (*kubernetes, error) {
	enabled := cfg.Kubeconfig != "" || getenv("KUBERNETES_SERVICE_HOST") != ""
	if cfg.Enabled != nil {
		enabled = *cfg.Enabled
	}
	k := &kubernetes{node: cfg.NodeName}
	if !enabled {
		return k, nil
	}
	if k.node == "" {
		k.node = getenv("NODE_NAME")
	}
	w, err := func() (*kube.Watcher, error) {
		rc, err := kube.Config(cfg.Kubeconfig)
		if err != nil {
			return nil, err
		}
		return kube.NewForConfig(rc, kube.Options{Node: k.node, Logger: log})
	}()
	if err != nil {
		if cfg.Enabled != nil && *cfg.Enabled {
			return nil, err
		}
		k.off = err.Error()
		log.Warn("kubernetes metadata off: series carry no pod labels", "err", err)
		return k, nil
	}
	k.watcher = w
	return k, nil
}

// placement is what the lifecycle asks for pods (nil when off).
func (k *kubernetes) placement() lifecycle.Placement {
	if k.watcher == nil {
		return nil
	}
	return k.watcher
}

// labels are the series labels the pods add.
func (k *kubernetes) labels() []string {
	if k.watcher == nil {
		return nil
	}
	return kube.LabelNames
}

// status is the status page's section (nil when Kubernetes is not in use).
func (k *kubernetes) status() func() exporter.KubernetesStatus {
	switch {
	case k.watcher != nil:
		return func() exporter.KubernetesStatus {
			st := k.watcher.Status()
			return exporter.KubernetesStatus{Node: st.Node, State: string(st.State), Error: st.Error, Since: st.Since, Pods: st.Pods}
		}
	case k.off != "":
		since := time.Now()
		return func() exporter.KubernetesStatus {
			return exporter.KubernetesStatus{Node: k.node, State: "off", Error: k.off, Since: since}
		}
	}
	return nil
}

// start watches the pods until ctx ends, and waits (at most syncWait) for
// the first list, so that the programs already running get their labels
// and their service names from their pods.
func (k *kubernetes) start(ctx context.Context, log *slog.Logger) {
	if k.watcher == nil {
		return
	}
	k.watcher.Start(ctx)
	wait, cancel := context.WithTimeout(ctx, syncWait)
	defer cancel()
	if k.watcher.WaitSynced(wait) {
		log.Info("kubernetes pods listed", "node", k.node, "pods", k.watcher.Status().Pods)
		return
	}
	st := k.watcher.Status()
	log.Warn("kubernetes pods not listed yet: programs attach without pod labels until they are", "node", k.node, "state", st.State, "err", st.Error)
}
