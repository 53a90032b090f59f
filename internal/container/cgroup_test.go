package container

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	fixtureID  = "3f7b2c9d81e04a56b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4"
	fixturePod = "5f3c8a1e-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
)

// TestParseFixtures reads one cgroup file of each layout: cgroup v1 and v2;
// containerd, CRI-O, Docker and podman; systemd and cgroupfs drivers; and
// host processes that are in no container.
func TestParseFixtures(t *testing.T) {
	pod := Info{ID: fixtureID, PodUID: fixturePod}
	with := func(i Info, runtime string) Info { i.Runtime = runtime; return i }
	want := map[string]Info{
		"v2-containerd-systemd":            with(pod, "containerd"),
		"v2-containerd-systemd-guaranteed": with(pod, "containerd"),
		"v2-containerd-cgroupfs":           pod, // the path does not name the runtime
		"v2-crio-systemd":                  with(pod, "cri-o"),
		"v2-crio-cgroupfs":                 with(pod, "cri-o"),
		"v2-crio-conmon":                   {}, // CRI-O's monitor, not the container
		"v2-docker-systemd":                {ID: fixtureID, Runtime: "docker"},
		"v2-docker-cgroupfs":               {ID: fixtureID, Runtime: "docker"},
		"v2-podman-crun":                   {ID: fixtureID, Runtime: "podman"},
		"v2-namespaced":                    with(pod, "containerd"),
		"v2-host-service":                  {},
		"v2-host-user":                     {},
		"v1-containerd-cgroupfs":           pod,
		"v1-docker-systemd-kubelet":        with(pod, "docker"),
		"v1-crio-systemd":                  with(pod, "cri-o"),
		"v1-crio-cgroupfs":                 with(pod, "cri-o"),
		"v1-docker-cgroupfs":               {ID: fixtureID, Runtime: "docker"},
		"v1-hybrid-v2-root":                pod,
		"v1-host":                          {},
	}
	files, err := filepath.Glob("testdata/*.cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("%d fixtures, %d expectations: every fixture needs one", len(files), len(want))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".cgroup")
		t.Run(name, func(t *testing.T) {
			w, ok := want[name]
			if !ok {
				t.Fatalf("no expectation for %s", file)
			}
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := Parse(f)
			if err != nil {
				t.Fatal(err)
			}
			if got != w {
				t.Errorf("Parse(%s) = %+v, want %+v", name, got, w)
			}
		})
	}
}

func TestFromPathRejectsLookalikes(t *testing.T) {
	for _, p := range []string{
		"/kubepods/burstable/pod" + fixturePod,                               // the pod's own cgroup
		"/docker/" + strings.ToUpper(fixtureID),                              // not lowercase hex
		"/docker/" + fixtureID[:63],                                          // one digit short
		"/system.slice/docker-" + fixtureID + "x.scope",                      // trailing junk
		"/system.slice/containerd.service",                                   // the runtime itself
		"/kubepods.slice/kubepods-podnotauid.slice/cri-containerd-abc.scope", // neither
	} {
		if info, ok := FromPath(p); ok {
			t.Errorf("FromPath(%q) = %+v, want no container", p, info)
		}
	}
	// A pod-like component that is not a UID gives the container without a pod.
	info, ok := FromPath("/kubepods/burstable/podnotauid/" + fixtureID)
	if !ok || info.PodUID != "" || info.ID != fixtureID {
		t.Errorf("FromPath with a bad pod UID = %+v, %v", info, ok)
	}
}

func TestParseBounds(t *testing.T) {
	big := strings.Repeat("1:cpu:/"+strings.Repeat("a", 1000)+"\n", 100)
	if _, err := Parse(strings.NewReader(big)); err != ErrTooLarge {
		t.Errorf("Parse of %d bytes: err = %v, want ErrTooLarge", len(big), err)
	}
	// Malformed lines are skipped, not errors.
	info, err := Parse(strings.NewReader("garbage\n::\n4:memory:/docker/" + fixtureID + "\n"))
	if err != nil || info.ID != fixtureID {
		t.Errorf("Parse with malformed lines = %+v, %v", info, err)
	}
}

// TestForProcessSelf reads this process's own file: whatever it holds, it
// must parse.
func TestForProcessSelf(t *testing.T) {
	if _, err := ForProcess("/proc", os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := ForProcess("/proc", 0); err == nil {
		t.Error("ForProcess(0) succeeded")
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.cgroup")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := Parse(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		if info.ID != "" && !isContainerID(info.ID) {
			t.Errorf("ID %q is not a container ID", info.ID)
		}
		if info.PodUID != "" && !isUID(info.PodUID) {
			t.Errorf("pod UID %q is not a UID", info.PodUID)
		}
		if info.ID == "" && info != (Info{}) {
			t.Errorf("no ID but %+v", info)
		}
	})
}
