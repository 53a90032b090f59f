// Package deploy checks the Kubernetes manifests of deploy/: every document
// decodes strictly into its Kubernetes API type (an unknown or misspelt
// field is an error) and the DaemonSet keeps the agent's least privilege.
// It needs no cluster and no root.
package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/blindspot-dev/blindspot/test/testrepo"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const repoRoot = "../.."

// typeMeta is read first to pick the type a document decodes into.
type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// (monitoring.coreos.com/v1) that deploy/servicemonitor.yaml uses; a field
// outside it fails the strict decoding.
type serviceMonitor struct {
	typeMeta `json:",inline"`
	Metadata struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port        string `json:"port"`
			Path        string `json:"path"`
			Interval    string `json:"interval"`
			Relabelings []struct {
				SourceLabels []string `json:"sourceLabels"`
				TargetLabel  string   `json:"targetLabel"`
			} `json:"relabelings"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type manifests struct {
	namespaces      []*corev1.Namespace
	serviceAccounts []*corev1.ServiceAccount
	configMaps      []*corev1.ConfigMap
	services        []*corev1.Service
	daemonSets      []*appsv1.DaemonSet
	clusterRoles    []*rbacv1.ClusterRole
	bindings        []*rbacv1.ClusterRoleBinding
	serviceMonitors []*serviceMonitor
}

// load decodes every Kubernetes document of deploy/*.yaml strictly. Files
// without apiVersion and kind (the agent's own configuration examples) are
// not Kubernetes manifests and are skipped.
func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/*.yaml: %v", err)
	}
	m := &manifests{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocuments(b) {
			var tm typeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			if tm.APIVersion == "" && tm.Kind == "" {
				continue
			}
			where := filepath.Base(f) + " " + tm.Kind
			var obj any
			switch tm.APIVersion + "/" + tm.Kind {
			case "v1/Namespace":
				o := &corev1.Namespace{}
				m.namespaces, obj = append(m.namespaces, o), o
			case "v1/ServiceAccount":
				o := &corev1.ServiceAccount{}
				m.serviceAccounts, obj = append(m.serviceAccounts, o), o
			case "v1/ConfigMap":
				o := &corev1.ConfigMap{}
				m.configMaps, obj = append(m.configMaps, o), o
			case "v1/Service":
				o := &corev1.Service{}
				m.services, obj = append(m.services, o), o
			case "apps/v1/DaemonSet":
				o := &appsv1.DaemonSet{}
				m.daemonSets, obj = append(m.daemonSets, o), o
			case "rbac.authorization.k8s.io/v1/ClusterRole":
				o := &rbacv1.ClusterRole{}
				m.clusterRoles, obj = append(m.clusterRoles, o), o
			case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
				o := &rbacv1.ClusterRoleBinding{}
				m.bindings, obj = append(m.bindings, o), o
			case "monitoring.coreos.com/v1/ServiceMonitor":
				o := &serviceMonitor{}
				m.serviceMonitors, obj = append(m.serviceMonitors, o), o
			default:
				t.Fatalf("%s document %d: unexpected %s %s: add its type to this test", f, i+1, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s: strict decoding: %v", where, err)
			}
		}
	}
	return m
}

// splitDocuments splits a YAML stream at its "---" lines, dropping empty
// documents.
func splitDocuments(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), b...), []byte("\n---")) {
		if i := bytes.IndexByte(d, '\n'); i >= 0 {
			d = d[i+1:] // the rest of the separator line
		}
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(d []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(d, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// declaredCaps reads neededCaps of cmd/agent/checks.go and returns the
// names without "CAP_", as Kubernetes spells them.
func declaredCaps(t *testing.T) []string {
	t.Helper()
	caps, err := testrepo.DeclaredCaps(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range caps {
		caps[i] = strings.TrimPrefix(c, "CAP_")
	}
	return caps
}

func one[T any](t *testing.T, kind string, xs []T) T {
	t.Helper()
	if len(xs) != 1 {
		t.Fatalf("%d %s in deploy/, want 1", len(xs), kind)
	}
	return xs[0]
}

func TestManifests(t *testing.T) {
	m := load(t)
	ns := one(t, "Namespace", m.namespaces)
	sa := one(t, "ServiceAccount", m.serviceAccounts)
	cm := one(t, "ConfigMap", m.configMaps)
	svc := one(t, "Service", m.services)
	ds := one(t, "DaemonSet", m.daemonSets)
	role := one(t, "ClusterRole", m.clusterRoles)
	binding := one(t, "ClusterRoleBinding", m.bindings)
	sm := one(t, "ServiceMonitor", m.serviceMonitors)

	for _, o := range []struct{ kind, namespace string }{
		{"ServiceAccount", sa.Namespace}, {"ConfigMap", cm.Namespace},
		{"Service", svc.Namespace}, {"DaemonSet", ds.Namespace},
		{"ServiceMonitor", sm.Metadata.Namespace},
	} {
		if o.namespace != ns.Name {
			t.Errorf("%s in namespace %q, want %q", o.kind, o.namespace, ns.Name)
		}
	}

	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Error("hostPID is not set: the agent finds programs through the node's /proc")
	}
	if pod.HostNetwork || pod.HostIPC {
		t.Error("hostNetwork or hostIPC set: the agent needs neither")
	}
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("serviceAccountName %q, want %q", pod.ServiceAccountName, sa.Name)
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == ""
	}) {
		t.Error("no toleration {operator: Exists}: the agent would not run on tainted nodes")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if !strings.HasPrefix(c.Image, "ghcr.io/blindspot-dev/blindspot:") {
		t.Errorf("image %q", c.Image)
	}

	// Least privilege: exactly the declared capabilities, nothing else.
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("container has no securityContext")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: the agent needs only its capabilities")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.Capabilities == nil {
		t.Fatal("no capabilities")
	}
	var drop, add []string
	for _, x := range sc.Capabilities.Drop {
		drop = append(drop, string(x))
	}
	for _, x := range sc.Capabilities.Add {
		add = append(add, strings.TrimPrefix(string(x), "CAP_"))
	}
	if !slices.Equal(drop, []string{"ALL"}) {
		t.Errorf("capabilities drop %v, want [ALL]", drop)
	}
	want := declaredCaps(t)
	slices.Sort(add)
	slices.Sort(want)
	if !slices.Equal(add, want) {
		t.Errorf("capabilities add %v, want exactly %v (neededCaps of cmd/agent/checks.go)", add, want)
	}
	if p := pod.SecurityContext; p == nil || p.SeccompProfile == nil {
		t.Error("no pod seccompProfile")
	}

	// No host paths: /sys comes from the runtime, /sys/kernel/debug and
	// /sys/fs/bpf are not used.
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %q mounts host path %s: the agent needs none", v.Name, v.HostPath.Path)
		}
	}

	// Configuration from the ConfigMap, passed with --config.
	var cfgVolume string
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			cfgVolume = v.Name
		}
	}
	if cfgVolume == "" {
		t.Fatalf("no volume from ConfigMap %q", cm.Name)
	}
	var cfgDir string
	for _, vm := range c.VolumeMounts {
		if vm.Name == cfgVolume {
			cfgDir = vm.MountPath
			if !vm.ReadOnly {
				t.Error("config volume is not mounted read-only")
			}
		}
	}
	if cfgDir == "" {
		t.Fatalf("config volume %q not mounted", cfgVolume)
	}
	var cfgFile string
	for i, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			cfgFile = v
		} else if a == "--config" && i+1 < len(c.Args) {
			cfgFile = c.Args[i+1]
		}
	}
	if dir, key := filepath.Split(cfgFile); filepath.Clean(dir) != cfgDir || cm.Data[key] == "" {
		t.Errorf("--config %q is not a key of ConfigMap %q mounted at %s", cfgFile, cm.Name, cfgDir)
	}

	// NODE_NAME from the downward API.
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
			e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}) {
		t.Error("no NODE_NAME from fieldRef spec.nodeName")
	}

	// Probes on the agent's port and its /healthz.
	const port = 9464
	var portName string
	for _, p := range c.Ports {
		if p.ContainerPort == port {
			portName = p.Name
		}
	}
	if portName == "" {
		t.Fatalf("container port %d not declared", port)
	}
	if !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasSuffix(a, ":"+strconv.Itoa(port)) }) {
		t.Errorf("args %v do not listen on :%d", c.Args, port)
	}
	isPort := func(p intstr.IntOrString) bool {
		return p.StrVal == portName || p.IntValue() == port
	}
	for name, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", name)
			continue
		}
		if pr.HTTPGet.Path != "/healthz" || !isPort(pr.HTTPGet.Port) {
			t.Errorf("%s probe on %s port %s, want /healthz on %d", name, pr.HTTPGet.Path, pr.HTTPGet.Port.String(), port)
		}
	}

	// Requests and limits for CPU and memory.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		if !okReq || !okLim {
			t.Errorf("%s: request or limit missing", r)
		} else if req.Cmp(lim) > 0 {
			t.Errorf("%s: request %s above limit %s", r, req.String(), lim.String())
		}
	}

	// RBAC: read-only, and only what internal/kube asks: a watch of
	// pods, a GET of a ReplicaSet or a Job.
	allowed := map[string]string{"pods": "", "replicasets": "apps", "jobs": "batch"}
	verbs := map[string][]string{"pods": {"get", "list", "watch"}, "replicasets": {"get"}, "jobs": {"get"}}
	seen := map[string]bool{}
	for _, r := range role.Rules {
		for _, res := range r.Resources {
			if !slices.Equal(r.Verbs, verbs[res]) {
				t.Errorf("ClusterRole allows %v on %s, want exactly %v", r.Verbs, res, verbs[res])
			}
		}
		if len(r.NonResourceURLs) > 0 || len(r.ResourceNames) > 0 {
			t.Errorf("ClusterRole rule %+v: resources only", r)
		}
		for _, res := range r.Resources {
			g, ok := allowed[res]
			if !ok || !slices.Equal(r.APIGroups, []string{g}) {
				t.Errorf("ClusterRole allows %v %q: only pods, apps/replicasets and batch/jobs", r.APIGroups, res)
			}
			seen[res] = true
		}
	}
	if !seen["pods"] || !seen["replicasets"] || !seen["jobs"] {
		t.Errorf("ClusterRole covers %v, want pods, replicasets and jobs", seen)
	}
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name ||
		len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "ServiceAccount" ||
		binding.Subjects[0].Name != sa.Name || binding.Subjects[0].Namespace != ns.Name {
		t.Errorf("ClusterRoleBinding %+v does not bind %s to %s/%s", binding, role.Name, ns.Name, sa.Name)
	}

	// Headless Service with scrape annotations, selecting the agent's pods.
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service clusterIP %q, want None (headless)", svc.Spec.ClusterIP)
	}
	for k, v := range map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": strconv.Itoa(port), "prometheus.io/path": "/metrics"} {
		if svc.Annotations[k] != v {
			t.Errorf("Service annotation %s=%q, want %q", k, svc.Annotations[k], v)
		}
	}
	labels := ds.Spec.Template.Labels
	for k, v := range svc.Spec.Selector {
		if labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the DaemonSet's pods", k, v)
		}
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if labels[k] != v {
			t.Errorf("DaemonSet selector %s=%s does not match its template", k, v)
		}
	}
	var svcPort string
	for _, p := range svc.Spec.Ports {
		if p.Port == port && isPort(p.TargetPort) {
			svcPort = p.Name
		}
	}
	if svcPort == "" {
		t.Errorf("Service has no port %d to the agent", port)
	}

	// The ServiceMonitor scrapes that Service.
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selector %s=%s does not match the Service", k, v)
		}
	}
	if !slices.Contains(sm.Spec.NamespaceSelector.MatchNames, ns.Name) {
		t.Errorf("ServiceMonitor namespaces %v, want %s", sm.Spec.NamespaceSelector.MatchNames, ns.Name)
	}
	if len(sm.Spec.Endpoints) == 0 || sm.Spec.Endpoints[0].Port != svcPort || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v, want port %q path /metrics", sm.Spec.Endpoints, svcPort)
	}
}
