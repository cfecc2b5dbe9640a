package xds

import (
	"cmp"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Gateway API mesh routes (GAMMA) in the intermediate form: each HTTPRoute
// and GRPCRoute is checked as the standard-channel CRDs of gateway-api v1.6
// check it (a file read offline has not been through an API server, and a
// route the API server accepted can still hold what Envoy refuses: a regular
// expression too large, a header Envoy will not modify). A rule that cannot
// be translated is dropped alone, and said so; the others stay. What does
// not depend on where the route is attached (matches, filters, redirects)
// is built into Envoy's form here, once, and checked with ValidateAll.

// routeKind is HTTPRoute or GRPCRoute.
type routeKind uint8

const (
	httpRoute routeKind = iota
	grpcRoute
)

func (k routeKind) String() string {
	if k == grpcRoute {
		return "GRPCRoute"
	}
	return "HTTPRoute"
}

// meshRoute is one route: its Service parents and the rules that can be
// translated, with what was wrong, ignored or unsupported in the others.
type meshRoute struct {
	kind    routeKind
	key     objectKey
	created time.Time
	parents []routeParent
	rules   []*routeRule
	// dropped says, for each rule left out, which and why.
	dropped []string
	// ignored names fields that were read but are not applied.
	ignored []string
	// proxyless says what proxyless gRPC clients do not apply, by rule.
	proxyless []proxylessGap
}

// proxylessGap is a part of a rule that proxyless gRPC clients do not apply.
type proxylessGap struct {
	index      int
	rule, what string
}

// routeParent is a parentRef naming a Service.
type routeParent struct {
	index   int // in spec.parentRefs
	service objectKey
	port    int32  // 0: every port
	section string // a port name; "": every port
}

// routeRule is one translated rule.
type routeRule struct {
	route *meshRoute
	index int
	name  string
	// matches are the rule's matches in Envoy's form for the mode, each
	// with the precedence of the match it comes from.
	matches []*ruleMatch
	// What is done with a matched request: a redirect; or nothing can take
	// it (fail: an ExtensionRef filter, no backend with weight); or it is
	// forwarded to the backends by weight.
	redirect *routev3.RedirectAction
	fail     bool
	backends []*routeBackend
	// Applied to forwarded requests (sidecar only).
	requestHeaders, responseHeaders headerMods
	rewrite                         rewrite
	mirrors                         []*routeMirror
	// timeout and backendTimeout are timeouts.request and
	// timeouts.backendRequest; nil when unset, zero turns the timeout off.
	timeout, backendTimeout *time.Duration
	// extensionRef is the rule's ExtensionRef filter, which fails it.
	extensionRef string
}

// ruleMatch is one Envoy match of a rule.
type ruleMatch struct {
	name   string // the Envoy route's name
	envoy  *routev3.RouteMatch
	rank   precedence
	origin int // index of the match in the rule
}

// precedence orders matches across the rules of the routes merged on one
// Service port, as the specification orders them (more specific first);
// the remaining ties are broken by the route, then rule and match order.
type precedence struct {
	// HTTPRoute: the path kind (exact, regular expression, prefix) and
	// length, a method match, the numbers of header and query matches.
	pathKind    pathKind
	pathLen     int
	method      bool
	headers     int
	queryParams int
	// GRPCRoute: the characters of the service and method matched.
	serviceLen, methodLen int
}

type pathKind uint8

const (
	pathExact pathKind = iota
	pathRegex
	pathPrefix
)

// compare orders a before b when it is more specific.
func (a precedence) compare(b precedence) int {
	return cmp.Or(
		cmp.Compare(a.pathKind, b.pathKind),
		-cmp.Compare(a.pathLen, b.pathLen),
		-cmp.Compare(b2i(a.method), b2i(b.method)),
		-cmp.Compare(a.serviceLen, b.serviceLen),
		-cmp.Compare(a.methodLen, b.methodLen),
		-cmp.Compare(a.headers, b.headers),
		-cmp.Compare(a.queryParams, b.queryParams),
	)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// headerMods is a header modifier filter in Envoy's form.
type headerMods struct {
	add    []*corev3.HeaderValueOption
	remove []string
}

func (h headerMods) empty() bool { return len(h.add) == 0 && len(h.remove) == 0 }

// rewrite is a URLRewrite filter in Envoy's form.
type rewrite struct {
	host   string
	prefix string
	regex  *matcherv3.RegexMatchAndSubstitute
}

// backendRef is a reference to a backend, defaults applied.
type backendRef struct {
	group, kind string
	key         objectKey
	port        int32
}

func (r backendRef) String() string {
	if r.kind != "Service" || r.group != "" {
		return fmt.Sprintf("%s %s", groupKind(r.group, r.kind), r.key)
	}
	return fmt.Sprintf("Service %s port %d", r.key, r.port)
}

func groupKind(group, kind string) string {
	if group == "" {
		return kind
	}
	return kind + "." + group
}

// routeBackend is one backendRef of a rule; target is the Service port it
// resolved to, nil when it did not (refProblem says why).
type routeBackend struct {
	ref                             backendRef
	weight                          uint32
	requestHeaders, responseHeaders headerMods
	target                          *servicePort
	problem                         *refProblem
}

// routeMirror is a RequestMirror filter: the backend and the share of
// requests mirrored, in millionths.
type routeMirror struct {
	ref     backendRef
	million uint32
	target  *servicePort
	problem *refProblem
}

// refProblem is why a reference did not resolve: a ResolvedRefs reason
// and a message.
type refProblem struct {
	reason, message string
}

// Limits of the standard-channel CRDs and of Envoy.
const (
	maxBackendWeight = 1_000_000
	// maxRegexProgram is Envoy's default limit on a regular expression's
	// compiled size (runtime key re2.max_program_size.error_level).
	maxRegexProgram = 100
)

var (
	// gatewayDuration is GEP-2257's duration: up to four parts of up to
	// five digits and a unit.
	gatewayDuration = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)
	// pathValue is what Exact and PathPrefix paths may hold.
	pathValue = regexp.MustCompile(`^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$`)
	// preciseHostname is a host name (RFC 1123, no wildcard).
	preciseHostname = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	// grpcServiceName and grpcMethodName are what exact method matches accept.
	grpcServiceName = regexp.MustCompile(`^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`)
	grpcMethodName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z_0-9]*$`)
	// gatewayHeaderName is an HTTP token, the Gateway API's header name.
	gatewayHeaderName = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$")
	httpMethods       = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
	redirectCodes     = map[int]routev3.RedirectAction_RedirectResponseCode{
		301: routev3.RedirectAction_MOVED_PERMANENTLY,
		302: routev3.RedirectAction_FOUND,
		303: routev3.RedirectAction_SEE_OTHER,
		307: routev3.RedirectAction_TEMPORARY_REDIRECT,
		308: routev3.RedirectAction_PERMANENT_REDIRECT,
	}
)

// parseRoutes checks every route of the inputs for mode. A route defined
// twice is reported and its first definition used; rules that cannot be
// translated are dropped from their route and noted in it.
func parseRoutes(in Inputs, mode Mode) ([]*meshRoute, []error) {
	var (
		out  []*meshRoute
		errs []error
	)
	seen := map[objectKey]bool{}
	for _, r := range in.HTTPRoutes {
		if r == nil {
			continue
		}
		if err := checkRouteName(seen, "HTTPRoute", r.ObjectMeta); err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, parseHTTPRoute(r, mode))
	}
	seen = map[objectKey]bool{}
	for _, r := range in.GRPCRoutes {
		if r == nil {
			continue
		}
		if err := checkRouteName(seen, "GRPCRoute", r.ObjectMeta); err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, parseGRPCRoute(r, mode))
	}
	return out, errs
}

// checkRouteName refuses a route whose name or namespace Kubernetes would
// not accept (they end up in Envoy's route names), or defined twice.
func checkRouteName(seen map[objectKey]bool, kind string, meta metav1.ObjectMeta) error {
	fail := func(format string, args ...any) error {
		return &ObjectError{Kind: kind, Namespace: meta.Namespace, Name: meta.Name, Err: fmt.Errorf(format, args...)}
	}
	if msgs := validation.IsDNS1123Subdomain(meta.Name); len(msgs) > 0 {
		return fail("metadata.name %q is not a route name: %s", meta.Name, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Label(meta.Namespace); len(msgs) > 0 {
		return fail("metadata.namespace %q is not a namespace name: %s", meta.Namespace, strings.Join(msgs, "; "))
	}
	return firstDefinition(seen, kind, objectKey{meta.Namespace, meta.Name})
}

// ruleName checks a rule's name: a section name of the Gateway API.
func (bad *problems) ruleName(name *gatewayv1.SectionName) string {
	if name == nil {
		return ""
	}
	if msgs := validation.IsDNS1123Subdomain(string(*name)); len(msgs) > 0 {
		bad.add("name: %q is not a rule name: %s", *name, strings.Join(msgs, "; "))
		return ""
	}
	return string(*name)
}

// ServiceParents returns the Services among a route's parentRefs, as
// "namespace/name", each once: the Services whose traffic it routes.
// namespace is the route's, the parents' default.
func ServiceParents(namespace string, refs []gatewayv1.ParentReference) []string {
	var out []string
	for _, p := range refs {
		if key, ok := serviceParent(namespace, p); ok && !slices.Contains(out, key.String()) {
			out = append(out, key.String())
		}
	}
	return out
}

// serviceParent is the Service a parentRef names: group "" and kind
// Service; every other parent (a Gateway) is some other controller's.
func serviceParent(namespace string, p gatewayv1.ParentReference) (objectKey, bool) {
	if p.Group == nil || *p.Group != "" || p.Kind == nil || *p.Kind != "Service" {
		return objectKey{}, false
	}
	if p.Namespace != nil && *p.Namespace != "" {
		namespace = string(*p.Namespace)
	}
	return objectKey{namespace, string(p.Name)}, true
}

// RouteBackends returns the Services the routes of in send requests to or
// mirror them to, as "namespace/name", sorted: a client following only
// some Services needs these too.
func RouteBackends(in Inputs) []string {
	var out []string
	add := func(namespace string, o gatewayv1.BackendObjectReference) {
		if (o.Group != nil && *o.Group != "") || (o.Kind != nil && *o.Kind != "Service") {
			return
		}
		if o.Namespace != nil && *o.Namespace != "" {
			namespace = string(*o.Namespace)
		}
		if k := namespace + "/" + string(o.Name); !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	for _, r := range in.HTTPRoutes {
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				add(r.Namespace, b.BackendObjectReference)
			}
			for _, f := range rule.Filters {
				if f.RequestMirror != nil {
					add(r.Namespace, f.RequestMirror.BackendRef)
				}
			}
		}
	}
	for _, r := range in.GRPCRoutes {
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				add(r.Namespace, b.BackendObjectReference)
			}
			for _, f := range rule.Filters {
				if f.RequestMirror != nil {
					add(r.Namespace, f.RequestMirror.BackendRef)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// newMeshRoute reads what both kinds share: identity and parents.
func newMeshRoute(kind routeKind, meta objectKey, created time.Time, parents []gatewayv1.ParentReference) *meshRoute {
	r := &meshRoute{kind: kind, key: meta, created: created}
	for i, p := range parents {
		key, ok := serviceParent(meta.namespace, p)
		if !ok {
			continue
		}
		rp := routeParent{index: i, service: key}
		if p.Port != nil {
			rp.port = *p.Port
		}
		if p.SectionName != nil {
			rp.section = string(*p.SectionName)
		}
		r.parents = append(r.parents, rp)
	}
	return r
}

// addRule keeps a checked rule, or notes why it was dropped.
func (r *meshRoute) addRule(rule *routeRule, bad problems) {
	if len(bad) == 0 {
		r.rules = append(r.rules, rule)
		return
	}
	r.dropped = append(r.dropped, fmt.Sprintf("%s: %s", ruleName(rule.index, rule.name), strings.Join(bad, "; ")))
}

func ruleName(index int, name string) string {
	if name != "" {
		return fmt.Sprintf("rule %d (%s)", index, name)
	}
	return fmt.Sprintf("rule %d", index)
}

func (r *meshRoute) noteProxyless(rule *routeRule, format string, args ...any) {
	r.proxyless = append(r.proxyless, proxylessGap{rule.index, ruleName(rule.index, rule.name), fmt.Sprintf(format, args...)})
}

// proxylessGaps lists what proxyless clients do not apply, rule by rule.
func (r *meshRoute) proxylessGaps() string {
	gaps := slices.Clone(r.proxyless)
	slices.SortStableFunc(gaps, func(a, b proxylessGap) int { return cmp.Compare(a.index, b.index) })
	var out []string
	for i, g := range gaps {
		if i > 0 && gaps[i-1].index == g.index {
			out[len(out)-1] += ", " + g.what
		} else {
			out = append(out, g.rule+": "+g.what)
		}
	}
	return strings.Join(out, "; ")
}

func parseHTTPRoute(hr *gatewayv1.HTTPRoute, mode Mode) *meshRoute {
	r := newMeshRoute(httpRoute, objectKey{hr.Namespace, hr.Name}, hr.CreationTimestamp.Time, hr.Spec.ParentRefs)
	rules := hr.Spec.Rules
	if len(rules) == 0 { // the CRD's default: one rule matching everything
		rules = []gatewayv1.HTTPRouteRule{{}}
	}
	for i := range rules {
		rule, bad := r.httpRule(i, &rules[i], mode)
		if len(bad) == 0 {
			bad.envoyCheck(rule, mode)
		}
		r.addRule(rule, bad)
	}
	return r
}

func parseGRPCRoute(gr *gatewayv1.GRPCRoute, mode Mode) *meshRoute {
	r := newMeshRoute(grpcRoute, objectKey{gr.Namespace, gr.Name}, gr.CreationTimestamp.Time, gr.Spec.ParentRefs)
	rules := gr.Spec.Rules
	if len(rules) == 0 {
		rules = []gatewayv1.GRPCRouteRule{{}}
	}
	for i := range rules {
		rule, bad := r.grpcRule(i, &rules[i])
		if len(bad) == 0 {
			bad.envoyCheck(rule, mode)
		}
		r.addRule(rule, bad)
	}
	return r
}

// httpRule checks one HTTPRoute rule.
func (r *meshRoute) httpRule(i int, spec *gatewayv1.HTTPRouteRule, mode Mode) (*routeRule, problems) {
	rule := &routeRule{route: r, index: i}
	var bad problems
	rule.name = bad.ruleName(spec.Name)
	matches := spec.Matches
	if len(matches) == 0 {
		matches = []gatewayv1.HTTPRouteMatch{{}}
	}
	prefixMatches := 0
	var prefix string
	for j := range matches {
		m := bad.httpMatch(fmt.Sprintf("matches[%d]", j), &matches[j])
		if m.rank.pathKind == pathPrefix {
			prefixMatches++
			prefix = m.path
		}
		rule.matches = append(rule.matches, m.envoyMatches(r, rule, j, mode)...)
	}
	r.filters(&bad, rule, spec.Filters, httpFilters, prefixMatches, prefix)
	for k, b := range spec.BackendRefs {
		rule.backends = append(rule.backends, r.backendRef(&bad, rule, k, b.BackendRef, b.Filters))
	}
	if rule.redirect != nil && len(rule.backends) > 0 {
		bad.add("backendRefs: a rule with a RequestRedirect filter has no backendRefs")
	}
	if t := spec.Timeouts; t != nil {
		rule.timeout = bad.gatewayDuration("timeouts.request", t.Request)
		rule.backendTimeout = bad.gatewayDuration("timeouts.backendRequest", t.BackendRequest)
		if rule.timeout != nil && rule.backendTimeout != nil && *rule.timeout > 0 && *rule.backendTimeout > *rule.timeout {
			bad.add("timeouts: backendRequest %v is longer than request %v", *rule.backendTimeout, *rule.timeout)
		}
	}
	if spec.Retry != nil {
		r.ignored = append(r.ignored, fmt.Sprintf("%s: retry (an experimental-channel field; the standard-channel CRDs Tandem installs have no retry: retries come from a TrafficPolicy)", ruleName(i, rule.name)))
	}
	if spec.SessionPersistence != nil {
		r.ignored = append(r.ignored, fmt.Sprintf("%s: sessionPersistence (an experimental-channel field)", ruleName(i, rule.name)))
	}
	rule.decideAction()
	return rule, bad
}

// grpcRule checks one GRPCRoute rule.
func (r *meshRoute) grpcRule(i int, spec *gatewayv1.GRPCRouteRule) (*routeRule, problems) {
	rule := &routeRule{route: r, index: i}
	var bad problems
	rule.name = bad.ruleName(spec.Name)
	matches := spec.Matches
	if len(matches) == 0 {
		matches = []gatewayv1.GRPCRouteMatch{{}}
	}
	for j := range matches {
		m := bad.grpcMatch(fmt.Sprintf("matches[%d]", j), &matches[j])
		m.name = matchName(r, rule, j, "")
		rule.matches = append(rule.matches, m)
	}
	r.filters(&bad, rule, asHTTPFilters(spec.Filters), grpcFilters, 0, "")
	for k, b := range spec.BackendRefs {
		rule.backends = append(rule.backends, r.backendRef(&bad, rule, k, b.BackendRef, asHTTPFilters(b.Filters)))
	}
	if spec.SessionPersistence != nil {
		r.ignored = append(r.ignored, fmt.Sprintf("%s: sessionPersistence (an experimental-channel field)", ruleName(i, rule.name)))
	}
	rule.decideAction()
	return rule, bad
}

// The filter types each route kind supports.
var (
	httpFilters = []gatewayv1.HTTPRouteFilterType{gatewayv1.HTTPRouteFilterRequestHeaderModifier, gatewayv1.HTTPRouteFilterResponseHeaderModifier,
		gatewayv1.HTTPRouteFilterRequestRedirect, gatewayv1.HTTPRouteFilterURLRewrite, gatewayv1.HTTPRouteFilterRequestMirror, gatewayv1.HTTPRouteFilterExtensionRef}
	grpcFilters = []gatewayv1.HTTPRouteFilterType{gatewayv1.HTTPRouteFilterRequestHeaderModifier, gatewayv1.HTTPRouteFilterResponseHeaderModifier,
		gatewayv1.HTTPRouteFilterRequestMirror, gatewayv1.HTTPRouteFilterExtensionRef}
	backendFilters = []gatewayv1.HTTPRouteFilterType{gatewayv1.HTTPRouteFilterRequestHeaderModifier, gatewayv1.HTTPRouteFilterResponseHeaderModifier}
)

// asHTTPFilters are a GRPCRoute's filters as HTTPRoute filters: the types
// the two kinds share have the same names and fields.
func asHTTPFilters(fs []gatewayv1.GRPCRouteFilter) []gatewayv1.HTTPRouteFilter {
	out := make([]gatewayv1.HTTPRouteFilter, len(fs))
	for i, f := range fs {
		out[i] = gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterType(f.Type), RequestHeaderModifier: f.RequestHeaderModifier,
			ResponseHeaderModifier: f.ResponseHeaderModifier, RequestMirror: f.RequestMirror, ExtensionRef: f.ExtensionRef}
	}
	return out
}

func filterTypes(types []gatewayv1.HTTPRouteFilterType) string {
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// filters checks a rule's filters, of the types supported: each but
// RequestMirror and ExtensionRef at most once. A prefix rewrite or
// redirect needs the rule to have exactly one PathPrefix match (prefix).
func (r *meshRoute) filters(bad *problems, rule *routeRule, fs []gatewayv1.HTTPRouteFilter, supported []gatewayv1.HTTPRouteFilterType, prefixMatches int, prefix string) {
	var seen []gatewayv1.HTTPRouteFilterType
	for k := range fs {
		f := &fs[k]
		field := fmt.Sprintf("filters[%d]", k)
		switch {
		case !slices.Contains(supported, f.Type):
			bad.add("%s: filter type %q is not supported; supported: %s", field, f.Type, filterTypes(supported))
			continue
		case f.Type != gatewayv1.HTTPRouteFilterRequestMirror && f.Type != gatewayv1.HTTPRouteFilterExtensionRef && slices.Contains(seen, f.Type):
			bad.add("%s: filter %s is given twice; it may be given once", field, f.Type)
			continue
		}
		seen = append(seen, f.Type)
		switch f.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			rule.requestHeaders = bad.headerFilter(field+".requestHeaderModifier", f.RequestHeaderModifier)
			r.noteProxyless(rule, "RequestHeaderModifier")
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			rule.responseHeaders = bad.headerFilter(field+".responseHeaderModifier", f.ResponseHeaderModifier)
			r.noteProxyless(rule, "ResponseHeaderModifier")
		case gatewayv1.HTTPRouteFilterRequestRedirect:
			rule.redirect = bad.redirect(field+".requestRedirect", f.RequestRedirect, prefixMatches, prefix)
			r.noteProxyless(rule, "RequestRedirect (its calls fail UNAVAILABLE)")
		case gatewayv1.HTTPRouteFilterURLRewrite:
			rule.rewrite = bad.urlRewrite(field+".urlRewrite", f.URLRewrite, prefixMatches, prefix)
			r.noteProxyless(rule, "URLRewrite")
		case gatewayv1.HTTPRouteFilterRequestMirror:
			if f.RequestMirror == nil {
				bad.add("%s: type RequestMirror needs requestMirror", field)
				continue
			}
			rule.mirrors = append(rule.mirrors, bad.mirror(field+".requestMirror", f.RequestMirror, r.key.namespace))
		case gatewayv1.HTTPRouteFilterExtensionRef:
			rule.extensionRef = bad.extensionRef(field, f.ExtensionRef)
		}
	}
	if rule.redirect != nil && !rule.rewrite.empty() {
		bad.add("filters: RequestRedirect and URLRewrite cannot be combined")
	}
	if len(rule.mirrors) > 0 {
		r.noteProxyless(rule, "RequestMirror")
	}
}

// backendRef checks backendRefs[k] of a rule and its filters, which may
// modify headers only.
func (r *meshRoute) backendRef(bad *problems, rule *routeRule, k int, b gatewayv1.BackendRef, filters []gatewayv1.HTTPRouteFilter) *routeBackend {
	field := fmt.Sprintf("backendRefs[%d]", k)
	rb := bad.backend(field, b, r.key.namespace)
	for l, f := range filters {
		ffield := fmt.Sprintf("%s.filters[%d]", field, l)
		switch f.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			rb.requestHeaders = bad.headerFilter(ffield+".requestHeaderModifier", f.RequestHeaderModifier)
			r.noteProxyless(rule, "%s RequestHeaderModifier", field)
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			rb.responseHeaders = bad.headerFilter(ffield+".responseHeaderModifier", f.ResponseHeaderModifier)
			r.noteProxyless(rule, "%s ResponseHeaderModifier", field)
		default:
			bad.add("%s: filter type %q is not supported on a backendRef; supported there: %s", ffield, f.Type, filterTypes(backendFilters))
		}
	}
	return rb
}

// decideAction sets fail when the rule can forward nowhere: an
// ExtensionRef filter (no extension kinds exist; the specification asks
// for an error, not for skipping the filter), or no backend with weight.
func (rule *routeRule) decideAction() {
	if rule.redirect != nil {
		return
	}
	if rule.extensionRef != "" {
		rule.fail = true
		return
	}
	for _, b := range rule.backends {
		if b.weight > 0 {
			return
		}
	}
	rule.fail = true
}

func (rw rewrite) empty() bool { return rw.host == "" && rw.prefix == "" && rw.regex == nil }

// httpMatchSpec is an HTTPRoute match, checked, defaults applied.
type httpMatchSpec struct {
	path, method string
	headers      []valueMatch
	query        []valueMatch
	rank         precedence
}

// valueMatch matches a header or query parameter value.
type valueMatch struct {
	name, value string
	regex       bool
}

func (bad *problems) httpMatch(field string, m *gatewayv1.HTTPRouteMatch) httpMatchSpec {
	out := httpMatchSpec{path: "/", rank: precedence{pathKind: pathPrefix}}
	if p := m.Path; p != nil {
		if p.Value != nil {
			out.path = *p.Value
		}
		kind := gatewayv1.PathMatchPathPrefix
		if p.Type != nil {
			kind = *p.Type
		}
		switch kind {
		case gatewayv1.PathMatchExact, gatewayv1.PathMatchPathPrefix:
			out.rank.pathKind = pathPrefix
			if kind == gatewayv1.PathMatchExact {
				out.rank.pathKind = pathExact
			}
			bad.path(field+".path.value", out.path)
			if kind == gatewayv1.PathMatchPathPrefix && out.path != "/" {
				// A trailing slash is ignored: "/abc/" is the prefix "/abc".
				out.path = strings.TrimSuffix(out.path, "/")
			}
		case gatewayv1.PathMatchRegularExpression:
			out.rank.pathKind = pathRegex
			bad.regex(field+".path.value", out.path)
		default:
			bad.add("%s.path.type: %q is not Exact, PathPrefix or RegularExpression", field, kind)
		}
		out.rank.pathLen = len(out.path)
	} else {
		out.rank.pathLen = 1
	}
	for k, h := range m.Headers {
		hf := fmt.Sprintf("%s.headers[%d]", field, k)
		regex := h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression
		if h.Type != nil && !regex && *h.Type != gatewayv1.HeaderMatchExact {
			bad.add("%s.type: %q is not Exact or RegularExpression", hf, *h.Type)
		}
		out.headers = bad.valueMatch(hf, out.headers, strings.ToLower(string(h.Name)), h.Value, regex, true)
	}
	for k, q := range m.QueryParams {
		qf := fmt.Sprintf("%s.queryParams[%d]", field, k)
		regex := q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression
		if q.Type != nil && !regex && *q.Type != gatewayv1.QueryParamMatchExact {
			bad.add("%s.type: %q is not Exact or RegularExpression", qf, *q.Type)
		}
		out.query = bad.valueMatch(qf, out.query, string(q.Name), q.Value, regex, false)
	}
	if m.Method != nil {
		out.method = string(*m.Method)
		if !slices.Contains(httpMethods, out.method) {
			bad.add("%s.method: %q is not one of %s", field, out.method, strings.Join(httpMethods, ", "))
		}
	}
	out.rank.method = out.method != ""
	out.rank.headers, out.rank.queryParams = len(out.headers), len(out.query)
	return out
}

// valueMatch checks one header or query parameter match and adds it to
// list, unless an earlier one has the same name (header names compared
// without case): only the first counts.
func (bad *problems) valueMatch(field string, list []valueMatch, name, value string, regex, header bool) []valueMatch {
	if !gatewayHeaderName.MatchString(name) || len(name) > 256 {
		bad.add("%s.name: %q is not an HTTP header or query parameter name (letters, digits and !#$%%&'*+-.^_`|~)", field, name)
	}
	switch {
	case regex:
		bad.regex(field+".value", value)
	case value == "" || len(value) > 4096:
		bad.add("%s.value: must be 1 to 4096 characters", field)
	default:
		bad.headerValue(field+".value", value)
	}
	same := func(v valueMatch) bool {
		if header {
			return strings.EqualFold(v.name, name)
		}
		return v.name == name
	}
	if slices.ContainsFunc(list, same) {
		return list
	}
	return append(list, valueMatch{name: name, value: value, regex: regex})
}

