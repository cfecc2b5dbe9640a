// Package servingcert keeps the injector's TLS serving certificate in a
// Secret of its namespace, so a cluster without cert-manager needs nothing
// else. When the Secret is missing, the injector issues a CA of its own and
// a serving certificate signed by it, and stores both there (the CA's key
// too, as ca.key); it renews the serving certificate before it expires and
// keeps the CA, so agents that trust the CA keep verifying. A Secret it did
// not issue (cert-manager's, or one you wrote without a ca.key) is used as
// it is and renewed by whoever wrote it.
//
// Every replica reads the same Secret; the first to write wins (updates
// carry the resourceVersion they read), the others load what it wrote.
package servingcert

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Keys of the Secret: what cert-manager writes, plus the CA's key where the
// injector issues.
const (
	KeyCert  = corev1.TLSCertKey       // tls.crt
	KeyKey   = corev1.TLSPrivateKeyKey // tls.key
	KeyCA    = "ca.crt"
	KeyCAKey = "ca.key"
)

// certManagerAnnotation marks the Secrets cert-manager writes.
const certManagerAnnotation = "cert-manager.io/certificate-name"

// Lifetimes of what the injector issues. The CA outlives every pod that
// trusts it; the serving certificate is renewed when a third of its life
// is left, so a replica that was down for weeks still renews in time.
const (
	CAValidity      = 10 * 365 * 24 * time.Hour
	ServingValidity = 90 * 24 * time.Hour
	// recheck bounds how long a change goes unnoticed when no event comes.
	recheck = time.Hour
)

// The injector reads and writes its serving certificate's Secret in its own
// namespace only (config/rbac: a Role).
// +kubebuilder:rbac:groups="",namespace=tandem-system,resources=secrets,verbs=get;list;watch;create;update

// Options configure a Keeper.
type Options struct {
	Client          kubernetes.Interface
	Namespace, Name string
	// DNSNames and IPs the serving certificate must name.
	DNSNames []string
	IPs      []net.IP
	Logger   *slog.Logger
	// OnCA is called with the CA's PEM whenever the CA being served changes
	// (and once when the first certificate is loaded).
	OnCA func(caPEM string)
}

// Keeper keeps the serving certificate of one Secret current.
type Keeper struct {
	o       Options
	current atomic.Pointer[loaded]
	kick    chan struct{}
	mu      sync.Mutex // serialises sync
}

type loaded struct {
	cert  tls.Certificate
	caPEM string
	// renewAt is when the injector must issue again (zero: not ours to renew).
	renewAt time.Time
}

// New returns a keeper; Load or Start it before serving.
func New(o Options) (*Keeper, error) {
	if o.Client == nil || o.Namespace == "" || o.Name == "" {
		return nil, errors.New("servingcert: a client, a namespace and a Secret name are needed")
	}
	if len(o.DNSNames) == 0 && len(o.IPs) == 0 {
		return nil, errors.New("servingcert: the certificate must name at least one DNS name or IP")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Keeper{o: o, kick: make(chan struct{}, 1)}, nil
}

// GetCertificate serves the current certificate to TLS handshakes.
func (k *Keeper) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l := k.current.Load()
	if l == nil {
		return nil, fmt.Errorf("no serving certificate loaded yet from Secret %s/%s", k.o.Namespace, k.o.Name)
	}
	return &l.cert, nil
}

// CA returns the PEM of the CA that signed the current certificate ("" before one is loaded).
func (k *Keeper) CA() string {
	if l := k.current.Load(); l != nil {
		return l.caPEM
	}
	return ""
}

// Loaded reports whether a certificate is being served.
func (k *Keeper) Loaded() bool { return k.current.Load() != nil }

// Load makes sure the Secret holds a usable certificate, issuing one when it
// is the injector's to issue, and serves it. It retries until ctx ends.
func (k *Keeper) Load(ctx context.Context) error {
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		err := k.sync(ctx)
		if err == nil {
			return nil
		}
		k.o.Logger.Info("serving certificate not ready, retrying", "secret", k.o.Namespace+"/"+k.o.Name, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("serving certificate from Secret %s/%s: %w", k.o.Namespace, k.o.Name, err)
		case <-time.After(delay):
		}
	}
}

// Start watches the Secret and keeps the certificate current until ctx
// ends: a change or a deletion is answered at once, a renewal when due.
func (k *Keeper) Start(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(k.o.Client, 0,
		informers.WithNamespace(k.o.Namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", k.o.Name).String()
		}))
	inf := factory.Core().V1().Secrets().Informer()
	poke := func(any) { k.poke() }
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(any, any) { k.poke() }, DeleteFunc: poke,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for {
		wait := recheck
		if l := k.current.Load(); l != nil && !l.renewAt.IsZero() {
			wait = min(wait, max(time.Until(l.renewAt), time.Second))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-k.kick:
		case <-time.After(wait):
		}
		if err := k.sync(ctx); err != nil && ctx.Err() == nil {
			k.o.Logger.Error("keeping the serving certificate current; the last good one is still served", "secret", k.o.Namespace+"/"+k.o.Name, "error", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
				k.poke()
			}
		}
	}
}

