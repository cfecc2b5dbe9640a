package podconn_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tandem-mesh/tandem/internal/podconn"
	"github.com/tandem-mesh/tandem/internal/testutil/kubelettest"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

// TestPortForwardThroughTheAPIServer reaches a loopback HTTP server as a
// pod's port through the API server's port-forward, and is refused, with
// the API server's reason, as a user RBAC does not allow it.
func TestPortForwardThroughTheAPIServer(t *testing.T) {
	env, cfg := testenv.Start(t, testenv.Options{})
	kube := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	k := kubelettest.Start(t, kube, "node-1", []netip.Addr{netip.MustParseAddr("198.51.100.10")})
	pod, err := kube.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Admit(ctx, pod); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(lis, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from "+r.URL.Path) }))
	k.Forward("default", "app", 15004, lis.Addr().String())

	f, err := podconn.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Open(ctx, "default", "app")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := s.HTTPClient(15004, 10*time.Second)
	for range 3 { // connections reused and new ones through the same tunnel
		resp, err := c.Get("http://pod/status")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello from /status" {
			t.Fatalf("got %q", b)
		}
	}
	// Nothing listens on another port: the kubelet's reason, not a bare EOF.
	_, err = s.HTTPClient(15999, 10*time.Second).Get("http://pod/")
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "port 15999 of pod default/app") {
		t.Fatalf("a port nothing listens on: got %v", err)
	}

	// A user who may read pods but not port-forward to them.
	user, err := env.AddUser(envtest.User{Name: "reader"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "reader"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "reader"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rf, err := podconn.New(user.Config())
	if err != nil {
		t.Fatal(err)
	}
	_, err = rf.Open(ctx, "default", "app")
	if err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), "pods/portforward") {
		t.Fatalf("a user without pods/portforward: got %v", err)
	}
}