// headerValue checks what a header value may hold: UTF-8 (xDS strings
// are), without NUL, CR or LF.
func (bad *problems) headerValue(field, v string) {
	switch {
	case !utf8.ValidString(v):
		bad.add("%s: %q is not UTF-8", field, v)
	case strings.ContainsAny(v, "\x00\r\n"):
		bad.add("%s: must not contain NUL, CR or LF", field)
	}
}

// path checks an Exact or PathPrefix value as the CRD does.
func (bad *problems) path(field, v string) {
	switch {
	case !strings.HasPrefix(v, "/"):
		bad.add("%s: %q must be an absolute path, starting with /", field, v)
	case len(v) > 1024:
		bad.add("%s: longer than 1024 characters", field)
	case !pathValue.MatchString(v):
		bad.add("%s: %q holds a character a path may not have (allowed: letters, digits, -/._~!$&'()*+,;=:@ and %%XX escapes)", field, v)
	case strings.Contains(v, "//"), strings.Contains(v, "/./"), strings.Contains(v, "/../"), strings.HasSuffix(v, "/.."), strings.HasSuffix(v, "/."),
		strings.Contains(strings.ToLower(v), "%2f"):
		bad.add("%s: %q must not contain //, /./, /../ or %%2F, nor end in /. or /..", field, v)
	}
}

