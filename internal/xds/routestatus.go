package xds

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/capture"
)

// What became of the routes: errors for the agent's log and `agent
// config`, and the status the injector writes into each route. Both come
// from the same translation, so the status cannot disagree with what the
// clients do.

// RouteStatus is what the translation makes of one HTTPRoute or GRPCRoute.
type RouteStatus struct {
	Kind            string // HTTPRoute or GRPCRoute
	Namespace, Name string
	// Parents has an entry for each spec.parentRefs entry naming a Service.
	Parents []RouteParentStatus
	// ResolvedRefs is OK when every backend and mirror resolves; else it
	// has the reason of the first that does not, and all in its message.
	ResolvedRefs RouteCondition
	// DroppedRules, when some rules but not all cannot be translated, says
	// which (they are left out; the others apply).
	DroppedRules string
	// Proxyless is OK when proxyless gRPC clients apply all of the route;
	// else the message says what they do not.
	Proxyless RouteCondition
}

// RouteParentStatus is one Service parent of a route.
type RouteParentStatus struct {
	// Index is the parent's position in spec.parentRefs.
	Index    int
	Accepted RouteCondition
}

// RouteCondition is a condition's status, reason and message.
type RouteCondition struct {
	OK      bool
	Reason  string
	Message string
}

// ReasonCompatible is the reason of a route that proxyless gRPC clients
// apply whole.
const ReasonCompatible = "Compatible"

