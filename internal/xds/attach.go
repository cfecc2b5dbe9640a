package xds

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/internal/capture"
)

// Routes on Service ports (GEP-1294): which routes attach to which ports,
// which of them apply to this client, in what order their matches are
// tried, and where their backends are.

// reasonConflicted is GEP-1294's reason for a route of a kind that loses
// a Service port to routes of another kind (gateway-api v1.6 has no
// constant for it).
const reasonConflicted gatewayv1.RouteConditionReason = "Conflicted"

// portRoutes are the routes that apply to a Service port for this client.
// Once a route is attached, a request that matches none of its rules is
// answered 404: it no longer goes to the port's own cluster.
type portRoutes struct {
	// entries are the rules' matches in the order they are tried.
	entries []routeEntry
	// unresolved is set when some entry sends requests to a backend that
	// does not resolve (or to none).
	unresolved bool
}

type routeEntry struct {
	rule  *routeRule
	match *ruleMatch
}

// routeState is what became of one route in a translation.
type routeState struct {
	route   *meshRoute
	parents []*parentState
}

// parentState is one of the route's Service parents: the ports it
// attaches to, or why it is not accepted.
type parentState struct {
	route  *meshRoute
	parent routeParent
	ports  []*servicePort
	// lost are the ports where a GRPCRoute of the same group takes
	// precedence over this HTTPRoute.
	lost     []*servicePort
	winners  []string
	accepted bool
	reason   string // a gatewayv1 RouteConditionReason when not accepted
	message  string
}

func (ps *parentState) reject(reason gatewayv1.RouteConditionReason, format string, args ...any) {
	ps.accepted, ps.reason, ps.message = false, string(reason), fmt.Sprintf(format, args...)
}

// applies reports whether the parent's route is applied on p.
func (ps *parentState) applies(p *servicePort) bool {
	return ps.accepted && slices.Contains(ps.ports, p) && !slices.Contains(ps.lost, p)
}

// group is the namespace whose clients the route applies to: its own.
// Routes in the Service's namespace (producer routes) apply to every
// client without consumer routes of its own.
func (ps *parentState) group() string { return ps.route.key.namespace }

// attachRoutes resolves the routes' parents and backends against the
// model's Services and applies to each Service port the routes for a
// client in local.Namespace: its namespace's consumer routes when it has
// some there, else the producer routes. exists tells which Services the
// inputs define (a Service defined but left out of the model is not
// "missing").
func attachRoutes(m *model, routes []*meshRoute, local Locality, exists map[objectKey]bool) []*routeState {
	services := make(map[objectKey]*service, len(m.services))
	for _, s := range m.services {
		services[s.key] = s
	}
	byPort := map[*servicePort][]*parentState{}
	states := make([]*routeState, 0, len(routes))
	for _, r := range routes {
		for _, rule := range r.rules {
			for _, b := range rule.backends {
				b.target, b.problem = resolveBackend(b.ref, services, exists)
			}
			for _, mr := range rule.mirrors {
				mr.target, mr.problem = resolveBackend(mr.ref, services, exists)
			}
		}
		st := &routeState{route: r}
		for _, parent := range r.parents {
			ps := attachParent(r, parent, services, exists)
			st.parents = append(st.parents, ps)
			for _, p := range ps.ports {
				byPort[p] = append(byPort[p], ps)
			}
		}
		states = append(states, st)
	}
	resolveConflicts(byPort)
	for _, p := range m.ports() {
		p.routes = applyRoutes(p, byPort[p], local.Namespace)
	}
	for _, st := range states {
		notePerTryTimeouts(st)
	}
	return states
}

// notePerTryTimeouts notes, of a route attached where a TrafficPolicy sets
// retries, the backendRequest timeouts proxyless gRPC cannot apply to
// each attempt: there they bound the whole call.
func notePerTryTimeouts(st *routeState) {
	retried := slices.ContainsFunc(st.parents, func(ps *parentState) bool {
		return slices.ContainsFunc(ps.ports, func(p *servicePort) bool { return ps.applies(p) && p.policy.retry != nil })
	})
	if !retried {
		return
	}
	for _, rule := range st.route.rules {
		if rule.backendTimeout != nil {
			st.route.noteProxyless(rule, "timeouts.backendRequest per attempt (with the TrafficPolicy's retries it bounds the whole call)")
		}
	}
}