// regex checks a regular expression: RE2, the dialect of Envoy and gRPC
// (Go's regexp/syntax is RE2's), and within Envoy's limit on the size of
// its compiled program.
func (bad *problems) regex(field, re string) {
	if re == "" {
		bad.add("%s: an empty regular expression", field)
		return
	}
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		bad.add("%s: %q is not a regular expression (RE2 syntax): %v", field, re, err)
		return
	}
	if n := re2ProgramSize(parsed.Simplify()); n > maxRegexProgram {
		bad.add("%s: %q is too large a regular expression for Envoy: RE2 compiles it to about %d instructions, Envoy accepts at most %d", field, re, n, maxRegexProgram)
	}
}

// re2ProgramSize estimates, never below it, the size RE2 gives the
// compiled program of re (what Envoy limits): one instruction per byte of
// a literal, character classes as byte ranges of their UTF-8 forms, four
// instructions of its own. The estimate is checked against RE2's counts
// in the tests.
func re2ProgramSize(re *syntax.Regexp) int {
	return 4 + re2Size(re)
}

func re2Size(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			if re.Flags&syntax.FoldCase != 0 {
				n += classSize(foldOrbit(r))
			} else {
				n += utf8.RuneLen(r)
			}
		}
		return n
	case syntax.OpCharClass:
		return classSize(re.Rune)
	case syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		return 8
	case syntax.OpCapture:
		return 2 + re2Size(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest:
		return 1 + re2Size(re.Sub[0])
	case syntax.OpConcat, syntax.OpAlternate:
		n := 0
		if re.Op == syntax.OpAlternate {
			n = len(re.Sub) - 1 // the branches
		}
		for _, sub := range re.Sub {
			n += re2Size(sub)
		}
		return n
	default: // empty matches and anchors
		return 1
	}
}

