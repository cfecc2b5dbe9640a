package xds

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// grpcChannelID is the filter state key gRPC hashes to pin a client
// channel, gRPC's stand-in for a source address.
const grpcChannelID = "io.grpc.channel_id"

// retryOtherHost makes a retry pick another endpoint than the ones tried.
const retryOtherHost = "envoy.retry_host_predicates.previous_hosts"

// routeConfiguration sends every request for one Service port to its
// cluster, with the port's timeout, retries and, for hashing policies, the
// request property to hash. The filter chain or API listener it belongs to
// already selected the Service, so any host name matches.
func routeConfiguration(p *servicePort, mode Mode) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: p.hostPort(),
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    p.hostPort(),
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Name:   "default",
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: routeAction(p, mode)},
			}},
		}},
	}
}

func routeAction(p *servicePort, mode Mode) *routev3.RouteAction {
	pol := &p.policy
	a := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: p.clusterName()},
		RetryPolicy:      retryPolicy(pol.retry, mode),
	}
	if pol.lb.hashed() {
		a.HashPolicy = []*routev3.RouteAction_HashPolicy{hashPolicy(pol, mode)}
	}
	switch {
	case mode == Proxyless && pol.timeout > 0:
		// gRPC reads a route's deadline from max_stream_duration only.
		a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: duration(pol.timeout)}
	case mode == Sidecar:
		// Zero turns off Envoy's 15s default, which would cut long streams.
		a.Timeout = duration(pol.timeout)
	}
	return a
}

func hashPolicy(pol *policy, mode Mode) *routev3.RouteAction_HashPolicy {
	switch {
	case pol.hashHeader != "":
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: pol.hashHeader},
		}}
	case mode == Proxyless:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_FilterState_{
			FilterState: &routev3.RouteAction_HashPolicy_FilterState{Key: grpcChannelID},
		}}
	default:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true},
		}}
	}
}

// retryPolicy retries on another endpoint. gRPC takes retry_on and
// num_retries only (and acts on the gRPC status conditions only).
func retryPolicy(r *retry, mode Mode) *routev3.RetryPolicy {
	if r == nil {
		return nil
	}
	rp := &routev3.RetryPolicy{
		RetryOn:    r.retryOn,
		NumRetries: wrapperspb.UInt32(r.attempts),
	}
	if mode == Sidecar {
		if r.perTryTimeout > 0 {
			rp.PerTryTimeout = duration(r.perTryTimeout)
		}
		rp.RetryHostPredicate = []*routev3.RetryPolicy_RetryHostPredicate{{
			Name:       retryOtherHost,
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: typed(&previoushostsv3.PreviousHostsPredicate{})},
		}}
		rp.HostSelectionRetryMaxAttempts = 5
	}
	return rp
}
