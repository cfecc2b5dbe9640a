package xds

import (
	"math"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	tandem "github.com/tandem-mesh/tandem/internal/wellknown"
)

// httpProtocolOptionsKey is where a cluster's upstream HTTP settings go.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// Proxyless clients have no consecutive-failure ejection, only statistical
// kinds; consecutive5xx there becomes failure-percentage ejection: an
// endpoint is ejected when more than half of at least consecutive5xx
// requests in an interval failed, if another endpoint has traffic to judge.
const (
	grpcFailurePercentThreshold = 50
	grpcFailureMinimumHosts     = 2
	defaultConsecutive5xx       = 5
)

// cluster is the upstream of one Service port: an EDS cluster of its ready
// endpoints, or, for a headless Service's sidecar, a cluster that connects
// to the pod address the client dialed.
func cluster(p *servicePort, mode Mode) *clusterv3.Cluster {
	if mode == Sidecar && p.svc.headless {
		c := originalDstCluster(p.clusterName())
		c.TypedExtensionProtocolOptions = httpProtocolOptions(p)
		return c
	}
	c := &clusterv3.Cluster{
		Name:                 p.clusterName(),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		CircuitBreakers:      unlimitedCircuitBreakers(),
		OutlierDetection:     outlierDetection(p.policy.outlier, mode),
	}
	setLoadBalancing(c, &p.policy, mode)
	if mode == Sidecar {
		c.TypedExtensionProtocolOptions = httpProtocolOptions(p)
	}
	return c
}

// unresolvedBackendCluster is the proxyless client's cluster of the
// requests whose backend does not resolve: EDS, and never any endpoint.
func unresolvedBackendCluster() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 unresolvedCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
	}
}

// passthroughCluster forwards a connection to the address it was sent to:
// the sidecar's route for destinations that are no Service.
func passthroughCluster() *clusterv3.Cluster {
	return originalDstCluster(tandem.PassthroughClusterName)
}

func originalDstCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		CircuitBreakers:      unlimitedCircuitBreakers(),
	}
}

// unlimitedCircuitBreakers lifts Envoy's and gRPC's default limits (1024
// requests, 3 concurrent retries): a sidecar stands in for a direct
// connection and must not fail requests the application was free to make.
func unlimitedCircuitBreakers() *clusterv3.CircuitBreakers {
	maxU32 := wrapperspb.UInt32(math.MaxUint32)
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     maxU32,
		MaxPendingRequests: maxU32,
		MaxRequests:        maxU32,
		MaxRetries:         maxU32,
	}}}
}

// setLoadBalancing sets the cluster's algorithm. The lb_policy field is used,
// not load_balancing_policy, as both Envoy and gRPC read it. gRPC has no
// Random and no Maglev; round robin and ring hash are their nearest kin.
func setLoadBalancing(c *clusterv3.Cluster, pol *policy, mode Mode) {
	var slowStart *clusterv3.Cluster_SlowStartConfig
	if pol.slowStart > 0 && mode == Sidecar {
		slowStart = &clusterv3.Cluster_SlowStartConfig{SlowStartWindow: duration(pol.slowStart)}
	}
	switch pol.lb {
	case lbLeastRequest:
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
		cfg := &clusterv3.Cluster_LeastRequestLbConfig{SlowStartConfig: slowStart}
		if pol.choiceCount > 0 {
			cfg.ChoiceCount = wrapperspb.UInt32(pol.choiceCount)
		}
		if cfg.ChoiceCount != nil || cfg.SlowStartConfig != nil {
			c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: cfg}
		}
	case lbRoundRobin:
		c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		if slowStart != nil {
			c.LbConfig = &clusterv3.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: &clusterv3.Cluster_RoundRobinLbConfig{SlowStartConfig: slowStart}}
		}
	case lbRandom:
		c.LbPolicy = clusterv3.Cluster_RANDOM
		if mode == Proxyless {
			c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		}
	case lbRingHash:
		c.LbPolicy = clusterv3.Cluster_RING_HASH
	case lbMaglev:
		c.LbPolicy = clusterv3.Cluster_MAGLEV
		if mode == Proxyless {
			c.LbPolicy = clusterv3.Cluster_RING_HASH
		}
	}
}

// outlierDetection ejects endpoints that keep failing. In Envoy only the
// consecutive-5xx kind is on (its success-rate kind is on by default and
// would eject on statistics the user did not ask for).
func outlierDetection(o *outlier, mode Mode) *clusterv3.OutlierDetection {
	if o == nil {
		return nil
	}
	od := &clusterv3.OutlierDetection{
		EnforcingSuccessRate: wrapperspb.UInt32(0),
	}
	if o.interval > 0 {
		od.Interval = duration(o.interval)
	}
	if o.baseEjectionTime > 0 {
		od.BaseEjectionTime = duration(o.baseEjectionTime)
	}
	if o.maxEjectionPercent != nil {
		od.MaxEjectionPercent = wrapperspb.UInt32(*o.maxEjectionPercent)
	}
	consecutive := o.consecutive5xx
	if mode == Proxyless {
		if consecutive == 0 {
			consecutive = defaultConsecutive5xx
		}
		od.EnforcingFailurePercentage = wrapperspb.UInt32(100)
		od.FailurePercentageThreshold = wrapperspb.UInt32(grpcFailurePercentThreshold)
		od.FailurePercentageMinimumHosts = wrapperspb.UInt32(grpcFailureMinimumHosts)
		od.FailurePercentageRequestVolume = wrapperspb.UInt32(consecutive)
		return od
	}
	if consecutive > 0 {
		od.Consecutive_5Xx = wrapperspb.UInt32(consecutive)
	}
	return od
}

// httpProtocolOptions sets how the sidecar speaks HTTP to the endpoints:
// HTTP/2 for gRPC and h2c, the client's own protocol for HTTP and sniffed
// ports, plus the policy's requests-per-connection cap. Opaque TCP ports
// have none.
func httpProtocolOptions(p *servicePort) map[string]*anypb.Any {
	opts := &httpv3.HttpProtocolOptions{}
	switch p.protocol {
	case protoHTTP2:
		opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		}
	case protoHTTP, protoSniff:
		opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
			UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
				HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		}
	default:
		return nil
	}
	if n := p.policy.maxRequests; n > 0 {
		opts.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{MaxRequestsPerConnection: wrapperspb.UInt32(n)}
	}
	return map[string]*anypb.Any{httpProtocolOptionsKey: typed(opts)}
}
