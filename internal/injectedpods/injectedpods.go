// Package injectedpods watches the cluster's injected pods and exports how
// many run sidecars that are current or stale against what the installed
// injection renders now (tandem_injector_pods): the fleet-wide view of
// `kubectl tandem status`, for alerts after an upgrade. It keeps of each
// pod only what the verdict reads: its Tandem annotations, phase and the
// sidecars its status lists.
package injectedpods

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/tandem-mesh/tandem/internal/staleness"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

// Options configure a Watcher.
type Options struct {
	Kube kubernetes.Interface
	// Injector renders what a pod gets now.
	Injector func(context.Context) (*webhook.Injector, error)
	// Namespace reads a namespace (from the injector's cache).
	Namespace func(context.Context, string) (*corev1.Namespace, error)
	Logger    *slog.Logger
}

// Watcher is the watch of pods and the collector of their verdicts.
type Watcher struct {
	opts     Options
	informer cache.SharedIndexInformer

	mu sync.Mutex
	// verdicts are kept until the pod, its namespace or the injection
	// change: a scrape renders only what changed.
	verdicts map[types.UID]cached
}

type cached struct {
	podVersion, nsVersion string
	injector              *webhook.Injector
	verdict               staleness.Verdict
}

var descPods = prometheus.NewDesc("tandem_injector_pods",
	"Running and pending injected pods, by whether their sidecars are what the installed injection renders now (state: current, stale, unknown) and who injected them (injected_by: webhook, policy).",
	[]string{"state", "injected_by"}, nil)

// New builds a Watcher; Start runs it.
func New(o Options) (*Watcher, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	w := &Watcher{opts: o, verdicts: map[types.UID]cached{}}
	w.informer = informers.NewSharedInformerFactoryWithOptions(o.Kube, 0).Core().V1().Pods().Informer()
	if err := w.informer.SetTransform(strip); err != nil {
		return nil, err
	}
	if err := w.informer.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		o.Logger.Warn("watch failed; retrying with backoff", "resource", "pods", "error", err)
	}); err != nil {
		return nil, err
	}
	return w, nil
}

// Start watches until ctx ends.
func (w *Watcher) Start(ctx context.Context) error {
	w.informer.RunWithContext(ctx)
	return nil
}

// NeedLeaderElection: one replica watching the pods is enough.
func (w *Watcher) NeedLeaderElection() bool { return true }

// strip keeps what a verdict reads; a pod without tandem.dev/status keeps
// its name only.
func strip(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	if _, injected := pod.Annotations[wellknown.StatusAnnotation]; !injected {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion}}, nil
	}
	return staleness.Relevant(pod), nil
}

// Describe implements prometheus.Collector.
func (w *Watcher) Describe(ch chan<- *prometheus.Desc) { ch <- descPods }

// Collect implements prometheus.Collector. Nothing is reported before the
// pods are loaded, nor on a replica that does not watch them (not the
// leader).
func (w *Watcher) Collect(ch chan<- prometheus.Metric) {
	if !w.informer.HasSynced() {
		return
	}
	ctx := context.Background()
	in, err := w.opts.Injector(ctx)
	if err != nil {
		w.opts.Logger.Warn("pods' sidecars not compared", "error", err)
		in = nil
	}
	type key struct{ state, by string }
	counts := map[key]int{}
	for _, by := range []string{staleness.ByWebhook, staleness.ByPolicy} {
		for _, state := range []string{staleness.Current, staleness.Stale, staleness.Unknown} {
			counts[key{state, by}] = 0
		}
	}
	namespaces := map[string]*corev1.Namespace{}
	w.mu.Lock()
	live := make(map[types.UID]cached, len(w.verdicts))
	for _, obj := range w.informer.GetStore().List() {
		pod := obj.(*corev1.Pod)
		if _, injected := pod.Annotations[wellknown.StatusAnnotation]; !injected ||
			pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		ns, ok := namespaces[pod.Namespace]
		if !ok {
			if ns, err = w.opts.Namespace(ctx, pod.Namespace); err != nil {
				ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: pod.Namespace}}
			}
			namespaces[pod.Namespace] = ns
		}
		c, ok := w.verdicts[pod.UID]
		if !ok || c.podVersion != pod.ResourceVersion || c.nsVersion != ns.ResourceVersion || c.injector != in {
			c = cached{podVersion: pod.ResourceVersion, nsVersion: ns.ResourceVersion, injector: in,
				verdict: staleness.Check(in, pod, webhook.Namespace{Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations})}
		}
		live[pod.UID] = c
		counts[key{c.verdict.State, c.verdict.InjectedBy}]++
	}
	w.verdicts = live
	w.mu.Unlock()
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(descPods, prometheus.GaugeValue, float64(n), k.state, k.by)
	}
}
