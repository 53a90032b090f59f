// Package e2e holds blindspot's end-to-end tests: they build the agent and
// the target program in test/targets/httpserver with every supported
// toolchain and link mode, run them as real processes and check what the
// agent reports about them through /targets and /metrics.
//
// Run them as root on a kernel with uprobes:
//
//	go test ./test/e2e/ -v -count=1
//
// Without root or uprobes, or without Go 1.19 at /usr/lib/go-1.19/bin/go,
// the tests that need them are skipped, unless CI=true, where they fail.
package e2e
