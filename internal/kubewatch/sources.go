package kubewatch

import (
	"fmt"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
)

// Sources are the clients the agent reads the cluster through.
type Sources struct {
	// Kube lists and watches Services and EndpointSlices.
	Kube kubernetes.Interface
	// Policies lists and watches the TrafficPolicies of one namespace
	// (metav1.NamespaceAll for all).
	Policies func(namespace string) cache.ListerWatcher
}

// NewSources builds the clients from a REST config. Services and
// EndpointSlices travel as protobuf, cheaper to decode than JSON; the
// TrafficPolicy custom resource is served as JSON only.
func NewSources(cfg *rest.Config) (Sources, error) {
	kcfg := rest.CopyConfig(cfg)
	kcfg.ContentType = "application/vnd.kubernetes.protobuf"
	kcfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	kube, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		return Sources{}, fmt.Errorf("kubernetes client: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return Sources{}, err
	}
	pcfg := rest.CopyConfig(cfg)
	pcfg.GroupVersion = &v1alpha1.GroupVersion
	pcfg.APIPath = "/apis"
	pcfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if pcfg.UserAgent == "" {
		pcfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	pc, err := rest.RESTClientFor(pcfg)
	if err != nil {
		return Sources{}, fmt.Errorf("TrafficPolicy client: %w", err)
	}
	return Sources{
		Kube: kube,
		Policies: func(ns string) cache.ListerWatcher {
			return cache.NewListWatchFromClient(pc, "trafficpolicies", ns, fields.Everything())
		},
	}, nil
}
