package exporter

import (
	"github.com/prometheus/client_golang/prometheus"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
)

// Version is the agent's version: prometheus/common/version.Version, which
// the Makefile sets at link time (-X) with the revision, branch, build user
// and date; "dev" for a plain go build.
var Version = func() string {
	if version.Version == "" {
		version.Version = "dev"
	}
	if version.Branch == "" {
		version.Branch = "unknown"
	}
	return version.Version
}()

// newBuildInfoCollector is blindspot_build_info, exactly as client_golang's
// version collector makes it for every Prometheus exporter: labels version,
// revision, branch, goversion, goos, goarch and tags. The revision comes
// from the link-time -X flag, else from the Go toolchain's VCS stamp, else
// "unknown".
func newBuildInfoCollector() prometheus.Collector {
	return versioncollector.NewCollector("blindspot")
}