// classSize estimates a class given as rune ranges: an instruction per
// ASCII range; a few for all of non-ASCII (RE2 does not check UTF-8 and
// takes any multibyte sequence cheaply), or more for each range of it,
// the longer its UTF-8 forms.
func classSize(ranges []rune) int {
	ascii, wide, all := 0, 0, false
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := ranges[i], ranges[i+1]
		if lo < utf8.RuneSelf {
			ascii++
		}
		switch {
		case hi < utf8.RuneSelf:
		case lo <= utf8.RuneSelf && hi == unicode.MaxRune:
			all = true
		default:
			wide += utf8.RuneLen(hi) + 2
		}
	}
	if all || wide > 0 {
		wide += 6
	}
	return ascii + wide
}

// foldOrbit is a rune and its case foldings, as ranges of one rune.
func foldOrbit(r rune) []rune {
	out := []rune{r, r}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		out = append(out, f, f)
	}
	return out
}

// envoyMatches turns an HTTPRoute match into Envoy's form. Proxyless gRPC
// knows no path-separated prefix, so a prefix other than / is the path
// itself or the prefix with a slash; and since a gRPC call has no query
// string and is always a POST, a match on query parameters or on another
// method never matches and is left out, and a POST match needs no
// condition.
func (m httpMatchSpec) envoyMatches(r *meshRoute, rule *routeRule, j int, mode Mode) []*ruleMatch {
	headers := headerMatchers(m.headers)
	if m.method != "" && mode == Sidecar {
		headers = append(headers, &routev3.HeaderMatcher{Name: ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact(m.method)}})
	}
	if mode == Proxyless && (len(m.query) > 0 || (m.method != "" && m.method != "POST")) {
		return nil
	}
	var query []*routev3.QueryParameterMatcher
	for _, q := range m.query {
		query = append(query, &routev3.QueryParameterMatcher{Name: q.name,
			QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatcher(q)}})
	}
	match := func(suffix string, path any) *ruleMatch {
		rm := &routev3.RouteMatch{Headers: headers, QueryParameters: query}
		switch p := path.(type) {
		case *routev3.RouteMatch_Path:
			rm.PathSpecifier = p
		case *routev3.RouteMatch_Prefix:
			rm.PathSpecifier = p
		case *routev3.RouteMatch_PathSeparatedPrefix:
			rm.PathSpecifier = p
		case *routev3.RouteMatch_SafeRegex:
			rm.PathSpecifier = p
		}
		return &ruleMatch{name: matchName(r, rule, j, suffix), envoy: rm, rank: m.rank, origin: j}
	}
	switch {
	case m.rank.pathKind == pathExact:
		return []*ruleMatch{match("", &routev3.RouteMatch_Path{Path: m.path})}
	case m.rank.pathKind == pathRegex:
		return []*ruleMatch{match("", &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: m.path}})}
	case m.path == "/":
		return []*ruleMatch{match("", &routev3.RouteMatch_Prefix{Prefix: "/"})}
	case mode == Sidecar:
		return []*ruleMatch{match("", &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: m.path})}
	default:
		return []*ruleMatch{
			match("/exact", &routev3.RouteMatch_Path{Path: m.path}),
			match("/prefix", &routev3.RouteMatch_Prefix{Prefix: m.path + "/"}),
		}
	}
}

