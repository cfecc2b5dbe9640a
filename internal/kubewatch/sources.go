package kubewatch

import (
	"fmt"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
)

// Sources are the clients the agent reads the cluster through.
type Sources struct {
	// Kube lists and watches Services and EndpointSlices.
	Kube kubernetes.Interface
	// Policies lists and watches the TrafficPolicies of one namespace
	// (metav1.NamespaceAll for all).
	Policies func(namespace string) cache.ListerWatcher
	// HTTPRoutes and GRPCRoutes list and watch the Gateway API routes of
	// one namespace; nil watches none. Where the API server does not
	// serve them (their CRDs are not installed) they are watched as empty
	// until it does.
	HTTPRoutes, GRPCRoutes func(namespace string) cache.ListerWatcher
}

// NewSources builds the clients from a REST config. Services and
// EndpointSlices travel as protobuf, cheaper to decode than JSON; custom
// resources (TrafficPolicies, Gateway API routes) are served as JSON only.
func NewSources(cfg *rest.Config) (Sources, error) {
	kcfg := rest.CopyConfig(cfg)
	kcfg.ContentType = "application/vnd.kubernetes.protobuf"
	kcfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	kube, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		return Sources{}, fmt.Errorf("kubernetes client: %w", err)
	}
	pc, err := crdClient(cfg, v1alpha1.GroupVersion, v1alpha1.AddToScheme)
	if err != nil {
		return Sources{}, fmt.Errorf("TrafficPolicy client: %w", err)
	}
	gc, err := crdClient(cfg, schema.GroupVersion{Group: gatewayv1.GroupName, Version: "v1"}, gatewayv1.Install)
	if err != nil {
		return Sources{}, fmt.Errorf("Gateway API client: %w", err)
	}
	lw := func(c *rest.RESTClient, resource string) func(string) cache.ListerWatcher {
		return func(ns string) cache.ListerWatcher {
			return cache.NewListWatchFromClient(c, resource, ns, fields.Everything())
		}
	}
	return Sources{
		Kube:       kube,
		Policies:   lw(pc, "trafficpolicies"),
		HTTPRoutes: lw(gc, "httproutes"),
		GRPCRoutes: lw(gc, "grpcroutes"),
	}, nil
}

// crdClient is a JSON REST client of one custom resource group version.
func crdClient(cfg *rest.Config, gv schema.GroupVersion, addToScheme func(*runtime.Scheme) error) (*rest.RESTClient, error) {
	scheme := runtime.NewScheme()
	if err := addToScheme(scheme); err != nil {
		return nil, err
	}
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	return rest.RESTClientFor(c)
}
