package e2e

import (
	"cmp"
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// TestProxylessKeepsServiceMeaning: a grpc-go xDS client, fed by an agent
// on node-a (whose zone, zone-a, discovery reads from the Node), sees the
// Service fields kube-proxy honours: sessionAffinity ClientIP,
// internalTrafficPolicy Local, trafficDistribution PreferSameZone.
func TestProxylessKeepsServiceMeaning(t *testing.T) {
	c, ok := startCluster(t)
	if !ok {
		return
	}
	ctx := context.Background()
	for node, zone := range map[string]string{"node-a": "zone-a", "node-b": "zone-b"} {
		if _, err := c.kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node,
			Labels: map[string]string{corev1.LabelTopologyZone: zone}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Each Service has three endpoints, placed by place(i, endpoint).
	service := func(name string, spec func(*corev1.ServiceSpec), place func(int, *discoveryv1.Endpoint)) *discoveryv1.EndpointSlice {
		svc := kubeobj.Service(ns, name, "grpc", port, "")
		spec(&svc.Spec)
		if _, err := c.kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		sl := kubeobj.EndpointSlice(ns, name+"-abc", name, "grpc", port, backends[:3]...)
		for i := range sl.Endpoints {
			place(i, &sl.Endpoints[i])
		}
		sl, err := c.kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, sl, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return sl
	}
	nodes := []string{"node-b", "node-a", "node-b"} // backends[1] is on the client's node
	zones := []string{"zone-b", "zone-b", "zone-a"} // backends[2] is in the client's zone
	service("sticky", func(s *corev1.ServiceSpec) { s.SessionAffinity = corev1.ServiceAffinityClientIP }, func(int, *discoveryv1.Endpoint) {})
	service("node-local", func(s *corev1.ServiceSpec) {
		s.InternalTrafficPolicy = new(corev1.ServiceInternalTrafficPolicyLocal)
	}, func(i int, e *discoveryv1.Endpoint) { e.NodeName = &nodes[i] })
	zonal := service("zonal", func(s *corev1.ServiceSpec) {
		s.TrafficDistribution = new(corev1.ServiceTrafficDistributionPreferSameZone)
	}, func(i int, e *discoveryv1.Endpoint) {
		// As the EndpointSlice controller writes them for PreferSameZone.
		e.Zone = &zones[i]
		e.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: zones[i]}}}
	})
	c.disc.Start()
	e := startAgentAt(t, c.cfg, c.socket, c.disc, c.token, xds.Locality{Node: "node-a"})
	poll.Until(t, 10*time.Second, "the agent to learn its zone from discovery", func() bool { return e.agent.Locality().Zone == "zone-a" })

	t.Run("SessionAffinity", func(t *testing.T) {
		conn := c.dial(t, "sticky")
		counts := call(t, conn, 30, nil)
		t.Logf("30 calls: %v", counts)
		if len(counts) != 1 {
			t.Errorf("30 calls of one client reached %v, want one backend", counts)
		}
		// Another client (channel) may land elsewhere; each sticks.
		used := map[string]bool{}
		for range 8 {
			other := c.dial(t, "sticky")
			counts := call(t, other, 10, nil)
			if len(counts) != 1 {
				t.Fatalf("10 calls of a client reached %v, want one backend", counts)
			}
			for b := range counts {
				used[b] = true
			}
		}
		if len(used) < 2 {
			t.Errorf("9 clients all stuck to %v: the hash does not spread clients", used)
		}
	})

	t.Run("InternalTrafficPolicyLocal", func(t *testing.T) {
		counts := call(t, c.dial(t, "node-local"), 100, nil)
		if len(counts) != 1 || counts[backends[1]] != 100 {
			t.Errorf("100 calls reached %v, want all on %s, the endpoint on node-a", counts, backends[1])
		}
	})

	t.Run("PreferSameZone", func(t *testing.T) {
		conn := c.dial(t, "zonal")
		counts := call(t, conn, 100, nil)
		if len(counts) != 1 || counts[backends[2]] != 100 {
			t.Errorf("100 calls reached %v, want all on %s, the endpoint in zone-a", counts, backends[2])
		}
		// The zone's endpoint goes: calls fail over to the other zone.
		calls := startCaller(conn)
		defer calls.halt()
		zonal.Endpoints = zonal.Endpoints[:2]
		if _, err := c.kube.DiscoveryV1().EndpointSlices(ns).Update(ctx, zonal, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		failed, answered := 0, map[string]int{}
		var lastErr error
		poll.Until(t, 10*time.Second, "calls to reach the other zone", func() bool {
			counts, failures, err := calls.take()
			failed += failures
			lastErr = cmp.Or(err, lastErr)
			for b, n := range counts {
				answered[b] += n
			}
			return counts[backends[0]] > 0 && counts[backends[1]] > 0 && counts[backends[2]] == 0
		})
		time.Sleep(500 * time.Millisecond)
		counts, failures, err := calls.take()
		t.Logf("after the zone's endpoint was removed: %v answered while switching, then %v; %d failed", answered, counts, failed+failures)
		if failed+failures > 0 || counts[backends[2]] > 0 {
			t.Errorf("after the zone's endpoint was removed: %d calls failed (%v), then %v answered; want no failure, the other zone only", failed+failures, cmp.Or(err, lastErr), counts)
		}
	})
}