// matchName is the Envoy route name of match j of a rule.
func matchName(r *meshRoute, rule *routeRule, j int, suffix string) string {
	rn := fmt.Sprint(rule.index)
	if rule.name != "" {
		rn = rule.name
	}
	return fmt.Sprintf("%s/%s/%s/rule/%s/match/%d%s", r.kind, r.key.namespace, r.key.name, rn, j, suffix)
}

func headerMatchers(list []valueMatch) []*routev3.HeaderMatcher {
	out := make([]*routev3.HeaderMatcher, 0, len(list)+1)
	for _, h := range list {
		out = append(out, &routev3.HeaderMatcher{Name: h.name,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcher(h)}})
	}
	return out
}

func stringMatcher(v valueMatch) *matcherv3.StringMatcher {
	if v.regex {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v.value}}}
	}
	return exact(v.value)
}

func exact(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}
}

// grpcMatch checks a GRPCRoute match and builds its Envoy form: the
// method is the path /<service>/<method>.
func (bad *problems) grpcMatch(field string, m *gatewayv1.GRPCRouteMatch) *ruleMatch {
	out := &ruleMatch{rank: precedence{pathKind: pathPrefix}}
	var path any = &routev3.RouteMatch_Prefix{Prefix: "/"}
	if mm := m.Method; mm != nil {
		svc, method := ptrValue(mm.Service), ptrValue(mm.Method)
		out.rank.serviceLen, out.rank.methodLen = len(svc), len(method)
		regex := mm.Type != nil && *mm.Type == gatewayv1.GRPCMethodMatchRegularExpression
		switch {
		case mm.Type != nil && !regex && *mm.Type != gatewayv1.GRPCMethodMatchExact:
			bad.add("%s.method.type: %q is not Exact or RegularExpression", field, *mm.Type)
		case svc == "" && method == "":
			bad.add("%s.method: needs a service, a method or both", field)
		case regex:
			part := func(v string) string {
				if v == "" {
					return "[^/]+"
				}
				return "(?:" + v + ")"
			}
			re := "/" + part(svc) + "/" + part(method)
			bad.regex(field+".method", re)
			path = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}
		default:
			if svc != "" && !grpcServiceName.MatchString(svc) {
				bad.add("%s.method.service: %q is not a gRPC service name (like pkg.v1.Greeter)", field, svc)
			}
			if method != "" && !grpcMethodName.MatchString(method) {
				bad.add("%s.method.method: %q is not a gRPC method name (like SayHello)", field, method)
			}
			switch {
			case method == "":
				path = &routev3.RouteMatch_Prefix{Prefix: "/" + svc + "/"}
			case svc == "":
				path = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/[^/]+/" + regexp.QuoteMeta(method)}}
			default:
				path = &routev3.RouteMatch_Path{Path: "/" + svc + "/" + method}
			}
		}
	}
	var headers []valueMatch
	for k, h := range m.Headers {
		hf := fmt.Sprintf("%s.headers[%d]", field, k)
		regex := h.Type != nil && *h.Type == gatewayv1.GRPCHeaderMatchRegularExpression
		if h.Type != nil && !regex && *h.Type != gatewayv1.GRPCHeaderMatchExact {
			bad.add("%s.type: %q is not Exact or RegularExpression", hf, *h.Type)
		}
		headers = bad.valueMatch(hf, headers, strings.ToLower(string(h.Name)), h.Value, regex, true)
	}
	out.rank.headers = len(headers)
	out.envoy = &routev3.RouteMatch{Headers: headerMatchers(headers)}
	switch p := path.(type) {
	case *routev3.RouteMatch_Prefix:
		out.envoy.PathSpecifier = p
	case *routev3.RouteMatch_Path:
		out.envoy.PathSpecifier = p
	case *routev3.RouteMatch_SafeRegex:
		out.envoy.PathSpecifier = p
	}
	return out
}

