package xds

import (
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// grpcChannelID is the filter state key gRPC hashes to pin a client
// channel, gRPC's stand-in for a source address.
const grpcChannelID = "io.grpc.channel_id"

// retryOtherHost makes a retry pick another endpoint than the ones tried.
const retryOtherHost = "envoy.retry_host_predicates.previous_hosts"

// unresolvedCluster is the cluster a route sends the share of its requests
// to whose backend does not resolve. No such cluster exists for Envoy,
// which answers those requests with the route's cluster_not_found code;
// proxyless gRPC gets it without endpoints, and fails them UNAVAILABLE.
const unresolvedCluster = "unresolved-backend"

// Parts of route configurations shared by all of them (resources are
// read-only): the route answering what no rule of a port's routes
// matches, and the zero timeout that turns Envoy's default off.
var (
	notFound = &routev3.Route{
		Name:   "no-route-matched",
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 404}},
	}
	noTimeout = duration(0)
)

// routeConfiguration routes the requests for one Service port: by the
// port's HTTPRoutes or GRPCRoutes when some apply, else all of them to its
// cluster, with the port's timeout, retries and, for hashing policies, the
// request property to hash. The filter chain or API listener it belongs
// to already selected the Service, so any host name matches.
func routeConfiguration(p *servicePort, mode Mode) *routev3.RouteConfiguration {
	var routes []*routev3.Route
	if p.routes == nil {
		routes = []*routev3.Route{{
			Name:   "default",
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: routeAction(p, mode)},
		}}
	} else {
		routes = make([]*routev3.Route, 0, len(p.routes.entries)+1)
		retries := retryPolicy(p.policy.retry, mode)
		for _, e := range p.routes.entries {
			routes = append(routes, envoyRoute(p, e, retries, mode))
		}
		// Proxyless gRPC fails a call no route matches (UNAVAILABLE) by
		// itself; Envoy answers 404, which it turns into UNIMPLEMENTED
		// for gRPC.
		if mode == Sidecar {
			routes = append(routes, notFound)
		}
	}
	return &routev3.RouteConfiguration{
		Name: p.hostPort(),
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    p.hostPort(),
			Domains: []string{"*"},
			Routes:  routes,
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
	setTimeout(a, pol.timeout, mode)
	return a
}

// setTimeout sets a route's timeout: gRPC reads a route's deadline from
// max_stream_duration only; in Envoy zero turns off the 15s default,
// which would cut long streams.
func setTimeout(a *routev3.RouteAction, timeout time.Duration, mode Mode) {
	switch {
	case mode == Proxyless && timeout > 0:
		a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: duration(timeout)}
	case mode == Sidecar && timeout == 0:
		a.Timeout = noTimeout
	case mode == Sidecar:
		a.Timeout = duration(timeout)
	}
}

// envoyRoute is one match of a rule on Service port p, whose retries are
// retries (shared by the port's routes).
func envoyRoute(p *servicePort, e routeEntry, retries *routev3.RetryPolicy, mode Mode) *routev3.Route {
	rule := e.rule
	out := &routev3.Route{Name: e.match.name, Match: e.match.envoy}
	if rule.redirect != nil {
		out.Action = &routev3.Route_Redirect{Redirect: rule.redirect}
		return out
	}
	out.Action = &routev3.Route_Route{Route: ruleAction(p, rule, retries, mode)}
	if mode == Sidecar {
		out.RequestHeadersToAdd, out.RequestHeadersToRemove = rule.requestHeaders.add, rule.requestHeaders.remove
		out.ResponseHeadersToAdd, out.ResponseHeadersToRemove = rule.responseHeaders.add, rule.responseHeaders.remove
	}
	return out
}

// ruleAction forwards a rule's requests to its backends by weight, with
// the port's retries, the rule's timeouts (else the port's), rewrite and
// mirrors. The share of a backend that does not resolve goes to
// unresolvedCluster: Envoy answers it 500 for an HTTPRoute, 503 (gRPC
// UNAVAILABLE) for a GRPCRoute, as the specification wants; it is never
// given to the other backends.
func ruleAction(p *servicePort, rule *routeRule, retries *routev3.RetryPolicy, mode Mode) *routev3.RouteAction {
	a := &routev3.RouteAction{RetryPolicy: retries}
	var (
		weighted   []*routev3.WeightedCluster_ClusterWeight
		unresolved uint32
		perBackend bool // some backend has header filters of its own
	)
	if !rule.fail {
		for _, b := range rule.backends {
			switch {
			case b.weight == 0:
				continue
			case b.target == nil:
				unresolved += b.weight
				continue
			}
			cw := &routev3.WeightedCluster_ClusterWeight{Name: b.target.clusterName(), Weight: wrapperspb.UInt32(b.weight)}
			if mode == Sidecar && !(b.requestHeaders.empty() && b.responseHeaders.empty()) {
				perBackend = true
				cw.RequestHeadersToAdd, cw.RequestHeadersToRemove = b.requestHeaders.add, b.requestHeaders.remove
				cw.ResponseHeadersToAdd, cw.ResponseHeadersToRemove = b.responseHeaders.add, b.responseHeaders.remove
			}
			weighted = append(weighted, cw)
			if pol := &b.target.policy; pol.lb.hashed() {
				hp := hashPolicy(pol, mode)
				if !slices.ContainsFunc(a.HashPolicy, func(x *routev3.RouteAction_HashPolicy) bool { return proto.Equal(x, hp) }) {
					a.HashPolicy = append(a.HashPolicy, hp)
				}
			}
		}
	}
	if unresolved > 0 && len(weighted) > 0 {
		weighted = append(weighted, &routev3.WeightedCluster_ClusterWeight{Name: unresolvedCluster, Weight: wrapperspb.UInt32(unresolved)})
	}
	switch {
	case len(weighted) == 0:
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: unresolvedCluster}
	case len(weighted) == 1 && !perBackend:
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: weighted[0].Name}
	default:
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: weighted}}
	}
	if mode == Sidecar && (unresolved > 0 || len(weighted) == 0) {
		a.ClusterNotFoundResponseCode = routev3.RouteAction_INTERNAL_SERVER_ERROR
		if rule.route.kind == grpcRoute {
			a.ClusterNotFoundResponseCode = routev3.RouteAction_SERVICE_UNAVAILABLE
		}
	}

	timeout := p.policy.timeout
	if rule.timeout != nil {
		timeout = *rule.timeout
	}
	// backendRequest bounds each attempt; without retries, or in proxyless
	// gRPC, which has no timeout per attempt, the whole call.
	if bt := rule.backendTimeout; bt != nil {
		if mode == Sidecar && a.RetryPolicy != nil {
			a.RetryPolicy = proto.CloneOf(a.RetryPolicy)
			a.RetryPolicy.PerTryTimeout = duration(*bt)
		} else if *bt > 0 && (timeout == 0 || *bt < timeout) {
			timeout = *bt
		}
	}
	setTimeout(a, timeout, mode)

	if mode == Sidecar {
		rw := rule.rewrite
		if rw.host != "" {
			a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.host}
		}
		a.PrefixRewrite, a.RegexRewrite = rw.prefix, rw.regex
		for _, m := range rule.mirrors {
			if m.target == nil {
				continue
			}
			mp := &routev3.RouteAction_RequestMirrorPolicy{Cluster: m.target.clusterName()}
			if m.million < 1_000_000 {
				mp.RuntimeFraction = &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
					Numerator: m.million, Denominator: typev3.FractionalPercent_MILLION}}
			}
			a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, mp)
		}
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
