package container

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Info is the container a process runs in. The zero Info means the process
// runs in no container blindspot knows of (a host process).
type Info struct {
	// ID is the container's ID: 64 hexadecimal digits.
	ID string
	// Runtime made the container: "containerd", "cri-o", "docker",
	// "podman", or "" when the path does not say (cgroupfs layouts).
	Runtime string
	// PodUID is the Kubernetes pod's UID when the path is a kubelet's
	// (kubepods...): it names the pod even before the container's ID
	// reaches the pod's status.
	PodUID string
}

// maxCgroupFile bounds what is read of a cgroup file: a real one has one
// line per hierarchy (a dozen or so) of at most a few hundred bytes.
const maxCgroupFile = 64 << 10

// ErrTooLarge is returned for a cgroup file past maxCgroupFile.
var ErrTooLarge = errors.New("cgroup file too large")

// ForProcess reads /proc/PID/cgroup under procRoot ("/proc" on a host).
func ForProcess(procRoot string, pid int) (Info, error) {
	f, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	return Parse(f)
}

// Parse reads a /proc/PID/cgroup file. The cgroup v2 line ("0::path")
// is tried first, then the v1 lines in order: on hybrid hosts the v2 line
// may be "/" while the v1 controllers hold the container's path, and on
// some hosts a v1 controller is moved elsewhere (a memory cgroup of the
// host's supervisor), so every line is tried until one names a container.
// A file naming no container gives the zero Info and no error.
func Parse(r io.Reader) (Info, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxCgroupFile+1))
	if err != nil {
		return Info{}, fmt.Errorf("read cgroup file: %w", err)
	}
	if len(b) > maxCgroupFile {
		return Info{}, ErrTooLarge
	}
	var paths []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxCgroupFile)
	for sc.Scan() {
		// hierarchy-ID:controller-list:path; the path may hold ':'.
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			paths = append([]string{parts[2]}, paths...)
		} else {
			paths = append(paths, parts[2])
		}
	}
	if err := sc.Err(); err != nil {
		return Info{}, fmt.Errorf("read cgroup file: %w", err)
	}
	for _, p := range paths {
		if info, ok := FromPath(p); ok {
			return info, nil
		}
	}
	return Info{}, nil
}

// FromPath finds the container in one cgroup path. The container is the
// deepest path component that names one: runtimes that run a container's
// processes in a child cgroup (crun's "container", a container's own
// systemd) put them below it.
func FromPath(path string) (Info, bool) {
	comps := strings.Split(path, "/")
	for i := len(comps) - 1; i >= 0; i-- {
		id, runtime, ok := containerComponent(comps[i])
		if !ok {
			continue
		}
		info := Info{ID: id, Runtime: runtime}
		for j := i - 1; j >= 0; j-- {
			if uid, ok := podComponent(comps[j]); ok {
				info.PodUID = uid
				break
			}
		}
		if info.Runtime == "" && i > 0 && comps[i-1] == "docker" {
			info.Runtime = "docker" // cgroupfs: /docker/<id>
		}
		return info, true
	}
	return Info{}, false
}

// runtimePrefixes are the systemd unit (and CRI-O cgroupfs) prefixes of a
// container's cgroup, and the runtime each names. conmon, CRI-O's monitor,
// has a cgroup of its own ("crio-conmon-<id>.scope") that is not the
// container's: its prefix is not here, so it is never taken for one.
var runtimePrefixes = []struct{ prefix, runtime string }{
	{"cri-containerd-", "containerd"},
	{"crio-", "cri-o"},
	{"docker-", "docker"},
	{"libpod-", "podman"},
}

// containerComponent reports whether one path component names a
// container: "<prefix><id>.scope", "<prefix><id>" or a bare "<id>".
func containerComponent(c string) (id, runtime string, ok bool) {
	c = strings.TrimSuffix(c, ".scope")
	for _, p := range runtimePrefixes {
		if rest, found := strings.CutPrefix(c, p.prefix); found {
			if isContainerID(rest) {
				return rest, p.runtime, true
			}
			return "", "", false
		}
	}
	if isContainerID(c) {
		return c, "", true
	}
	return "", "", false
}

// isContainerID reports whether s is 64 lowercase hexadecimal digits, the
// ID every CRI runtime and Docker give a container.
func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// podComponent finds a pod UID in a kubelet cgroup component:
// "pod<uid>" (cgroupfs) or "kubepods[-<qos>]-pod<uid with '_'>.slice"
// (systemd, which does not allow '-' inside a name's parts).
func podComponent(c string) (string, bool) {
	var uid string
	switch {
	case strings.HasPrefix(c, "pod"):
		uid = c[len("pod"):]
	case strings.HasPrefix(c, "kubepods") && strings.HasSuffix(c, ".slice"):
		i := strings.LastIndex(c, "-pod")
		if i < 0 {
			return "", false
		}
		uid = strings.ReplaceAll(strings.TrimSuffix(c[i+len("-pod"):], ".slice"), "_", "-")
	default:
		return "", false
	}
	if !isUID(uid) {
		return "", false
	}
	return uid, true
}

// isUID reports whether s is a UUID as Kubernetes writes one
// (8-4-4-4-12 lowercase hexadecimal digits).
func isUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}