// attachParent finds the ports of one Service parent a route attaches to.
func attachParent(r *meshRoute, parent routeParent, services map[objectKey]*service, exists map[objectKey]bool) *parentState {
	ps := &parentState{route: r, parent: parent, accepted: true}
	svc := services[parent.service]
	switch {
	case svc == nil && exists[parent.service]:
		ps.reject(gatewayv1.RouteReasonNoMatchingParent, "Service %s is not translated (type ExternalName, or invalid: see its errors)", parent.service)
		return ps
	case svc == nil:
		ps.reject(gatewayv1.RouteReasonNoMatchingParent, "Service %s does not exist", parent.service)
		return ps
	case svc.headless:
		ps.reject(gatewayv1.RouteReasonNoMatchingParent, "Service %s is headless: its clients dial pods, and a route takes only the traffic sent to a cluster IP", parent.service)
		return ps
	case len(r.rules) == 0:
		ps.reject(gatewayv1.RouteReasonUnsupportedValue, "no rule can be translated: %s", strings.Join(r.dropped, "; "))
		return ps
	}
	var named, opaque []int32
	for _, p := range svc.ports {
		if (parent.port != 0 && p.port != parent.port) || (parent.section != "" && p.name != parent.section) {
			continue
		}
		named = append(named, p.port)
		if p.protocol == protoTCP {
			opaque = append(opaque, p.port)
			continue
		}
		ps.ports = append(ps.ports, p)
	}
	switch {
	case len(named) == 0:
		ps.reject(gatewayv1.RouteReasonNoMatchingParent, "Service %s has no TCP port %s (its ports: %s)", parent.service, parentPortName(parent), cmp.Or(capture.JoinPorts(servicePorts(svc)), "none"))
	case len(ps.ports) == 0:
		ps.reject(gatewayv1.RouteReasonNoMatchingParent, "Service %s port %s is opaque TCP (its name or appProtocol says so): routes apply to HTTP and gRPC ports", parent.service, capture.JoinPorts(opaque))
	}
	return ps
}

func parentPortName(parent routeParent) string {
	switch {
	case parent.port != 0 && parent.section != "":
		return fmt.Sprintf("%d named %q", parent.port, parent.section)
	case parent.port != 0:
		return fmt.Sprint(parent.port)
	default:
		return fmt.Sprintf("named %q", parent.section)
	}
}

func servicePorts(s *service) []int32 {
	out := make([]int32, len(s.ports))
	for i, p := range s.ports {
		out[i] = p.port
	}
	return out
}

// resolveBackends finds the Service port a backendRef names: its cluster
// gets the requests. Backends in other namespaces need no ReferenceGrant
// in a mesh (GEP-1294): a route only re-steers traffic its clients could
// send themselves.
func resolveBackend(ref backendRef, services map[objectKey]*service, exists map[objectKey]bool) (*servicePort, *refProblem) {
	fail := func(reason gatewayv1.RouteConditionReason, format string, args ...any) (*servicePort, *refProblem) {
		return nil, &refProblem{reason: string(reason), message: fmt.Sprintf(format, args...)}
	}
	if ref.group != "" || ref.kind != "Service" {
		return fail(gatewayv1.RouteReasonInvalidKind, "backend %s: only Services (group \"\", kind Service) can be backends", ref)
	}
	svc := services[ref.key]
	switch {
	case svc == nil && exists[ref.key]:
		return fail(gatewayv1.RouteReasonUnsupportedValue, "backend Service %s is not translated (type ExternalName, or invalid: see its errors)", ref.key)
	case svc == nil:
		return fail(gatewayv1.RouteReasonBackendNotFound, "backend Service %s does not exist", ref.key)
	case svc.headless:
		return fail(gatewayv1.RouteReasonUnsupportedValue, "backend Service %s is headless: routes send to Services with a cluster IP", ref.key)
	}
	for _, p := range svc.ports {
		if p.port != ref.port {
			continue
		}
		if p.protocol == protoTCP {
			return fail(gatewayv1.RouteReasonUnsupportedProtocol, "backend Service %s port %d is opaque TCP (its name or appProtocol says so): HTTP and gRPC cannot be sent to it", ref.key, ref.port)
		}
		return p, nil
	}
	return fail(gatewayv1.RouteReasonBackendNotFound, "backend Service %s has no TCP port %d (its ports: %s)", ref.key, ref.port, cmp.Or(capture.JoinPorts(servicePorts(svc)), "none"))
}

