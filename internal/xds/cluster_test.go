package xds

import (
	"math"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

func clusterOf(t *testing.T, p *servicePort, mode Mode) *clusterv3.Cluster {
	t.Helper()
	c := cluster(p, mode)
	if err := Validate(c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClusterEDS(t *testing.T) {
	p := testService("demo", "greeter", []string{"10.96.0.1"}, protoHTTP2).ports[0]
	for _, mode := range []Mode{Sidecar, Proxyless} {
		c := clusterOf(t, p, mode)
		if c.GetName() != "outbound|8000||greeter.demo.svc.cluster.local" || c.GetType() != clusterv3.Cluster_EDS {
			t.Errorf("%v: cluster %q of type %v", mode, c.GetName(), c.GetType())
		}
		// gRPC accepts only an ADS (or self) config source for EDS.
		if c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
			t.Errorf("%v: EDS config %v, want ADS", mode, c.GetEdsClusterConfig())
		}
		if c.GetLbPolicy() != clusterv3.Cluster_LEAST_REQUEST || c.GetLbConfig() != nil {
			t.Errorf("%v: default balancing %v %v, want plain least request", mode, c.GetLbPolicy(), c.GetLbConfig())
		}
		th := c.GetCircuitBreakers().GetThresholds()
		if len(th) != 1 || th[0].GetMaxRequests().GetValue() != math.MaxUint32 || th[0].GetMaxRetries().GetValue() != math.MaxUint32 {
			t.Errorf("%v: circuit breakers %v, want no limit", mode, th)
		}
		if c.GetOutlierDetection() != nil {
			t.Errorf("%v: outlier detection without a policy", mode)
		}
	}
	if len(clusterOf(t, p, Proxyless).GetTypedExtensionProtocolOptions()) != 0 {
		t.Errorf("proxyless cluster carries Envoy's upstream HTTP options")
	}
}

func protocolOptions(t *testing.T, c *clusterv3.Cluster) *httpv3.HttpProtocolOptions {
	t.Helper()
	a, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if !ok {
		return nil
	}
	o := &httpv3.HttpProtocolOptions{}
	if err := a.UnmarshalTo(o); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestClusterUpstreamProtocol(t *testing.T) {
	s := testService("ns", "s", []string{"10.96.0.1"}, protoHTTP2, protoHTTP, protoSniff, protoTCP)
	s.ports[1].policy.maxRequests = 100

	if o := protocolOptions(t, clusterOf(t, s.ports[0], Sidecar)); o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil || o.GetCommonHttpProtocolOptions() != nil {
		t.Errorf("gRPC port: %v, want explicit HTTP/2 upstream", o)
	}
	o := protocolOptions(t, clusterOf(t, s.ports[1], Sidecar))
	if d := o.GetUseDownstreamProtocolConfig(); d.GetHttpProtocolOptions() == nil || d.GetHttp2ProtocolOptions() == nil {
		t.Errorf("HTTP port: %v, want the client's protocol upstream", o)
	}
	if o.GetCommonHttpProtocolOptions().GetMaxRequestsPerConnection().GetValue() != 100 {
		t.Errorf("HTTP port: max requests per connection %v, want 100", o.GetCommonHttpProtocolOptions())
	}
	if o := protocolOptions(t, clusterOf(t, s.ports[2], Sidecar)); o.GetUseDownstreamProtocolConfig() == nil {
		t.Errorf("sniffed port: %v, want the client's protocol upstream", o)
	}
	if o := protocolOptions(t, clusterOf(t, s.ports[3], Sidecar)); o != nil {
		t.Errorf("TCP port has HTTP options %v", o)
	}
}

func TestClusterLoadBalancing(t *testing.T) {
	cases := []struct {
		pol             policy
		sidecar, grpcLB clusterv3.Cluster_LbPolicy
		check           func(t *testing.T, c *clusterv3.Cluster, mode Mode)
	}{
		{
			pol:     policy{lb: lbLeastRequest, choiceCount: 3, slowStart: time.Minute},
			sidecar: clusterv3.Cluster_LEAST_REQUEST, grpcLB: clusterv3.Cluster_LEAST_REQUEST,
			check: func(t *testing.T, c *clusterv3.Cluster, mode Mode) {
				cfg := c.GetLeastRequestLbConfig()
				if cfg.GetChoiceCount().GetValue() != 3 {
					t.Errorf("%v: choice count %v, want 3", mode, cfg.GetChoiceCount())
				}
				if got := cfg.GetSlowStartConfig().GetSlowStartWindow(); (mode == Sidecar) != (got.AsDuration() == time.Minute) {
					t.Errorf("%v: slow start %v (gRPC has none)", mode, got)
				}
			},
		},
		{
			pol:     policy{lb: lbRoundRobin, slowStart: 30 * time.Second},
			sidecar: clusterv3.Cluster_ROUND_ROBIN, grpcLB: clusterv3.Cluster_ROUND_ROBIN,
			check: func(t *testing.T, c *clusterv3.Cluster, mode Mode) {
				got := c.GetRoundRobinLbConfig().GetSlowStartConfig().GetSlowStartWindow()
				if (mode == Sidecar) != (got.AsDuration() == 30*time.Second) {
					t.Errorf("%v: slow start %v", mode, got)
				}
			},
		},
		{pol: policy{lb: lbRandom}, sidecar: clusterv3.Cluster_RANDOM, grpcLB: clusterv3.Cluster_ROUND_ROBIN},
		{pol: policy{lb: lbRingHash, hashHeader: "x"}, sidecar: clusterv3.Cluster_RING_HASH, grpcLB: clusterv3.Cluster_RING_HASH},
		{pol: policy{lb: lbMaglev, hashSourceIP: true}, sidecar: clusterv3.Cluster_MAGLEV, grpcLB: clusterv3.Cluster_RING_HASH},
	}
	for _, c := range cases {
		p := testService("ns", "s", []string{"10.96.0.1"}, protoHTTP2).ports[0]
		p.policy = c.pol
		for mode, want := range map[Mode]clusterv3.Cluster_LbPolicy{Sidecar: c.sidecar, Proxyless: c.grpcLB} {
			cl := clusterOf(t, p, mode)
			if cl.GetLbPolicy() != want {
				t.Errorf("%v policy %d: lb_policy %v, want %v", mode, c.pol.lb, cl.GetLbPolicy(), want)
			}
			if c.check != nil {
				c.check(t, cl, mode)
			}
		}
	}
}

func TestClusterOutlierDetection(t *testing.T) {
	pct := uint32(40)
	p := testService("ns", "s", []string{"10.96.0.1"}, protoHTTP2).ports[0]
	p.policy.outlier = &outlier{consecutive5xx: 7, interval: 5 * time.Second, baseEjectionTime: time.Minute, maxEjectionPercent: &pct}

	od := clusterOf(t, p, Sidecar).GetOutlierDetection()
	if od.GetConsecutive_5Xx().GetValue() != 7 || od.GetInterval().AsDuration() != 5*time.Second ||
		od.GetBaseEjectionTime().AsDuration() != time.Minute || od.GetMaxEjectionPercent().GetValue() != 40 {
		t.Errorf("sidecar outlier detection %v", od)
	}
	// Envoy enforces success-rate ejection by default; only what was asked for runs.
	if od.GetEnforcingSuccessRate() == nil || od.GetEnforcingSuccessRate().GetValue() != 0 {
		t.Errorf("success-rate ejection %v, want explicitly off", od.GetEnforcingSuccessRate())
	}

	od = clusterOf(t, p, Proxyless).GetOutlierDetection()
	if od.GetEnforcingFailurePercentage().GetValue() != 100 || od.GetFailurePercentageThreshold().GetValue() != 50 ||
		od.GetFailurePercentageRequestVolume().GetValue() != 7 || od.GetFailurePercentageMinimumHosts().GetValue() != 2 ||
		od.GetEnforcingSuccessRate().GetValue() != 0 || od.GetEnforcingSuccessRate() == nil {
		t.Errorf("proxyless outlier detection %v: want failure-percentage ejection over 7 requests", od)
	}
	if od.GetInterval().AsDuration() != 5*time.Second || od.GetMaxEjectionPercent().GetValue() != 40 {
		t.Errorf("proxyless outlier detection lost interval or cap: %v", od)
	}
}

func TestClusterHeadlessAndPassthrough(t *testing.T) {
	p := testService("ns", "db", nil, protoHTTP2).ports[0]
	c := clusterOf(t, p, Sidecar)
	if c.GetType() != clusterv3.Cluster_ORIGINAL_DST || c.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
		t.Errorf("headless sidecar cluster %v/%v, want ORIGINAL_DST: the client chose the pod", c.GetType(), c.GetLbPolicy())
	}
	if protocolOptions(t, c).GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("headless gRPC cluster must still speak HTTP/2 upstream")
	}
	if c := clusterOf(t, p, Proxyless); c.GetType() != clusterv3.Cluster_EDS {
		t.Errorf("headless proxyless cluster %v, want EDS: gRPC balances over the pods itself", c.GetType())
	}
	pt := passthroughCluster()
	if err := Validate(pt); err != nil {
		t.Fatal(err)
	}
	if pt.GetName() != "passthrough" || pt.GetType() != clusterv3.Cluster_ORIGINAL_DST || pt.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
		t.Errorf("passthrough cluster %v", pt)
	}
}
