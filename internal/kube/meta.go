package kube

// Meta is what Kubernetes says about the container a process runs in.
type Meta struct {
	Namespace, Pod, PodUID, Node string
	// Container is the container's name, "" when it cannot be told (its
	// ID is not in the pod's status yet and the pod has several).
	Container string
	// Labels are the pod's labels.
	Labels map[string]string
	// Owners are the pod's controllers, as far as they are resolved.
	Owners Owners
}

// Owners are a pod's controller chain. A field is set only when the API
// said so: a ReplicaSet whose own owner could not be read has no
// Deployment, never a guessed one.
type Owners struct {
	ReplicaSet, Deployment, StatefulSet, DaemonSet, Job, CronJob string
	// Workload is the kind and name of the outermost controller, "" when
	// it is not known (an owner that could not be read).
	WorkloadKind, Workload string
}

// LabelNames are the labels the series of a process in a pod carry, in
// the order the exporter renders them (the OpenTelemetry resource
// attributes k8s.* with dots as underscores).
var LabelNames = []string{
	"k8s_namespace_name", "k8s_pod_name", "k8s_container_name", "k8s_node_name",
	"k8s_deployment_name", "k8s_statefulset_name", "k8s_daemonset_name",
	"k8s_cronjob_name", "k8s_job_name",
}

// SeriesLabels returns the labels of LabelNames that have a value.
func (m Meta) SeriesLabels() map[string]string {
	out := map[string]string{}
	for k, v := range map[string]string{
		"k8s_namespace_name":   m.Namespace,
		"k8s_pod_name":         m.Pod,
		"k8s_container_name":   m.Container,
		"k8s_node_name":        m.Node,
		"k8s_deployment_name":  m.Owners.Deployment,
		"k8s_statefulset_name": m.Owners.StatefulSet,
		"k8s_daemonset_name":   m.Owners.DaemonSet,
		"k8s_cronjob_name":     m.Owners.CronJob,
		"k8s_job_name":         m.Owners.Job,
	} {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

// Resource returns the OpenTelemetry resource attributes of the process
// (semantic conventions' k8s.* and container.id).
func (m Meta) Resource(containerID string) map[string]string {
	out := map[string]string{}
	for k, v := range map[string]string{
		"k8s.namespace.name":   m.Namespace,
		"k8s.pod.name":         m.Pod,
		"k8s.pod.uid":          m.PodUID,
		"k8s.container.name":   m.Container,
		"k8s.node.name":        m.Node,
		"k8s.replicaset.name":  m.Owners.ReplicaSet,
		"k8s.deployment.name":  m.Owners.Deployment,
		"k8s.statefulset.name": m.Owners.StatefulSet,
		"k8s.daemonset.name":   m.Owners.DaemonSet,
		"k8s.cronjob.name":     m.Owners.CronJob,
		"k8s.job.name":         m.Owners.Job,
		"container.id":         containerID,
	} {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

// AppNameLabel is the recommended label naming an application; the
// agent's default service name after OTEL_SERVICE_NAME.
const AppNameLabel = "app.kubernetes.io/name"
