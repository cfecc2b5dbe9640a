// Package kubelettest plays the kubelet's streaming server for a test API
// server: a Node whose kubelet endpoint is a loopback TLS server that
// answers the API server's port-forward requests, connecting each pod port
// to a local address the test names. With it, clients reach "pods" through
// the API server's pods/portforward subresource, RBAC and all, as they do
// on a real cluster.
package kubelettest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/kubernetes"
	kubeletportforward "k8s.io/cri-streaming/pkg/streaming/portforward"

	"github.com/tandem-mesh/tandem/internal/controlplane"
)

// Kubelet is one node's kubelet, as far as port-forward goes.
type Kubelet struct {
	*controlplane.Node
	t   testing.TB
	srv *httptest.Server

	mu      sync.Mutex
	targets map[string]string // "namespace/pod:port" -> local address
}

// Start registers Node name with the API server, its kubelet endpoint on a
// loopback TLS server; pods admitted to it get addresses of pool.
func Start(t testing.TB, kube kubernetes.Interface, name string, pool []netip.Addr) *Kubelet {
	t.Helper()
	k := &Kubelet{t: t, targets: map[string]string{},
		Node: controlplane.NewNode(kube, name, netip.MustParseAddr("127.0.0.1"), pool)}
	k.srv = httptest.NewTLSServer(http.HandlerFunc(k.serve))
	t.Cleanup(k.srv.Close)
	u, err := url.Parse(k.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := k.Register(ctx); err != nil {
		t.Fatal(err)
	}
	node, err := kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The API server reaches a kubelet at the Node's address and daemon port.
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: u.Hostname()}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
	if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		t.Fatal(err)
	}
	return k
}

// Forward sends connections to port of pod namespace/name to addr; an
// empty addr refuses them, as when nothing listens on the port.
func (k *Kubelet) Forward(namespace, name string, port int, addr string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := fmt.Sprintf("%s/%s:%d", namespace, name, port)
	if addr == "" {
		delete(k.targets, key)
		return
	}
	k.targets[key] = addr
}

// serve answers /portForward/<namespace>/<pod>.
func (k *Kubelet) serve(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/portForward/")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 2 {
		http.Error(w, "this kubelet serves port-forward only, not "+r.URL.Path, http.StatusNotFound)
		return
	}
	kubeletportforward.ServePortForward(w, r, forwarder{k}, parts[0]+"/"+parts[1], "",
		&kubeletportforward.V4Options{}, time.Minute, remotecommand.DefaultStreamCreationTimeout,
		[]string{kubeletportforward.ProtocolV1Name})
}

type forwarder struct{ k *Kubelet }

// PortForward connects the stream to the address of the pod's port, with
// the error a kubelet gives when nothing listens there.
func (f forwarder) PortForward(ctx context.Context, pod, _ string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	f.k.mu.Lock()
	addr := f.k.targets[fmt.Sprintf("%s:%d", pod, port)]
	f.k.mu.Unlock()
	if addr == "" {
		return fmt.Errorf("failed to connect to localhost:%d inside namespace of pod %s: connection refused", port, pod)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("failed to connect to localhost:%d inside namespace of pod %s: %v", port, pod, err)
	}
	defer c.Close()
	// Either side ending ends the connection, as the container runtimes do.
	done := make(chan struct{}, 2)
	go func() { io.Copy(c, stream); done <- struct{}{} }()
	go func() { io.Copy(stream, c); done <- struct{}{} }()
	<-done
	return nil
}