// headerFilter checks a header modifier and builds its Envoy form. Envoy
// reads % in header values as the start of a substitution; the values
// are literal, so it is doubled.
func (bad *problems) headerFilter(field string, f *gatewayv1.HTTPHeaderFilter) headerMods {
	var out headerMods
	if f == nil {
		bad.add("%s: missing", field)
		return out
	}
	option := func(list string, h gatewayv1.HTTPHeader, action corev3.HeaderValueOption_HeaderAppendAction) {
		name := string(h.Name)
		if bad.modifiableHeader(field+"."+list, name) {
			if len(h.Value) > 4096 {
				bad.add("%s.%s: the value of %s is longer than 4096 characters", field, list, name)
			} else {
				bad.headerValue(fmt.Sprintf("%s.%s: the value of %s", field, list, name), h.Value)
			}
		}
		out.add = append(out.add, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: strings.ToLower(name), Value: strings.ReplaceAll(h.Value, "%", "%%")},
			AppendAction: action,
		})
	}
	for _, h := range f.Set {
		option("set", h, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
	}
	for _, h := range f.Add {
		option("add", h, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)
	}
	for _, name := range f.Remove {
		bad.modifiableHeader(field+".remove", name)
		out.remove = append(out.remove, strings.ToLower(name))
	}
	return out
}

