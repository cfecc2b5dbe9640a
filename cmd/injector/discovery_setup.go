package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tandem-mesh/tandem/internal/discovery"
	"github.com/tandem-mesh/tandem/internal/kubewatch"
)

// Discovery reviews agents' tokens, reads the namespaces and pods they come
// from, and watches what the agents used to watch themselves.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups="",resources=pods,verbs=get
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=traffic.tandem.dev,resources=trafficpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes;grpcroutes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch

// setupDiscovery adds discovery to the manager, on every replica.
func setupDiscovery(mgr ctrl.Manager, o *serveOptions, certs *servingCerts) (*discovery.Server, error) {
	srv, err := newDiscovery(mgr.GetConfig(), o, certs, mgr.GetLogger().WithName("discovery"), cachedNamespace(mgr.GetClient()))
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", o.discoveryAddr)
	if err != nil {
		return nil, fmt.Errorf("flag --discovery-addr=%q: %w", o.discoveryAddr, err)
	}
	if err := mgr.AddReadyzCheck("discovery", func(*http.Request) error {
		if !srv.Ready() {
			return errors.New("discovery has not loaded the cluster's state yet")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return srv, mgr.Add(discoveryRunnable{srv: srv, lis: lis})
}

// newDiscovery builds discovery serving the injector's certificate.
func newDiscovery(cfg *rest.Config, o *serveOptions, certs *servingCerts, log logr.Logger, namespace func(context.Context, string) (*corev1.Namespace, error)) (*discovery.Server, error) {
	sources, err := kubewatch.NewSources(cfg)
	if err != nil {
		return nil, err
	}
	// Every agent's stream starts with a TokenReview, and after a restart
	// of discovery all agents reconnect at once: client-side throttling at
	// client-go's default 5 per second would hold them for tens of seconds.
	// The API server's priority and fairness still bounds the load.
	reviews := rest.CopyConfig(cfg)
	reviews.QPS, reviews.Burst = 200, 400
	kube, err := kubernetes.NewForConfig(reviews)
	if err != nil {
		return nil, err
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	srv, err := discovery.New(discovery.Options{
		Sources:   sources,
		Kube:      kube,
		Metadata:  meta,
		Namespace: namespace,
		TLS:       &tls.Config{GetCertificate: certs.get, MinVersion: tls.VersionTLS12},
		Refused:   []string{o.InjectorNamespace, "kube-system", "kube-public", "kube-node-lease"},
		Logger:    slog.New(logr.ToSlogHandler(log)),
	})
	if err != nil {
		return nil, err
	}
	return srv, nil
}

// cachedNamespace reads namespaces from the manager's cache, which the
// webhook shares.
func cachedNamespace(c client.Reader) func(context.Context, string) (*corev1.Namespace, error) {
	return func(ctx context.Context, name string) (*corev1.Namespace, error) {
		var ns corev1.Namespace
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
			return nil, err
		}
		return &ns, nil
	}
}

// discoveryRunnable runs discovery in the manager on every replica: it
// needs no leader.
type discoveryRunnable struct {
	srv *discovery.Server
	lis net.Listener
}

func (d discoveryRunnable) Start(ctx context.Context) error { return d.srv.Start(ctx, d.lis) }

func (discoveryRunnable) NeedLeaderElection() bool { return false }
