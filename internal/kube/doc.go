// Package kube tells which Kubernetes pod, container and workload a
// process belongs to. It watches the pods of the agent's own node (one
// list then watch, restricted by a field selector on spec.nodeName),
// indexes them by pod UID and container ID (package container reads both
// from a process's cgroup), and resolves each pod's owner to its
// workload: a ReplicaSet to its Deployment, a Job to its CronJob, through
// a bounded cache of read-only GETs. It never writes to the API.
//
// It speaks the API's REST protocol itself, over net/http and
// encoding/json, and decodes only the fields it reads, each object
// bounded in size: client-go and the API's Go types would make the agent
// tens of megabytes larger on every node. Its configuration is a
// kubeconfig's current context (tokens, token files and client
// certificates; credential plugins are refused) or the pod's service
// account, whose token is read again every minute.
//
// When the API cannot be reached the agent goes on without these labels,
// retrying with a backoff; Status says since when and why, for the status
// page.
package kube
