package kubewatch

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
)

// Sources are the clients the agent reads the cluster through: each lists
// and watches one kind in one namespace (metav1.NamespaceAll for all).
type Sources struct {
	// Services and EndpointSlices are required.
	Services, EndpointSlices func(namespace string) cache.ListerWatcher
	// Policies lists and watches the TrafficPolicies; required.
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
// Every client knows only its own kinds: client-go's clientset would
// register every API group of Kubernetes when the program starts, which
// an agent following discovery would carry in memory for nothing.
func NewSources(cfg *rest.Config) (Sources, error) {
	core, err := builtinClient(cfg, "/api", corev1.SchemeGroupVersion, corev1.AddToScheme)
	if err != nil {
		return Sources{}, fmt.Errorf("Services client: %w", err)
	}
	disc, err := builtinClient(cfg, "/apis", discoveryv1.SchemeGroupVersion, discoveryv1.AddToScheme)
	if err != nil {
		return Sources{}, fmt.Errorf("EndpointSlices client: %w", err)
	}
	pc, err := crdClient(cfg, v1alpha1.GroupVersion, v1alpha1.AddToScheme)
	if err != nil {
		return Sources{}, fmt.Errorf("TrafficPolicy client: %w", err)
	}
	gc, err := crdClient(cfg, schema.GroupVersion{Group: gatewayv1.GroupName, Version: "v1"}, gatewayv1.Install)
	if err != nil {
		return Sources{}, fmt.Errorf("Gateway API client: %w", err)
	}
	return Sources{
		Services:       ListWatch(core, "services"),
		EndpointSlices: ListWatch(disc, "endpointslices"),
		Policies:       ListWatch(pc, "trafficpolicies"),
		HTTPRoutes:     ListWatch(gc, "httproutes"),
		GRPCRoutes:     ListWatch(gc, "grpcroutes"),
	}, nil
}

// ListWatch lists and watches resource through c, in a namespace.
func ListWatch(c cache.Getter, resource string) func(string) cache.ListerWatcher {
	return func(ns string) cache.ListerWatcher {
		return cache.NewListWatchFromClient(c, resource, ns, fields.Everything())
	}
}

// builtinClient is a protobuf REST client of one built-in group version.
func builtinClient(cfg *rest.Config, apiPath string, gv schema.GroupVersion, addToScheme func(*runtime.Scheme) error) (*rest.RESTClient, error) {
	scheme := runtime.NewScheme()
	if err := addToScheme(scheme); err != nil {
		return nil, err
	}
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &gv
	c.APIPath = apiPath
	c.ContentType = "application/vnd.kubernetes.protobuf"
	c.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	return rest.RESTClientFor(c)
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
