package servingcert_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-mesh/tandem/internal/servingcert"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

const ns = "tandem-system"

var dnsNames = []string{"tandem-discovery.tandem-system.svc", "tandem-discovery.tandem-system.svc.cluster.local"}

func start(t *testing.T) kubernetes.Interface {
	t.Helper()
	_, cfg := testenv.Start(t, testenv.Options{})
	cs := kubernetes.NewForConfigOrDie(cfg)
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return cs
}

func keeper(t *testing.T, cs kubernetes.Interface, name string, onCA func(string)) *servingcert.Keeper {
	t.Helper()
	k, err := servingcert.New(servingcert.Options{
		Client: cs, Namespace: ns, Name: name, DNSNames: dnsNames, IPs: []net.IP{net.ParseIP("127.0.0.1")},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OnCA: onCA,
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// handshake connects a TLS client that trusts only caPEM to a server
// serving k's certificate, for serverName.
func handshake(t *testing.T, k *servingcert.Keeper, caPEM, serverName string) error {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: k.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		c, err := lis.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatalf("CA %q is not PEM", caPEM)
	}
	c, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{RootCAs: roots, ServerName: serverName})
	if err == nil {
		c.Close()
	}
	return err
}

func leaf(t *testing.T, s *corev1.Secret) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(s.Data[servingcert.KeyCert])
	if b == nil {
		t.Fatalf("Secret %s: tls.crt is not PEM", s.Name)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A missing Secret is created with a CA and a certificate for every name;
// several replicas starting at once agree on one of them.
func TestIssuesOnceForAllReplicas(t *testing.T) {
	cs := start(t)
	ctx := context.Background()
	keepers := make([]*servingcert.Keeper, 4)
	var wg sync.WaitGroup
	for i := range keepers {
		keepers[i] = keeper(t, cs, "certs", nil)
		wg.Go(func() {
			if err := keepers[i].Load(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, "certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != corev1.SecretTypeTLS || len(s.Data[servingcert.KeyCAKey]) == 0 {
		t.Errorf("Secret type %s, keys %v: want a TLS Secret with the CA's key", s.Type, len(s.Data))
	}
	for i, k := range keepers {
		if k.CA() != string(s.Data[servingcert.KeyCA]) {
			t.Errorf("replica %d serves a CA that is not the Secret's", i)
		}
	}
	for _, name := range append(dnsNames, "127.0.0.1") {
		if err := handshake(t, keepers[0], string(s.Data[servingcert.KeyCA]), name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := handshake(t, keepers[0], string(s.Data[servingcert.KeyCA]), "other.example"); err == nil {
		t.Error("a name the certificate was not issued for was accepted")
	}
	if got := leaf(t, s).NotAfter.Sub(leaf(t, s).NotBefore); got < 89*24*time.Hour || got > 91*24*time.Hour {
		t.Errorf("serving certificate valid for %v, want about 90 days", got)
	}
}

// A certificate two thirds through its life is renewed under the same CA,
// at start and while running; a deleted Secret is issued again.
func TestRenewsAndRecreates(t *testing.T) {
	cs := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := keeper(t, cs, "certs", nil)
	if err := first.Load(ctx); err != nil {
		t.Fatal(err)
	}
	secrets := cs.CoreV1().Secrets(ns)
	s, err := secrets.Get(ctx, "certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Replace the serving certificate with one issued 70 days ago by the same CA.
	old := s.DeepCopy()
	old.Data[servingcert.KeyCert], old.Data[servingcert.KeyKey] = signedBy(t, s.Data, time.Now().Add(-70*24*time.Hour), dnsNames...)
	if _, err := secrets.Update(ctx, old, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var cas []string
	var mu sync.Mutex
	k := keeper(t, cs, "certs", func(ca string) { mu.Lock(); cas = append(cas, ca); mu.Unlock() })
	done := make(chan error, 1)
	if err := k.Load(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { done <- k.Start(ctx) }()
	renewed, err := secrets.Get(ctx, "certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if age := time.Since(leaf(t, renewed).NotBefore); age > time.Hour {
		t.Errorf("the certificate issued 70 days ago was kept (%v old)", age)
	}
	if string(renewed.Data[servingcert.KeyCA]) != string(s.Data[servingcert.KeyCA]) {
		t.Error("renewal replaced the CA: agents that trust it would stop verifying")
	}

	// Running: a certificate that loses a name (a changed address) is
	// replaced; a deleted Secret comes back with a new CA, reported.
	short := renewed.DeepCopy()
	short.Data[servingcert.KeyCert], short.Data[servingcert.KeyKey] = signedBy(t, s.Data, time.Now(), dnsNames[0])
	if _, err := secrets.Update(ctx, short, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 30*time.Second, func() error {
		s, err := secrets.Get(ctx, "certs", metav1.GetOptions{})
		if err == nil && len(leaf(t, s).DNSNames) != len(dnsNames) {
			err = fmt.Errorf("still %v", leaf(t, s).DNSNames)
		}
		return err
	})
	if err := secrets.Delete(ctx, "certs", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 30*time.Second, func() error {
		s, err := secrets.Get(ctx, "certs", metav1.GetOptions{})
		if err == nil && k.CA() != string(s.Data[servingcert.KeyCA]) {
			err = fmt.Errorf("the keeper serves a CA other than the re-issued Secret's")
		}
		return err
	})
	mu.Lock()
	defer mu.Unlock()
	if len(cas) != 2 || cas[0] == cas[1] || cas[1] != k.CA() {
		t.Errorf("OnCA calls: %d, want the first CA and the re-issued one", len(cas))
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// A Secret the injector did not issue (cert-manager's) is served as it is,
// even when the injector would have issued it otherwise; one without a
// usable certificate is refused by name, not overwritten.
func TestUsesSecretsOfOthers(t *testing.T) {
	cs := start(t)
	ctx := context.Background()
	dir := t.TempDir()
	caPEM := testenv.ServingCerts(t, dir, "only-this.example")
	data := map[string][]byte{}
	for _, k := range []string{"ca.crt", "tls.crt", "tls.key"} {
		b, err := os.ReadFile(filepath.Join(dir, k))
		if err != nil {
			t.Fatal(err)
		}
		data[k] = b
	}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cert-manager", Annotations: map[string]string{"cert-manager.io/certificate-name": "x"}},
		Type:       corev1.SecretTypeTLS, Data: data,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k := keeper(t, cs, "cert-manager", nil)
	if err := k.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if k.CA() != string(caPEM) {
		t.Error("the keeper does not serve the CA of cert-manager's Secret")
	}
	if err := handshake(t, k, string(caPEM), "only-this.example"); err != nil {
		t.Errorf("cert-manager's certificate is not the one served: %v", err)
	}
	s, _ := cs.CoreV1().Secrets(ns).Get(ctx, "cert-manager", metav1.GetOptions{})
	if _, ours := s.Data[servingcert.KeyCAKey]; ours || string(s.Data["tls.crt"]) != string(data["tls.crt"]) {
		t.Error("cert-manager's Secret was rewritten")
	}
	// cert-manager writing over a Secret the injector issued first keeps
	// the injector's ca.key beside its own certificate: still cert-manager's.
	s.Data[servingcert.KeyCAKey] = []byte("-----BEGIN EC PRIVATE KEY-----\nleft over\n-----END EC PRIVATE KEY-----\n")
	if _, err := cs.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	k2 := keeper(t, cs, "cert-manager", nil)
	if err := k2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if s2, _ := cs.CoreV1().Secrets(ns).Get(ctx, "cert-manager", metav1.GetOptions{}); string(s2.Data["tls.crt"]) != string(data["tls.crt"]) || k2.CA() != string(caPEM) {
		t.Error("a cert-manager Secret holding a left-over ca.key was taken for the injector's and rewritten")
	}

	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "broken"}, Data: map[string][]byte{"tls.crt": []byte("nope")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := keeper(t, cs, "broken", nil).Load(lctx)
	if err == nil || !strings.Contains(err.Error(), "tandem-system/broken") || !strings.Contains(err.Error(), "not issued by the injector") {
		t.Errorf("Load of a broken foreign Secret: %v", err)
	}
	s, _ = cs.CoreV1().Secrets(ns).Get(ctx, "broken", metav1.GetOptions{})
	if string(s.Data["tls.crt"]) != "nope" {
		t.Error("a Secret of someone else's was overwritten")
	}
}

// signedBy returns a serving certificate and key for names, signed by the
// CA in data and valid for 90 days from notBefore.
func signedBy(t *testing.T, data map[string][]byte, notBefore time.Time, names ...string) ([]byte, []byte) {
	t.Helper()
	cb, _ := pem.Decode(data[servingcert.KeyCA])
	kb, _ := pem.Decode(data[servingcert.KeyCAKey])
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   notBefore, NotAfter: notBefore.Add(servingcert.ServingValidity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}
