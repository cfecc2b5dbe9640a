package controlplane_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/tandem-mesh/tandem/internal/controlplane"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
)

// A Deployment becomes Pods, the node admits them, and the real EndpointSlice
// controller publishes their addresses behind the Service.
func TestClusterTurnsDeploymentsIntoEndpoints(t *testing.T) {
	c, err := controlplane.StartCluster(controlplane.Options{
		APIServerFlags: map[string]string{"service-cluster-ip-range": "198.51.100.0/24"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	cs := kubernetes.NewForConfigOrDie(c.Config)
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments("web").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := cs.CoreV1().Services("web").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "web"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ip := netip.MustParseAddr(svc.Spec.ClusterIP); !netip.MustParsePrefix("198.51.100.0/24").Contains(ip) {
		t.Errorf("ClusterIP %s is outside the configured service range", ip)
	}

	var pods []corev1.Pod
	poll.Eventually(t, 30*time.Second, func() error {
		list, err := cs.CoreV1().Pods("web").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(list.Items) != 2 {
			return fmt.Errorf("%d pods, want 2 (controller manager log:\n%s)", len(list.Items), c.ControllerManagerLog(10))
		}
		pods = list.Items
		return nil
	})

	node := controlplane.NewNode(cs, "node-a", netip.MustParseAddr("192.0.2.1"),
		[]netip.Addr{netip.MustParseAddr("203.0.113.11"), netip.MustParseAddr("203.0.113.12")})
	if err := node.Register(ctx); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range pods {
		ip, err := node.Admit(ctx, &pods[i])
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, ip.String())
	}
	slices.Sort(want)

	poll.Eventually(t, 30*time.Second, func() error {
		slices_, err := cs.DiscoveryV1().EndpointSlices("web").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if err != nil {
			return err
		}
		var got []string
		for _, s := range slices_.Items {
			for _, ep := range s.Endpoints {
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					got = append(got, ep.Addresses...)
				}
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("ready endpoint addresses %v, want %v", got, want)
		}
		return nil
	})
	if _, err := node.Admit(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "extra", Namespace: "web", UID: "u-extra"}}); err == nil {
		t.Error("a third pod got an address from a pool of two")
	}
}