// modifiableHeader checks a header name a filter sets, adds or removes:
// an HTTP token, and not Host, which Envoy refuses to modify (URLRewrite's
// hostname sets it).
func (bad *problems) modifiableHeader(field, name string) bool {
	switch {
	case !gatewayHeaderName.MatchString(name) || len(name) > 256:
		bad.add("%s: %q is not an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~)", field, name)
	case strings.EqualFold(name, "host"):
		bad.add("%s: the Host header cannot be modified by a header filter; use a URLRewrite filter's hostname", field)
	default:
		return true
	}
	return false
}

// redirect checks a RequestRedirect filter and builds Envoy's redirect.
func (bad *problems) redirect(field string, f *gatewayv1.HTTPRequestRedirectFilter, prefixMatches int, prefix string) *routev3.RedirectAction {
	if f == nil {
		bad.add("%s: missing", field)
		return nil
	}
	out := &routev3.RedirectAction{ResponseCode: routev3.RedirectAction_FOUND}
	if s := f.Scheme; s != nil {
		if *s != "http" && *s != "https" {
			bad.add("%s.scheme: %q is not http or https", field, *s)
		}
		out.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: *s}
	}
	if h := f.Hostname; h != nil {
		bad.hostname(field+".hostname", string(*h))
		out.HostRedirect = string(*h)
	}
	if p := f.Port; p != nil {
		if *p < 1 || *p > 65535 {
			bad.add("%s.port: %d is not in 1-65535", field, *p)
		}
		out.PortRedirect = uint32(*p)
	}
	if c := f.StatusCode; c != nil {
		code, ok := redirectCodes[*c]
		if !ok {
			bad.add("%s.statusCode: %d is not 301, 302, 303, 307 or 308", field, *c)
		}
		out.ResponseCode = code
	}
	if p := f.Path; p != nil {
		full, prefixRewrite, regex := bad.pathModifier(field+".path", p, prefixMatches, prefix)
		switch {
		case full != "":
			out.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: full}
		case regex != nil:
			out.PathRewriteSpecifier = &routev3.RedirectAction_RegexRewrite{RegexRewrite: regex}
		default:
			out.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: prefixRewrite}
		}
	}
	return out
}

func (bad *problems) urlRewrite(field string, f *gatewayv1.HTTPURLRewriteFilter, prefixMatches int, prefix string) rewrite {
	var out rewrite
	if f == nil {
		bad.add("%s: missing", field)
		return out
	}
	if h := f.Hostname; h != nil {
		bad.hostname(field+".hostname", string(*h))
		out.host = string(*h)
	}
	if p := f.Path; p != nil {
		var full string
		full, out.prefix, out.regex = bad.pathModifier(field+".path", p, prefixMatches, prefix)
		if full != "" {
			out.regex = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/.*$"}, Substitution: full}
		}
	}
	return out
}

