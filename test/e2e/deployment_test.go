package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/tandem-mesh/tandem/internal/bootstrap"
	"github.com/tandem-mesh/tandem/internal/controlplane"
	"github.com/tandem-mesh/tandem/internal/discovery"
	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/testutil/discoverytest"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/netnstest"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Addresses the node gives the Deployment's pods, in order; a greeter
// server listens on each from the start, as the pod's container would.
var podAddrs = []string{"198.51.100.21", "198.51.100.22", "198.51.100.23"}

// TestScaledDeploymentReachesClients scales a Deployment with the real
// controllers: kube-controller-manager makes the pods and their
// EndpointSlices, a node stands in for kubelet, discovery carries the
// change, and a grpc-go xDS client fed by the agent balances over the pods.
func TestScaledDeploymentReachesClients(t *testing.T) {
	const shop = "shop"
	socket := os.Getenv(socketEnv)
	if !netns.InChild() {
		socket = filepath.Join(t.TempDir(), "xds.sock")
	}
	boot, err := bootstrap.GRPC(bootstrap.GRPCOptions{NodeID: "client." + shop, Cluster: shop, XDSSocket: socket})
	if err != nil {
		t.Fatal(err)
	}
	if !netnstest.RunTest(t, "GRPC_XDS_BOOTSTRAP_CONFIG="+boot, socketEnv+"="+socket) {
		return
	}
	if err := netns.Setup(parseAddrs(t, podAddrs), nil); err != nil {
		t.Fatal(err)
	}
	for _, ip := range podAddrs {
		startGreeter(t, ip)
	}
	cluster, err := controlplane.StartCluster(controlplane.Options{APIServerFlags: map[string]string{
		"advertise-address":        "127.0.0.1",
		"endpoint-reconciler-type": "none",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.Stop(); err != nil {
			t.Error(err)
		}
	})
	kube, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: shop,
		Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": svcName}
	if _, err := kube.AppsV1().Deployments(shop).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: svcName, Namespace: shop},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "server", Image: "greeter:1",
					Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: port}}}}},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Services(shop).Create(ctx, kubeobj.Service(shop, svcName, "grpc", port, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	node := controlplane.NewNode(kube, "node-a", netip.MustParseAddr("192.0.2.1"), parseAddrs(t, podAddrs))
	if err := node.Register(ctx); err != nil {
		t.Fatal(err)
	}
	// admit plays kubelet for the Deployment's pods until want run, and
	// returns their addresses by pod UID.
	admit := func(want int) map[types.UID]string {
		t.Helper()
		running := map[types.UID]string{}
		poll.Eventually(t, 60*time.Second, func() error {
			list, err := kube.CoreV1().Pods(shop).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			clear(running)
			for i := range list.Items {
				p := &list.Items[i]
				if p.DeletionTimestamp != nil {
					continue
				}
				ip, err := node.Admit(ctx, p)
				if err != nil {
					return err
				}
				running[p.UID] = ip.String()
			}
			if len(running) != want {
				return fmt.Errorf("%d pods running, want %d (controller manager log:\n%s)", len(running), want, cluster.ControllerManagerLog(10))
			}
			return nil
		})
		return running
	}
	scale := func(replicas int32) {
		t.Helper()
		s, err := kube.AppsV1().Deployments(shop).GetScale(ctx, svcName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Spec.Replicas = replicas
		if _, err := kube.AppsV1().Deployments(shop).UpdateScale(ctx, svcName, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	first := admit(1)

	disc := discoverytest.New(t, cluster.Config)
	disc.Start()
	e := startAgent(t, cluster.Config, socket, disc, discoverytest.Token(t, kube, shop, "client", discovery.Audience))
	conn, err := grpc.NewClient(fmt.Sprintf("xds:///%s.%s.svc.cluster.local:%d", svcName, shop, port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, ip := range first {
		warmUp(t, conn, []string{ip})
	}

	scale(3)
	running := admit(3)
	var all []string
	for _, ip := range running {
		all = append(all, ip)
	}
	warmUp(t, conn, all)
	counts := call(t, conn, 3000, nil)
	t.Logf("3000 requests after scaling to 3: %v", counts)
	for _, ip := range all {
		if share := float64(counts[ip]) / 3000; share < 0.30 || share > 0.363 {
			t.Errorf("pod %s got %.1f%% of 3000 requests, want 33%% ± 3%%: %v", ip, 100*share, counts)
		}
	}
	if !e.agent.FromDiscovery() {
		t.Error("the agent is not following discovery")
	}

	scale(2)
	var gone string
	poll.Eventually(t, 30*time.Second, func() error {
		list, err := kube.CoreV1().Pods(shop).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil {
				gone = running[p.UID]
				return nil
			}
		}
		return fmt.Errorf("no pod is terminating yet")
	})
	poll.Until(t, 10*time.Second, "the terminating pod "+gone+" to get no requests", func() bool { return call(t, conn, 100, nil)[gone] == 0 })
	counts = call(t, conn, 1000, nil)
	t.Logf("1000 requests after scaling to 2, pod %s terminating: %v", gone, counts)
	if counts[gone] != 0 || len(counts) != 2 {
		t.Fatalf("after scaling to 2, 1000 requests reached %v; the terminating pod %s must get none and the 2 others all", counts, gone)
	}
}
