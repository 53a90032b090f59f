package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// imageTag is the tag TestImage builds (make image VERSION=e2e).
const imageTag = "ghcr.io/blindspot-dev/blindspot:e2e"

// TestImage builds the container image with `make image` (podman, FROM
// scratch: nothing is pulled), checks its configuration, and runs it as a
// host-PID container with every capability dropped except the set
// cmd/agent/checks.go declares: the containerised agent instruments a Go
// program running on the host, exactly.
func TestImage(t *testing.T) {
	requireBPF(t)
	podman := requireTool(t, "/usr/bin/podman", "podman")
	requireTool(t, "/usr/bin/runc", "runc") // see runAgentContainer
	caps := declaredCaps(t)
	v := variantByName(t, "go126-plain")

	// Build through the Makefile, as a user would (the Go build cache and
	// podman's layer cache keep a re-run to seconds).
	ctx, cancel := context.WithTimeout(env.ctx, 5*time.Minute)
	defer cancel()
	old, _ := exec.CommandContext(ctx, podman, "image", "inspect", "-f", "{{.Id}}", imageTag).Output()
	mk := exec.CommandContext(ctx, "make", "-C", env.repoRoot, "image",
		"BIN="+filepath.Join(t.TempDir(), "build", "blindspot"), "VERSION=e2e", "CONTAINER="+podman)
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	// The previous build, now untagged, goes (not every dangling image: other
	// users' are not ours to remove).
	if id := strings.TrimSpace(string(old)); id != "" {
		if now, _ := exec.Command(podman, "image", "inspect", "-f", "{{.Id}}", imageTag).Output(); strings.TrimSpace(string(now)) != id {
			exec.Command(podman, "rmi", id).Run()
		}
	}

	t.Run("config", func(t *testing.T) {
		out, err := exec.CommandContext(env.ctx, podman, "image", "inspect", imageTag).Output()
		if err != nil {
			t.Fatalf("podman image inspect: %v", err)
		}
		var imgs []struct {
			Config struct {
				Entrypoint   []string
				Cmd          []string
				User         string
				Labels       map[string]string
				ExposedPorts map[string]struct{}
			}
			RootFS struct{ Layers []string }
		}
		if err := json.Unmarshal(out, &imgs); err != nil || len(imgs) != 1 {
			t.Fatalf("podman image inspect: %v: %s", err, out)
		}
		c := imgs[0].Config
		if strings.Join(c.Entrypoint, " ") != "/bin/blindspot" {
			t.Errorf("entrypoint %q, want [/bin/blindspot]", c.Entrypoint)
		}
		if c.User != "0:0" {
			t.Errorf("user %q, want 0:0", c.User)
		}
		if _, ok := c.ExposedPorts["9464/tcp"]; !ok {
			t.Errorf("exposed ports %v, want 9464/tcp", c.ExposedPorts)
		}
		for _, l := range []string{"title", "description", "source", "url", "licenses", "version", "revision"} {
			if c.Labels["org.opencontainers.image."+l] == "" {
				t.Errorf("label org.opencontainers.image.%s missing", l)
			}
		}
		if got := c.Labels["org.opencontainers.image.version"]; got != "e2e" {
			t.Errorf("version label %q, want e2e", got)
		}
		// The binary carries the same version and revision as the labels
		// (make image builds it with make build's -X flags).
		rev, _ := exec.Command("git", "-C", env.repoRoot, "rev-parse", "HEAD").Output()
		if got := c.Labels["org.opencontainers.image.revision"]; got != strings.TrimSpace(string(rev)) {
			t.Errorf("revision label %q, want %q", got, strings.TrimSpace(string(rev)))
		}
		if v := imageAgentVersion(t, podman); !strings.HasPrefix(v, "blindspot, version e2e (branch: ") || !strings.Contains(v, "revision: "+strings.TrimSpace(string(rev))+")") {
			t.Errorf("the image's blindspot --version:\n%s\nwant version e2e and revision %s", v, rev)
		}
		// Only the binary and the CA certificates: no shell, nothing else.
		files := imageFiles(t, podman)
		want := []string{"bin/blindspot", "etc/ssl/certs/ca-certificates.crt"}
		if strings.Join(files, " ") != strings.Join(want, " ") {
			t.Errorf("image files %q, want %q", files, want)
		}
	})

	t.Run("run", func(t *testing.T) {
		runAgentContainer(t, podman, caps, v)
	})
}

// imageAgentVersion runs the image's /bin/blindspot --version from the
// mounted image (not in a container: the flag needs no privilege).
func imageAgentVersion(t *testing.T, podman string) string {
	t.Helper()
	out, err := exec.CommandContext(env.ctx, podman, "image", "mount", imageTag).Output()
	if err != nil {
		t.Fatalf("podman image mount: %v", err)
	}
	defer exec.Command(podman, "image", "unmount", imageTag).Run()
	v, err := exec.CommandContext(env.ctx, filepath.Join(strings.TrimSpace(string(out)), "bin", "blindspot"), "--version").Output()
	if err != nil {
		t.Fatalf("blindspot --version from the image: %v", err)
	}
	return string(v)
}

