// Package container finds the container a process runs in from its
// /proc/PID/cgroup: the container's ID, the runtime that made it, and, for
// a Kubernetes pod, the pod's UID. It knows the path layouts of containerd,
// CRI-O, Docker and podman under the systemd and cgroupfs drivers, on
// cgroup v1 and v2, seen from the host's cgroup namespace or from a
// container's own (where paths start with "/..").
//
// It reads only the process's cgroup file, which any process may read: no
// runtime socket, no API. The ID is what the Kubernetes API reports in a
// pod's container statuses (after the "containerd://" or "cri-o://"
// prefix), which is how package kube finds the pod and container name.
package container