// pathModifier checks a path rewrite or redirect: the full path, or the
// replacement of the matched prefix, which as the specification's table
// has it keeps whole path elements: the replacement's trailing slash is
// dropped, and an empty replacement leaves "/" for the prefix itself.
func (bad *problems) pathModifier(field string, p *gatewayv1.HTTPPathModifier, prefixMatches int, prefix string) (full, prefixRewrite string, regex *matcherv3.RegexMatchAndSubstitute) {
	switch p.Type {
	case gatewayv1.FullPathHTTPPathModifier:
		if p.ReplaceFullPath == nil {
			bad.add("%s: type ReplaceFullPath needs replaceFullPath", field)
			return "/", "", nil
		}
		v := *p.ReplaceFullPath
		bad.path(field+".replaceFullPath", v)
		return v, "", nil
	case gatewayv1.PrefixMatchHTTPPathModifier:
		if p.ReplacePrefixMatch == nil {
			bad.add("%s: type ReplacePrefixMatch needs replacePrefixMatch", field)
			return "/", "", nil
		}
		if prefixMatches != 1 {
			bad.add("%s: ReplacePrefixMatch needs exactly one PathPrefix match in the rule", field)
		}
		v := *p.ReplacePrefixMatch
		if v != "" {
			bad.path(field+".replacePrefixMatch", v)
		}
		v = strings.TrimSuffix(v, "/")
		switch {
		case v == "":
			return "", "", &matcherv3.RegexMatchAndSubstitute{
				Pattern: &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(strings.TrimSuffix(prefix, "/")) + "/*"}, Substitution: "/"}
		case prefix == "/":
			return "", v + "/", nil
		default:
			return "", v, nil
		}
	default:
		bad.add("%s.type: %q is not ReplaceFullPath or ReplacePrefixMatch", field, p.Type)
		return "/", "", nil
	}
}

func (bad *problems) hostname(field, h string) {
	if len(h) > 253 || !preciseHostname.MatchString(h) {
		bad.add("%s: %q is not a host name (lowercase DNS labels separated by dots)", field, h)
	}
}

// mirror checks a RequestMirror filter; namespace is the route's.
func (bad *problems) mirror(field string, f *gatewayv1.HTTPRequestMirrorFilter, namespace string) *routeMirror {
	out := &routeMirror{ref: bad.backendObject(field+".backendRef", f.BackendRef, namespace), million: 1_000_000}
	switch {
	case f.Percent != nil && f.Fraction != nil:
		bad.add("%s: only one of percent and fraction may be set", field)
	case f.Percent != nil:
		if *f.Percent < 0 || *f.Percent > 100 {
			bad.add("%s.percent: %d is not in 0-100", field, *f.Percent)
		} else {
			out.million = uint32(*f.Percent) * 10_000
		}
	case f.Fraction != nil:
		d := int32(100)
		if f.Fraction.Denominator != nil {
			d = *f.Fraction.Denominator
		}
		n := f.Fraction.Numerator
		if d < 1 || n < 0 || n > d {
			bad.add("%s.fraction: %d/%d is not a fraction from 0 to 1 (denominator at least 1)", field, n, d)
		} else {
			out.million = uint32(int64(n) * 1_000_000 / int64(d))
		}
	}
	return out
}

// backend checks a backendRef; the route's namespace is the default.
func (bad *problems) backend(field string, b gatewayv1.BackendRef, namespace string) *routeBackend {
	out := &routeBackend{ref: bad.backendObject(field, b.BackendObjectReference, namespace), weight: 1}
	if w := b.Weight; w != nil {
		if *w < 0 || *w > maxBackendWeight {
			bad.add("%s.weight: %d is not in 0-%d", field, *w, maxBackendWeight)
		} else {
			out.weight = uint32(*w)
		}
	}
	return out
}

// backendObject reads a reference; namespace, the route's, is the default.
func (bad *problems) backendObject(field string, o gatewayv1.BackendObjectReference, namespace string) backendRef {
	ref := backendRef{kind: "Service", key: objectKey{namespace, string(o.Name)}}
	if o.Group != nil {
		ref.group = string(*o.Group)
	}
	if o.Kind != nil {
		ref.kind = string(*o.Kind)
	}
	if o.Namespace != nil && *o.Namespace != "" {
		ref.key.namespace = string(*o.Namespace)
	}
	if o.Port != nil {
		ref.port = *o.Port
	}
	if ref.group == "" && ref.kind == "Service" {
		switch {
		case o.Port == nil:
			bad.add("%s.port: a Service backend needs its port", field)
		case ref.port < 1 || ref.port > 65535:
			bad.add("%s.port: %d is not in 1-65535", field, ref.port)
		}
	}
	if o.Name == "" {
		bad.add("%s.name: missing", field)
	}
	return ref
}

func (bad *problems) extensionRef(field string, ref *gatewayv1.LocalObjectReference) string {
	if ref == nil {
		bad.add("%s: type ExtensionRef needs extensionRef", field)
		return ""
	}
	return fmt.Sprintf("%s %s", groupKind(string(ref.Group), string(ref.Kind)), ref.Name)
}

// gatewayDuration reads a GEP-2257 duration; nil when unset.
func (bad *problems) gatewayDuration(field string, d *gatewayv1.Duration) *time.Duration {
	if d == nil {
		return nil
	}
	v, err := time.ParseDuration(string(*d))
	if !gatewayDuration.MatchString(string(*d)) || err != nil {
		bad.add("%s: %q is not a duration such as 500ms, 10s, 1m or 1h30m (digits and h, m, s or ms, up to four parts)", field, *d)
		return nil
	}
	return &v
}

// envoyCheck builds the rule's Envoy routes as they would be built on a
// port with no policy, and validates them: what the checks above missed
// and Envoy would refuse drops the rule here, never the port's
// configuration later.
func (bad *problems) envoyCheck(rule *routeRule, mode Mode) {
	probe := &servicePort{svc: &service{key: objectKey{"probe", "probe"}}, port: 1, policy: defaultPolicy}
	for _, m := range rule.matches {
		if err := validateMessage(envoyRoute(probe, routeEntry{rule: rule, match: m}, nil, mode)); err != nil {
			bad.add("Envoy would refuse it: %v", err)
			return
		}
	}
}
