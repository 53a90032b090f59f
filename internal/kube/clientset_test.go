package kube

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// clientsetAPI is the API over a client-go clientset (the tests' fake
// one), asked as client-go's pod informer asks it (a fake clientset
// answers no streaming list: the informer lists, then watches).
type clientsetAPI struct{ c kubernetes.Interface }

func (a clientsetAPI) Pods(tweak func(*metav1.ListOptions)) cache.ListerWatcher {
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return a.c.CoreV1().Pods(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return a.c.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, o)
		},
	}, a.c)
}

func (a clientsetAPI) ReplicaSet(ctx context.Context, namespace, name string) (*appsv1.ReplicaSet, error) {
	return a.c.AppsV1().ReplicaSets(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (a clientsetAPI) Job(ctx context.Context, namespace, name string) (*batchv1.Job, error) {
	return a.c.BatchV1().Jobs(namespace).Get(ctx, name, metav1.GetOptions{})
}
