package lifecycle

import "path"

// Selection picks the programs to observe and names them: the include,
// exclude and services sections of the configuration file.
type Selection struct {
	// Include, when not empty, limits instrumentation to programs matching
	// at least one rule.
	Include []Match `yaml:"include"`
	// Exclude removes programs matching any rule (checked after Include).
	Exclude []Match `yaml:"exclude"`
	// Services name programs: the first rule whose Exe matches wins over
	// OTEL_SERVICE_NAME and the executable's base name.
	Services []ServiceRule `yaml:"services"`
}

// Match selects programs by executable path glob, service name glob,
// Kubernetes namespace glob and pod labels (path.Match syntax); a rule
// needs all the fields it has to match. A program in no known pod never
// matches a rule with a Kubernetes field.
type Match struct {
	Exe     string `yaml:"exe"`
	Service string `yaml:"service"`
	// K8sNamespace matches the namespace of the program's pod.
	K8sNamespace string `yaml:"k8s_namespace"`
	// K8sPodLabels match the labels of the program's pod: each must be
	// there with a value matching its glob.
	K8sPodLabels map[string]string `yaml:"k8s_pod_labels"`
}

// ServiceRule names the programs whose executable matches Exe.
type ServiceRule struct {
	Exe       string `yaml:"exe"`
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace"`
}

// Subject is what the selection looks at in a program.
type Subject struct {
	Exe, Service string
	// InPod is true when the program's pod is known; Namespace and
	// PodLabels are its pod's.
	InPod     bool
	Namespace string
	PodLabels map[string]string
}

// usesKubernetes reports whether a rule looks at a program's pod: then a
// program whose pod is not known yet is looked at again once it is.
func (s *Selection) usesKubernetes() bool {
	for _, rules := range [][]Match{s.Include, s.Exclude} {
		for _, m := range rules {
			if m.K8sNamespace != "" || len(m.K8sPodLabels) > 0 {
				return true
			}
		}
	}
	return false
}

func glob(pattern, s string) bool {
	ok, _ := path.Match(pattern, s)
	return ok
}

func (m Match) matches(s Subject) bool {
	if m.Exe != "" && !glob(m.Exe, s.Exe) {
		return false
	}
	if m.Service != "" && !glob(m.Service, s.Service) {
		return false
	}
	if m.K8sNamespace != "" && (!s.InPod || !glob(m.K8sNamespace, s.Namespace)) {
		return false
	}
	for k, pattern := range m.K8sPodLabels {
		v, ok := s.PodLabels[k]
		if !s.InPod || !ok || !glob(pattern, v) {
			return false
		}
	}
	return true
}

// Wanted reports whether a program is to be instrumented.
func (s *Selection) Wanted(subj Subject) bool {
	if len(s.Include) > 0 {
		in := false
		for _, m := range s.Include {
			if m.matches(subj) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	for _, m := range s.Exclude {
		if m.matches(subj) {
			return false
		}
	}
	return true
}

// ServiceFor returns the configured name of a program, if any.
func (s *Selection) ServiceFor(exe string) (ServiceRule, bool) {
	for _, r := range s.Services {
		if glob(r.Exe, exe) {
			return r, true
		}
	}
	return ServiceRule{}, false
}