// imageFiles lists the regular files of the image (podman image mount).
func imageFiles(t *testing.T, podman string) []string {
	t.Helper()
	out, err := exec.CommandContext(env.ctx, podman, "image", "mount", imageTag).Output()
	if err != nil {
		t.Fatalf("podman image mount: %v", err)
	}
	defer exec.Command(podman, "image", "unmount", imageTag).Run()
	root := strings.TrimSpace(string(out))
	var files []string
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// runAgentContainer runs the image as deploy/daemonset.yaml runs it: host PID
// namespace, read-only root filesystem, all capabilities dropped but caps.
//
// Two settings depart from podman's defaults, both for this kind of host and
// neither widening the agent's privileges:
//   - --runtime=runc: Debian bookworm's crun refuses to start any container
//     on a host with cgroups in hybrid mode (v1 controllers plus a cgroup2
//     mount holding a controller: "cgroups in hybrid mode not supported"),
//     as this VM has; runc runs it.
//   - --ulimit nofile/nproc at the caller's own limits: podman's defaults
//     (1048576 of each) are above the hard limits here, and raising a hard
//     limit needs CAP_SYS_RESOURCE, which root lacks in this VM. podman 4.3
//     runs conmon, and so runc, with at most 32768 processes (seen in
//     /proc/CONMON/limits), so nproc is capped there too.
//
// And one that does, said plainly: --security-opt seccomp=unconfined. The
// default seccomp profile podman uses here (/usr/share/containers/seccomp.json
// of Debian's containers-common 0.50) allows bpf(2) and perf_event_open(2)
// only to a container holding CAP_SYS_ADMIN; with CAP_BPF and CAP_PERFMON
// alone the agent's first BPF call fails with EPERM (it then reports "failed
// to set memlock rlimit"). containerd 1.6.9+/1.7+ and Docker 23+ allow both
// to CAP_BPF/CAP_PERFMON under their default profile; see the seccomp note
// of deploy/daemonset.yaml and README "Running on Kubernetes".
func runAgentContainer(t *testing.T, podman string, caps []string, v variant) {
	var capArgs []string
	for _, c := range caps {
		capArgs = append(capArgs, strings.TrimPrefix(c, "CAP_"))
	}
	var nofile, nproc unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile); err != nil {
		t.Fatal(err)
	}
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &nproc); err != nil {
		t.Fatal(err)
	}
	const conmonNproc = 32768
	nproc.Cur, nproc.Max = min(nproc.Cur, conmonNproc), min(nproc.Max, conmonNproc)
	cfg := filepath.Join(t.TempDir(), "blindspot.yaml")
	if err := os.WriteFile(cfg, []byte(agentConfig("")), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &agentProc{t: t, addr: freePort(t), stderr: &syncBuffer{}, done: make(chan struct{})}
	name := fmt.Sprintf("blindspot-e2e-%d-%d", os.Getpid(), serviceSeq.Add(1))
	args := []string{"run", "--rm", "-d", "--name", name,
		"--runtime=runc",
		"--pid=host", "--network=host", "--read-only",
		"--cap-drop=ALL", "--cap-add=" + strings.Join(capArgs, ","),
		"--security-opt", "seccomp=unconfined",
		"--ulimit", fmt.Sprintf("nofile=%d:%d", nofile.Cur, nofile.Max),
		"--ulimit", fmt.Sprintf("nproc=%d:%d", nproc.Cur, nproc.Max),
		"-v", cfg + ":/etc/blindspot/blindspot.yaml:ro",
		imageTag,
		"--web.listen-address", a.addr, "--config", "/etc/blindspot/blindspot.yaml"}
	ctx, cancel := context.WithTimeout(env.ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, podman, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := exec.Command(podman, "logs", name).CombinedOutput()
			t.Logf("container output:\n%s", logs)
		}
		exec.Command(podman, "stop", "-t", "10", name).Run()
		exec.Command(podman, "rm", "-f", "--ignore", name).Run()
	})

	if !waitFor(20*time.Second, func() bool {
		b, err := a.get("/healthz")
		return err == nil && strings.TrimSpace(string(b)) == "ok"
	}) {
		t.Fatalf("containerised agent's /healthz not ok within 20s")
	}

	// The agent process, seen from the host: exactly the declared
	// capabilities, whatever podman adds by default.
	out, err = exec.Command(podman, "inspect", "-f", "{{.State.Pid}}", name).Output()
	if err != nil {
		t.Fatalf("podman inspect: %v", err)
	}
	var pid int
	if _, err := fmt.Sscan(strings.TrimSpace(string(out)), &pid); err != nil {
		t.Fatalf("container pid %q: %v", out, err)
	}
	if got, want := capEff(t, pid), capMask(t, caps); got != want {
		t.Fatalf("containerised agent's effective capabilities %#x, want exactly %#x (%v)", got, want, caps)
	}

	tp := startTarget(t, v.exe, uniqueService("image", v))
	a.waitTargeted(t, tp.pid, 15*time.Second)
	countTeapots(t, a, tp, 11, "containerised agent")
}
