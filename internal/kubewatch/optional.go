package kubewatch

import (
	"context"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// absentRecheck is how often a resource the API server does not serve is
// asked for again.
var absentRecheck = 30 * time.Second

// optional lists and watches a resource that may not be served: when the
// API server does not know it (its CRD is not installed) or refuses it to
// this client, it is an empty list, asked for again every absentRecheck,
// so that the informer syncs and everything else is served meanwhile.
// changed hears when the resource becomes unserved (with the error) and
// served again (nil).
type optional struct {
	lw      cache.ListerWatcherWithContext
	newList func() runtime.Object
	changed func(error)

	mu     sync.Mutex
	absent bool
}

func newOptional(lw cache.ListerWatcher, newList func() runtime.Object, changed func(error)) *optional {
	return &optional{lw: cache.ToListerWatcherWithContext(lw), newList: newList, changed: changed}
}

func (o *optional) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	list, err := o.lw.ListWithContext(ctx, opts)
	switch {
	case apierrors.IsNotFound(err) || apierrors.IsForbidden(err):
		o.set(true, err)
		return o.newList(), nil
	case err == nil:
		o.set(false, nil)
	}
	return list, err
}

func (o *optional) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	o.mu.Lock()
	absent := o.absent
	o.mu.Unlock()
	if !absent {
		return o.lw.WatchWithContext(ctx, opts)
	}
	// A watch without events that ends after a while, when the informer
	// lists again.
	w := watch.NewFake()
	time.AfterFunc(absentRecheck, w.Stop)
	return w, nil
}

func (o *optional) List(opts metav1.ListOptions) (runtime.Object, error) {
	return o.ListWithContext(context.Background(), opts)
}

func (o *optional) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return o.WatchWithContext(context.Background(), opts)
}

// IsWatchListSemanticsUnSupported keeps the informer to plain list and
// watch, which optional answers.
func (*optional) IsWatchListSemanticsUnSupported() bool { return true }

func (o *optional) set(absent bool, err error) {
	o.mu.Lock()
	was := o.absent
	o.absent = absent
	o.mu.Unlock()
	if was != absent {
		o.changed(err)
	}
}

// LogUnserved is a Handler.Unserved that logs: a resource the API server
// does not serve (a route kind whose CRD is not installed, or one this
// client may not read), and its return.
func LogUnserved(log *slog.Logger) func(resource, namespace string, err error) {
	return func(resource, ns string, err error) {
		if ns == "" {
			ns = "all namespaces"
		}
		if err != nil {
			log.Warn("the API server does not serve this resource (its CRD is not installed, or it may not be read): none of it is applied; asking again every "+absentRecheck.String(),
				"resource", resource, "namespace", ns, "error", err)
			return
		}
		log.Info("the API server serves this resource now", "resource", resource, "namespace", ns)
	}
}
