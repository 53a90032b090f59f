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

// Match selects programs by executable path glob and/or service name glob
// (path.Match syntax); a rule with both needs both to match.
type Match struct {
	Exe     string `yaml:"exe"`
	Service string `yaml:"service"`
}

// ServiceRule names the programs whose executable matches Exe.
type ServiceRule struct {
	Exe       string `yaml:"exe"`
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace"`
}

func (m Match) matches(exe, service string) bool {
	if m.Exe != "" {
		if ok, _ := path.Match(m.Exe, exe); !ok {
			return false
		}
	}
	if m.Service != "" {
		if ok, _ := path.Match(m.Service, service); !ok {
			return false
		}
	}
	return true
}

// Wanted reports whether a program is to be instrumented.
func (s *Selection) Wanted(exe, service string) bool {
	if len(s.Include) > 0 {
		in := false
		for _, m := range s.Include {
			if m.matches(exe, service) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	for _, m := range s.Exclude {
		if m.matches(exe, service) {
			return false
		}
	}
	return true
}

// ServiceFor returns the configured name of a program, if any.
func (s *Selection) ServiceFor(exe string) (ServiceRule, bool) {
	for _, r := range s.Services {
		if ok, _ := path.Match(r.Exe, exe); ok {
			return r, true
		}
	}
	return ServiceRule{}, false
}
