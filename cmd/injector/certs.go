package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
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
	// onCAChange, when not nil, returns a new channel that receives a
	// value each time ca() changes (each reader subscribes its own).
	onCAChange func() <-chan struct{}
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
	var mu sync.Mutex
	var subscribers []chan struct{}
	k, err := servingcert.New(servingcert.Options{
		Client: kube, Namespace: o.InjectorNamespace, Name: o.certSecret,
		DNSNames: dns, IPs: ips,
		Logger: slog.New(logr.ToSlogHandler(log.WithName("certificate"))),
		OnCA: func(string) {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range subscribers {
				select {
				case c <- struct{}{}:
				default:
				}
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
	subscribe := func() <-chan struct{} {
		c := make(chan struct{}, 1)
		mu.Lock()
		defer mu.Unlock()
		subscribers = append(subscribers, c)
		return c
	}
	return &servingCerts{get: k.GetCertificate, ca: k.CA, keep: k.Start, onCAChange: subscribe}, nil
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
// discovery Services, the host of the discovery address agents dial, and
// loopback, where kubectl port-forward (or a test's API server) reaches it.
// The certificate it issues is trusted only through its own CA, so the
// loopback names let no one else pose as it.
func servingNames(namespace, discoveryAddress string) (dns []string, ips []net.IP) {
	for _, svc := range []string{wellknown.DiscoveryService, wellknown.WebhookService} {
		dns = append(dns, svc+"."+namespace+".svc", svc+"."+namespace+".svc.cluster.local")
	}
	dns = append(dns, "localhost")
	ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	host, _, err := net.SplitHostPort(discoveryAddress)
	if err != nil || host == "" {
		return dns, ips
	}
	if ip := net.ParseIP(host); ip != nil {
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
		return dns, ips
	}
	if !slices.Contains(dns, host) {
		dns = append(dns, host)
	}
	return dns, ips
}
