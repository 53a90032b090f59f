package probes

import (
	"testing"

	"github.com/blindspot-dev/blindspot/probes/internal/testserver"
)

func requireBPF(t *testing.T)                        { testserver.RequireBPF(t) }
func startServer(t *testing.T) (int, string, string) { return testserver.Start(t) }