// EvaluateRoutes returns the status of every route in the inputs, for
// clients of every namespace (consumer routes included), sorted by kind,
// namespace and name. The inputs need the routes' parent and backend
// Services, and the other routes on those parents.
func EvaluateRoutes(in Inputs) []RouteStatus {
	sidecar, _ := buildModel(in, Sidecar)
	proxyless, _ := buildModel(in, Proxyless)
	var out []RouteStatus
	for i, st := range sidecar.routes {
		r := st.route
		rs := RouteStatus{Kind: r.kind.String(), Namespace: r.key.namespace, Name: r.key.name}
		for _, ps := range st.parents {
			rs.Parents = append(rs.Parents, RouteParentStatus{Index: ps.parent.index, Accepted: acceptedCondition(ps, r)})
		}
		rs.ResolvedRefs = resolvedRefs(r)
		dropped := r.dropped
		for _, d := range proxyless.routes[i].route.dropped {
			if !slices.Contains(dropped, d) {
				dropped = append(dropped, d+" (proxyless)")
			}
		}
		if len(dropped) > 0 && len(r.rules) > 0 {
			rs.DroppedRules = "Dropped Rule(s): " + strings.Join(dropped, "; ")
		}
		rs.Proxyless = RouteCondition{OK: true, Reason: ReasonCompatible, Message: "proxyless gRPC clients apply the whole route"}
		if len(r.proxyless) > 0 {
			rs.Proxyless = RouteCondition{Reason: string(gatewayv1.RouteReasonUnsupportedValue),
				Message: "proxyless gRPC clients do not apply: " + r.proxylessGaps()}
		}
		out = append(out, rs)
	}
	slices.SortFunc(out, func(a, b RouteStatus) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

func acceptedCondition(ps *parentState, r *meshRoute) RouteCondition {
	if !ps.accepted {
		return RouteCondition{Reason: ps.reason, Message: ps.message}
	}
	var applied []int32
	for _, p := range ps.ports {
		if !slices.Contains(ps.lost, p) {
			applied = append(applied, p.port)
		}
	}
	msg := fmt.Sprintf("routes the traffic sent to Service %s port %s", ps.parent.service, capture.JoinPorts(applied))
	if ps.route.key.namespace != ps.parent.service.namespace {
		msg += " by clients in namespace " + ps.route.key.namespace
	}
	if len(ps.lost) > 0 {
		slices.Sort(ps.winners)
		msg += fmt.Sprintf("; on port %s GRPCRoute %s takes precedence", portList(ps.lost), strings.Join(ps.winners, ", "))
	}
	if len(r.ignored) > 0 {
		msg += "; ignored: " + strings.Join(r.ignored, "; ")
	}
	return RouteCondition{OK: true, Reason: string(gatewayv1.RouteReasonAccepted), Message: msg}
}

func portList(ps []*servicePort) string {
	ports := make([]int32, len(ps))
	for i, p := range ps {
		ports[i] = p.port
	}
	slices.Sort(ports)
	return capture.JoinPorts(ports)
}

// resolvedRefs checks every backend, mirror and filter reference.
func resolvedRefs(r *meshRoute) RouteCondition {
	failed := "HTTP 500"
	if r.kind == grpcRoute {
		failed = "UNAVAILABLE"
	}
	var (
		reason string
		msgs   []string
	)
	note := func(rule *routeRule, reasonIfFirst, msg string) {
		if reason == "" {
			reason = reasonIfFirst
		}
		msgs = append(msgs, ruleName(rule.index, rule.name)+": "+msg)
	}
	for _, rule := range r.rules {
		if rule.extensionRef != "" {
			note(rule, string(gatewayv1.RouteReasonInvalidKind), fmt.Sprintf("filter ExtensionRef %s: no extension kinds are supported; requests matching the rule get %s", rule.extensionRef, failed))
		}
		for _, b := range rule.backends {
			switch {
			case b.problem == nil:
			case b.weight == 0:
				note(rule, b.problem.reason, b.problem.message+" (weight 0: it is sent nothing)")
			default:
				note(rule, b.problem.reason, fmt.Sprintf("%s: its share of the requests gets %s", b.problem.message, failed))
			}
		}
		for _, m := range rule.mirrors {
			if m.problem != nil {
				note(rule, m.problem.reason, m.problem.message+": requests are not mirrored")
			}
		}
	}
	if reason == "" {
		return RouteCondition{OK: true, Reason: string(gatewayv1.RouteReasonResolvedRefs), Message: "every backend resolves"}
	}
	return RouteCondition{Reason: reason, Message: strings.Join(msgs, "; ")}
}

// routeErrors reports what of the routes that apply to a client in
// namespace ns is not applied as written: one error per route. Consumer
// routes of other namespaces are not this client's concern.
func routeErrors(states []*routeState, ns string, mode Mode) []error {
	var errs []error
	for _, st := range states {
		r := st.route
		if !slices.ContainsFunc(r.parents, func(p routeParent) bool { return p.service.namespace == r.key.namespace || r.key.namespace == ns }) {
			continue
		}
		var msgs []string
		for _, ps := range st.parents {
			switch {
			case !ps.accepted:
				msgs = append(msgs, fmt.Sprintf("parentRefs[%d]: not applied: %s", ps.parent.index, ps.message))
			case len(ps.lost) > 0:
				slices.Sort(ps.winners)
				msgs = append(msgs, fmt.Sprintf("parentRefs[%d]: not applied on Service %s port %s, where GRPCRoute %s takes precedence", ps.parent.index, ps.parent.service, portList(ps.lost), strings.Join(ps.winners, ", ")))
			}
		}
		if len(r.rules) > 0 {
			for _, d := range r.dropped {
				msgs = append(msgs, "dropped "+d)
			}
		}
		if refs := resolvedRefs(r); !refs.OK {
			msgs = append(msgs, refs.Message)
		}
		for _, ig := range r.ignored {
			msgs = append(msgs, "ignored "+ig)
		}
		if mode == Proxyless && len(r.proxyless) > 0 {
			msgs = append(msgs, "proxyless gRPC does not apply: "+r.proxylessGaps())
		}
		if len(msgs) > 0 {
			errs = append(errs, &ObjectError{Kind: r.kind.String(), Namespace: r.key.namespace, Name: r.key.name, Err: errors.New(strings.Join(msgs, "; "))})
		}
	}
	return errs
}

// RouteTimeoutOverrides names the accepted routes whose own timeouts
// replace those of tp on the Service ports it applies to: where both set
// one, the route's wins.
func RouteTimeoutOverrides(in Inputs, tp *v1alpha1.TrafficPolicy) []string {
	m, _ := buildModel(in, Sidecar)
	source := objectKey{tp.Namespace, tp.Name}
	var out []string
	for _, st := range m.routes {
		timed := slices.ContainsFunc(st.route.rules, func(rule *routeRule) bool { return rule.timeout != nil || rule.backendTimeout != nil })
		if !timed {
			continue
		}
		for _, ps := range st.parents {
			for _, p := range ps.ports {
				pol := &p.policy
				setsTimeout := pol.timeout > 0 || (pol.retry != nil && pol.retry.perTryTimeout > 0)
				if ps.applies(p) && pol.source == source && setsTimeout {
					name := fmt.Sprintf("%s %s on port %d", st.route.kind, st.route.key, p.port)
					if !slices.Contains(out, name) {
						out = append(out, name)
					}
				}
			}
		}
	}
	slices.Sort(out)
	return out
}
