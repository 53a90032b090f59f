package kube

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// API is what the watcher asks of the Kubernetes API: the pods (listed
// and watched, each request narrowed by tweak), and the two kinds of
// owners it resolves to their workloads.
type API interface {
	Pods(tweak func(*metav1.ListOptions)) cache.ListerWatcher
	ReplicaSet(ctx context.Context, namespace, name string) (*appsv1.ReplicaSet, error)
	Job(ctx context.Context, namespace, name string) (*batchv1.Job, error)
}

// restAPI is the API the agent runs: REST clients of the three API groups
// it reads, with a scheme of their types only. (client-go's clientset
// registers the types of every API group when the program starts, which
// held about 8 MB of the agent's memory whether it ran in Kubernetes or
// not.)
type restAPI struct {
	core, apps, batch *rest.RESTClient
}

// newRESTAPI returns the API reached through cfg.
func newRESTAPI(cfg *rest.Config) (*restAPI, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("register types: %w", err)
		}
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	codecs := serializer.NewCodecFactory(scheme).WithoutConversion()
	client := func(gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
		c := rest.CopyConfig(cfg)
		c.GroupVersion = &gv
		c.APIPath = apiPath
		c.NegotiatedSerializer = codecs
		if c.UserAgent == "" {
			c.UserAgent = rest.DefaultKubernetesUserAgent()
		}
		rc, err := rest.RESTClientFor(c)
		if err != nil {
			return nil, fmt.Errorf("%s client: %w", gv, err)
		}
		return rc, nil
	}
	var a restAPI
	var err error
	if a.core, err = client(corev1.SchemeGroupVersion, "/api"); err != nil {
		return nil, err
	}
	if a.apps, err = client(appsv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	if a.batch, err = client(batchv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	return &a, nil
}

func (a *restAPI) Pods(tweak func(*metav1.ListOptions)) cache.ListerWatcher {
	return cache.NewFilteredListWatchFromClient(a.core, "pods", metav1.NamespaceAll, tweak)
}

func (a *restAPI) ReplicaSet(ctx context.Context, namespace, name string) (*appsv1.ReplicaSet, error) {
	rs := &appsv1.ReplicaSet{}
	err := a.apps.Get().Namespace(namespace).Resource("replicasets").Name(name).
		VersionedParams(&metav1.GetOptions{}, metav1.ParameterCodec).Do(ctx).Into(rs)
	return rs, err
}

func (a *restAPI) Job(ctx context.Context, namespace, name string) (*batchv1.Job, error) {
	job := &batchv1.Job{}
	err := a.batch.Get().Namespace(namespace).Resource("jobs").Name(name).
		VersionedParams(&metav1.GetOptions{}, metav1.ParameterCodec).Do(ctx).Into(job)
	return job, err
}
