// Package discoverytest runs discovery against a test API server and
// makes the credentials agents present to it.
package discoverytest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/tandem-mesh/tandem/internal/discovery"
	"github.com/tandem-mesh/tandem/internal/kubewatch"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

// Instance is a discovery server that can be stopped and started again on
// the same address.
type Instance struct {
	t      testing.TB
	cfg    *rest.Config
	Addr   string
	CA     *x509.CertPool
	CAPEM  []byte
	tlsCfg *tls.Config
	Logger *slog.Logger

	Server *discovery.Server
	cancel context.CancelFunc
	done   chan error
}

// New prepares discovery for the API server at cfg on a free loopback
// address, with a serving certificate for 127.0.0.1 and "localhost".
func New(t testing.TB, cfg *rest.Config) *Instance {
	t.Helper()
	dir := t.TempDir()
	caPEM := testenv.ServingCerts(t, dir, "127.0.0.1", "localhost")
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	d := &Instance{t: t, cfg: cfg, Addr: testenv.FreeAddr(t), CA: pool, CAPEM: caPEM,
		tlsCfg: &tls.Config{Certificates: []tls.Certificate{cert}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	t.Cleanup(d.Stop)
	return d
}

// Start runs discovery and waits until it serves.
func (d *Instance) Start() {
	d.t.Helper()
	src, err := kubewatch.NewSources(d.cfg)
	if err != nil {
		d.t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(d.cfg)
	if err != nil {
		d.t.Fatal(err)
	}
	meta, err := metadata.NewForConfig(d.cfg)
	if err != nil {
		d.t.Fatal(err)
	}
	s, err := discovery.New(discovery.Options{Sources: src, Kube: kube, Metadata: meta, TLS: d.tlsCfg, Refused: []string{"tandem-system"}, Logger: d.Logger})
	if err != nil {
		d.t.Fatal(err)
	}
	var lis net.Listener
	// The previous instance's port may take a moment to be released.
	poll.Until(d.t, 10*time.Second, "discovery's address "+d.Addr+" to be free", func() bool {
		lis, err = net.Listen("tcp", d.Addr)
		return err == nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	d.Server, d.cancel, d.done = s, cancel, make(chan error, 1)
	go func() { d.done <- s.Start(ctx, lis) }()
	poll.Until(d.t, 30*time.Second, "discovery to load the cluster", s.Ready)
}

// Stop ends discovery, closing every stream; stopping twice is harmless.
func (d *Instance) Stop() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	if err := <-d.done; err != nil {
		d.t.Errorf("discovery: %v", err)
	}
	d.cancel = nil
}

// ClientTLS is what an agent that trusts discovery's CA dials with.
func (d *Instance) ClientTLS() *tls.Config {
	return &tls.Config{RootCAs: d.CA, ServerName: "127.0.0.1"}
}

// Token writes a token of service account ns/sa (created when missing)
// for the given audience into a file and returns its path.
func Token(t testing.TB, kube kubernetes.Interface, ns, sa, audience string) string {
	t.Helper()
	ctx := context.Background()
	ServiceAccount(t, kube, ns, sa)
	tr, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: new(int64(600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of %s/%s for audience %s: %v", ns, sa, audience, err)
	}
	return writeToken(t, tr.Status.Token)
}

// PodToken writes a token of the pod's service account bound to the pod,
// as the kubelet projects it into the pod, for the given audience, and
// returns its path. The API server names the pod in its reviews.
func PodToken(t testing.TB, kube kubernetes.Interface, pod *corev1.Pod, audience string) string {
	t.Helper()
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	ServiceAccount(t, kube, pod.Namespace, sa)
	tr, err := kube.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(context.Background(), sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: new(int64(3600)),
			BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of pod %s/%s for audience %s: %v", pod.Namespace, pod.Name, audience, err)
	}
	return writeToken(t, tr.Status.Token)
}

// ServiceAccount creates ns/name unless it exists: envtest runs no
// controller that would.
func ServiceAccount(t testing.TB, kube kubernetes.Interface, ns, name string) {
	t.Helper()
	_, err := kube.CoreV1().ServiceAccounts(ns).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func writeToken(t testing.TB, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