func (k *Keeper) poke() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// sync reads the Secret, issues or renews what is the injector's to issue,
// and serves the result.
func (k *Keeper) sync(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	secrets := k.o.Client.CoreV1().Secrets(k.o.Namespace)
	s, err := secrets.Get(ctx, k.o.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		data, err := k.issue(nil)
		if err != nil {
			return err
		}
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: k.o.Name, Namespace: k.o.Namespace, Labels: map[string]string{
				wellknown.ManagedByLabel: wellknown.ManagedByInjector, "app.kubernetes.io/part-of": "tandem",
			}},
			Type: corev1.SecretTypeTLS,
			Data: data,
		}
		if s, err = secrets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return err // AlreadyExists: another replica was first; the retry loads its certificate
		}
		k.o.Logger.Info("issued a CA and a serving certificate", "secret", k.o.Namespace+"/"+k.o.Name, "dnsNames", k.o.DNSNames)
	} else if err != nil {
		return err
	}
	l, why, err := k.check(s, time.Now())
	if err != nil {
		return err
	}
	if why != "" {
		data, err := k.issue(s.Data)
		if err != nil {
			return err
		}
		s = s.DeepCopy()
		s.Data = data
		if s, err = secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			return err // Conflict: another replica renewed first
		}
		k.o.Logger.Info("renewed the serving certificate", "secret", k.o.Namespace+"/"+k.o.Name, "because", why)
		if l, _, err = k.check(s, time.Now()); err != nil {
			return err
		}
	}
	prev := k.current.Swap(l)
	if prev == nil || prev.caPEM != l.caPEM {
		if prev != nil {
			k.o.Logger.Info("the CA changed: pods injected before now verify discovery with the old one until restarted", "secret", k.o.Namespace+"/"+k.o.Name)
		}
		if k.o.OnCA != nil {
			k.o.OnCA(l.caPEM)
		}
	}
	return nil
}

// check parses the Secret. For a Secret of the injector's it also says why
// it must be issued again ("" when it need not); a Secret of someone
// else's is only checked to be usable.
func (k *Keeper) check(s *corev1.Secret, now time.Time) (*loaded, string, error) {
	// cert-manager may leave a ca.key of the injector's beside what it
	// writes over a Secret the injector issued first: its annotation wins.
	_, certManager := s.Annotations[certManagerAnnotation]
	ours := len(s.Data[KeyCAKey]) > 0 && !certManager
	pair, err := tls.X509KeyPair(s.Data[KeyCert], s.Data[KeyKey])
	if err != nil {
		if ours {
			return nil, "its certificate does not parse: " + err.Error(), nil
		}
		return nil, "", fmt.Errorf("Secret %s/%s was not issued by the injector (no %s) and holds no usable %s and %s: %w", s.Namespace, s.Name, KeyCAKey, KeyCert, KeyKey, err)
	}
	leaf := pair.Leaf
	ca := s.Data[KeyCA]
	l := &loaded{cert: pair, caPEM: string(ca)}
	if !ours {
		if len(ca) == 0 {
			return nil, "", fmt.Errorf("Secret %s/%s has no %s: agents could not verify the certificate", s.Namespace, s.Name, KeyCA)
		}
		if now.After(leaf.NotAfter) {
			k.o.Logger.Error("the serving certificate has expired; whoever issued it must renew it", "secret", s.Namespace+"/"+s.Name, "notAfter", leaf.NotAfter)
		}
		return l, "", nil
	}
	caCert, _, err := parseCA(s.Data)
	if err != nil {
		return nil, "its CA does not parse: " + err.Error(), nil
	}
	l.renewAt = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	switch {
	case now.After(caCert.NotAfter.Add(-ServingValidity)):
		return l, "the CA expires soon", nil
	case !now.Before(l.renewAt):
		return l, "two thirds of its life have passed", nil
	case !names(leaf, k.o.DNSNames, k.o.IPs):
		return l, "it does not name every address discovery is reached on", nil
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now}); err != nil {
		return l, "it is not signed by the CA beside it", nil
	}
	return l, "", nil
}

// names reports whether the certificate names every DNS name and IP.
func names(c *x509.Certificate, dns []string, ips []net.IP) bool {
	for _, d := range dns {
		if !slices.Contains(c.DNSNames, d) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func parseCA(data map[string][]byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certBlock, _ := pem.Decode(data[KeyCA])
	keyBlock, _ := pem.Decode(data[KeyCAKey])
	if certBlock == nil || keyBlock == nil {
		return nil, nil, fmt.Errorf("%s or %s is not PEM", KeyCA, KeyCAKey)
	}
	cert, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, nil, err
	}
	if !cert.IsCA || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s is not a CA certificate of the key in %s", KeyCA, KeyCAKey)
	}
	return cert, key, nil
}

// issue returns the Secret's data with a new serving certificate, signed
// by the CA of old when that is still good, else by a new CA.
func (k *Keeper) issue(old map[string][]byte) (map[string][]byte, error) {
	now := time.Now()
	caCert, caKey, err := parseCA(old)
	caPEM, caKeyPEM := old[KeyCA], old[KeyCAKey]
	if err != nil || now.After(caCert.NotAfter.Add(-ServingValidity)) {
		if caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			Subject:               pkix.Name{CommonName: "tandem-ca", Organization: []string{"tandem"}},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(CAValidity),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		}
		if caCert, caPEM, err = sign(tmpl, nil, caKey, caKey); err != nil {
			return nil, err
		}
		if caKeyPEM, err = keyPEM(caKey); err != nil {
			return nil, err
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cn := "tandem-injector"
	if len(k.o.DNSNames) > 0 {
		cn = k.o.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    k.o.DNSNames,
		IPAddresses: k.o.IPs,
		NotBefore:   now.Add(-5 * time.Minute), // clocks of other nodes may lag
		NotAfter:    now.Add(ServingValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	_, certPEM, err := sign(tmpl, caCert, caKey, key)
	if err != nil {
		return nil, err
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{KeyCert: certPEM, KeyKey: kp, KeyCA: caPEM, KeyCAKey: caKeyPEM}, nil
}

// sign makes a certificate of tmpl for key's public half, signed by parent
// (itself when parent is nil) with parentKey.
func sign(tmpl, parent *x509.Certificate, parentKey, key *ecdsa.PrivateKey) (*x509.Certificate, []byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func keyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}
