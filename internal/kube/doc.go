// Package kube tells which Kubernetes pod, container and workload a
// process belongs to. It watches the pods of the agent's own node (one
// watch, restricted by a field selector on spec.nodeName), indexes them by
// pod UID and container ID (package container reads both from a process's
// cgroup), and resolves each pod's owner to its workload: a ReplicaSet to
// its Deployment, a Job to its CronJob, through a bounded cache of
// read-only GETs. It never writes to the API.
//
// When the API cannot be reached the agent goes on without these labels;
// Status says since when and why, for the status page.
package kube