// resolveConflicts applies GEP-1294's rule for routes of different kinds
// on one Service port: within each group, GRPCRoutes take precedence and
// the HTTPRoutes there are not applied. An HTTPRoute that loses every
// port it attaches to is not accepted (Conflicted).
func resolveConflicts(byPort map[*servicePort][]*parentState) {
	for p, list := range byPort {
		grpcByGroup := map[string][]string{}
		for _, ps := range list {
			if ps.accepted && ps.route.kind == grpcRoute {
				grpcByGroup[ps.group()] = append(grpcByGroup[ps.group()], ps.route.key.String())
			}
		}
		for _, ps := range list {
			if winners := grpcByGroup[ps.group()]; ps.accepted && ps.route.kind == httpRoute && len(winners) > 0 && !slices.Contains(ps.lost, p) {
				ps.lost = append(ps.lost, p)
				for _, w := range winners {
					if !slices.Contains(ps.winners, w) {
						ps.winners = append(ps.winners, w)
					}
				}
			}
		}
	}
	for _, list := range byPort {
		for _, ps := range list {
			if ps.accepted && len(ps.lost) > 0 && len(ps.lost) == len(ps.ports) {
				slices.Sort(ps.winners)
				ps.reject(reasonConflicted, "GRPCRoute %s on the same Service port takes precedence over HTTPRoutes (GEP-1294)", strings.Join(ps.winners, ", "))
			}
		}
	}
}

// applyRoutes orders the matches of the routes that apply to p for a
// client in namespace ns; nil when no route is attached to p.
func applyRoutes(p *servicePort, attached []*parentState, ns string) *portRoutes {
	group := p.svc.key.namespace
	if ns != "" && ns != group && slices.ContainsFunc(attached, func(ps *parentState) bool { return ps.group() == ns && ps.applies(p) }) {
		group = ns
	}
	var routes []*meshRoute
	for _, ps := range attached {
		if ps.group() == group && ps.applies(p) && !slices.Contains(routes, ps.route) {
			routes = append(routes, ps.route)
		}
	}
	if len(routes) == 0 {
		return nil
	}
	out := &portRoutes{}
	for _, r := range routes {
		for _, rule := range r.rules {
			for _, m := range rule.matches {
				out.entries = append(out.entries, routeEntry{rule: rule, match: m})
			}
			out.unresolved = out.unresolved || rule.unresolved()
		}
	}
	slices.SortStableFunc(out.entries, compareEntries)
	return out
}

// compareEntries is the specification's order of matches across routes:
// the more specific match first, then the older route, then the route
// first by namespace and name, then rule and match order.
func compareEntries(a, b routeEntry) int {
	ra, rb := a.rule.route, b.rule.route
	return cmp.Or(
		a.match.rank.compare(b.match.rank),
		ra.created.Compare(rb.created),
		cmp.Compare(ra.key.namespace, rb.key.namespace),
		cmp.Compare(ra.key.name, rb.key.name),
		cmp.Compare(a.rule.index, b.rule.index),
		cmp.Compare(a.match.origin, b.match.origin),
	)
}

// unresolved reports whether some of the rule's requests go nowhere.
func (rule *routeRule) unresolved() bool {
	if rule.redirect != nil {
		return false
	}
	if rule.fail {
		return true
	}
	for _, b := range rule.backends {
		if b.weight > 0 && b.target == nil {
			return true
		}
	}
	return false
}
