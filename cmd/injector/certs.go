package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/tandem-mesh/tandem/internal/servingcert"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// servingCerts is where the injector's TLS certificate (webhook and
// discovery) comes from: the files of --cert-dir, as cert-manager's Secret
// is mounted in config/default, or the Secret of --cert-secret, which the
// injector issues and renews itself when nothing else does.
type servingCerts struct {
	// get serves the current certificate.
	get func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ca returns the PEM of the CA agents verify discovery with ("" for none).
	ca func() string
	// keep keeps the certificate current until ctx ends.
	keep func(ctx context.Context) error
	// caChanged, when not nil, receives a value each time ca() changes.
	caChanged <-chan struct{}
}

// loadServingCerts prepares the certificate of --cert-secret or --cert-dir.
// A Secret is loaded (issued if need be) before it returns, so what the
// injector injects carries the CA from its first pod on.
func loadServingCerts(ctx context.Context, cfg *rest.Config, o *serveOptions, log logr.Logger) (*servingCerts, error) {
	if o.certSecret == "" {
		return dirCerts(o.certDir)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dns, ips := servingNames(o.InjectorNamespace, o.Defaults.DiscoveryAddress)
	changed := make(chan struct{}, 1)
	k, err := servingcert.New(servingcert.Options{
		Client: kube, Namespace: o.InjectorNamespace, Name: o.certSecret,
		DNSNames: dns, IPs: ips,
		Logger: slog.New(logr.ToSlogHandler(log.WithName("certificate"))),
		OnCA: func(string) {
			select {
			case changed <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		return nil, err
	}
	// A cluster that refuses the Secret (RBAC, quota) fails the start with
	// the reason, rather than leaving a replica that never serves.
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := k.Load(lctx); err != nil {
		return nil, fmt.Errorf("flag --cert-secret=%s: %w", o.certSecret, err)
	}
	return &servingCerts{get: k.GetCertificate, ca: k.CA, keep: k.Start, caChanged: changed}, nil
}

// dirCerts serves the files of dir, reloaded when they change; the CA is
// read once from ca.crt (none: injected agents watch the API server).
func dirCerts(dir string) (*servingCerts, error) {
	w, err := certwatcher.New(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("the serving certificate in --cert-dir=%s (or use --cert-secret): %w", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("discovery's CA in --cert-dir=%s: %w", dir, err)
	}
	ca := string(b)
	return &servingCerts{get: w.GetCertificate, ca: func() string { return ca }, keep: w.Start}, nil
}

// servingNames are the names the injector is reached by: its webhook and
// discovery Services, and the host of the discovery address agents dial.
func servingNames(namespace, discoveryAddress string) (dns []string, ips []net.IP) {
	for _, svc := range []string{wellknown.DiscoveryService, wellknown.WebhookService} {
		dns = append(dns, svc+"."+namespace+".svc", svc+"."+namespace+".svc.cluster.local")
	}
	host, _, err := net.SplitHostPort(discoveryAddress)
	if err != nil || host == "" {
		return dns, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return dns, []net.IP{ip}
	}
	for _, d := range dns {
		if d == host {
			return dns, nil
		}
	}
	return append(dns, host), nil
}
