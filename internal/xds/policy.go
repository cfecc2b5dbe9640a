package xds

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/capture"
)

// lbPolicy is a load-balancing algorithm.
type lbPolicy int

const (
	lbLeastRequest lbPolicy = iota
	lbRoundRobin
	lbRandom
	lbRingHash
	lbMaglev
)

func (l lbPolicy) hashed() bool { return l == lbRingHash || l == lbMaglev }

// policy is a TrafficPolicy's effect on one Service port, with the
// API's defaults applied. The zero durations and counts mean "the client's
// default".
type policy struct {
	source       objectKey // the TrafficPolicy; zero for the defaults
	setsLB       bool      // spec.loadBalancer is set: it wins over the Service's affinity
	lb           lbPolicy
	choiceCount  uint32
	hashHeader   string
	hashSourceIP bool
	slowStart    time.Duration
	outlier      *outlier
	retry        *retry
	timeout      time.Duration
	maxRequests  uint32 // per upstream connection
}

type outlier struct {
	consecutive5xx     uint32
	interval           time.Duration
	baseEjectionTime   time.Duration
	maxEjectionPercent *uint32
}

type retry struct {
	attempts      uint32
	retryOn       string
	perTryTimeout time.Duration
}

// defaultPolicy applies to Service ports no TrafficPolicy targets:
// least request, the per-request balancing Tandem exists for.
var defaultPolicy = policy{lb: lbLeastRequest}

// withClientIPAffinity is p with sessionAffinity ClientIP's balancing: a
// consistent hash of the client (its source address in the sidecar, its
// channel in proxyless gRPC), so each client stays on one endpoint while it
// exists. The rest of the policy (retries, timeouts, outlier detection)
// stays.
func (p policy) withClientIPAffinity() policy {
	p.lb, p.hashHeader, p.hashSourceIP = lbRingHash, "", true
	p.choiceCount, p.slowStart = 0, 0
	return p
}

// OverridesSessionAffinity reports whether tp, applied to svc, replaces
// the balancing of the Service's sessionAffinity ClientIP with its own:
// it does when it sets spec.loadBalancer.
func OverridesSessionAffinity(svc *corev1.Service, tp *v1alpha1.TrafficPolicy) bool {
	return svc != nil && tp != nil && svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP && setsLoadBalancer(tp)
}

func setsLoadBalancer(tp *v1alpha1.TrafficPolicy) bool { return tp.Spec.LoadBalancer != nil }

// defaultRetryOn retries what did not reach the application, or what the
// application asked to have retried.
const defaultRetryOn = "connect-failure,refused-stream,unavailable"

var (
	retryConditions = []string{"5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "refused-stream",
		"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
	// headerName is an HTTP token, as the CRD requires.
	headerName = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+\-.^_|~]+$`)
	// serviceName is a DNS label, as Service names are.
	serviceName = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
)

// parsePolicy checks a TrafficPolicy as the CRD's schema does (the API
// server enforces it, but files read offline have not been through one) and
// returns its effect. Every problem is reported, not only the first.
func parsePolicy(tp *v1alpha1.TrafficPolicy) (policy, error) {
	sp := &tp.Spec
	p := policy{source: objectKey{tp.Namespace, tp.Name}, setsLB: setsLoadBalancer(tp)}
	var bad problems
	if tp.Name == "" || tp.Namespace == "" {
		bad.add("metadata.name and metadata.namespace must both be set")
	}
	bad.checkTarget(sp.TargetRef)
	if lb := sp.LoadBalancer; lb != nil {
		bad.readLoadBalancer(lb, &p)
	}
	if od := sp.OutlierDetection; od != nil {
		p.outlier = bad.readOutlier(od)
	}
	if r := sp.Retries; r != nil {
		p.retry = bad.readRetries(r)
	}
	p.timeout = bad.duration("spec.timeout", sp.Timeout)
	if m := sp.MaxRequestsPerConnection; m != nil {
		if *m < 1 {
			bad.add("spec.maxRequestsPerConnection: %d must be at least 1", *m)
		} else {
			p.maxRequests = uint32(*m)
		}
	}
	if len(bad) > 0 {
		return policy{}, &ObjectError{Kind: "TrafficPolicy", Namespace: tp.Namespace, Name: tp.Name,
			Err: fmt.Errorf("invalid, not applied: %s", strings.Join(bad, "; "))}
	}
	return p, nil
}

// problems collects what is wrong with a TrafficPolicy; each part of the
// spec is read by a method that reports into it.
type problems []string

func (ps *problems) add(format string, args ...any) {
	*ps = append(*ps, fmt.Sprintf(format, args...))
}

// duration returns d, or 0 when unset; one not positive is a problem.
func (ps *problems) duration(field string, d *metav1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	if d.Duration <= 0 {
		ps.add("%s: %q must be a positive duration such as 500ms, 5s, 1.5m or 1h30m", field, d.Duration.String())
		return 0
	}
	return d.Duration
}

func (ps *problems) checkTarget(tr v1alpha1.TargetRef) {
	if !serviceName.MatchString(tr.Name) || len(tr.Name) > 63 {
		ps.add("spec.targetRef.name: %q is not a Service name (a DNS label: lowercase letters, digits, '-')", tr.Name)
	}
	if port := tr.Port; port != nil && (*port < 1 || *port > 65535) {
		ps.add("spec.targetRef.port: %d is not in 1-65535", *port)
	}
}

// readLoadBalancer sets p's algorithm and its settings from lb.
func (ps *problems) readLoadBalancer(lb *v1alpha1.LoadBalancer, p *policy) {
	switch lb.Policy {
	case "", v1alpha1.LeastRequest:
		p.lb = lbLeastRequest
	case v1alpha1.RoundRobin:
		p.lb = lbRoundRobin
	case v1alpha1.Random:
		p.lb = lbRandom
	case v1alpha1.RingHash:
		p.lb = lbRingHash
	case v1alpha1.Maglev:
		p.lb = lbMaglev
	default:
		ps.add("spec.loadBalancer.policy: %q is not one of RoundRobin, LeastRequest, Random, RingHash, Maglev", lb.Policy)
	}
	if lr := lb.LeastRequest; lr != nil && lr.ChoiceCount != nil {
		if c := *lr.ChoiceCount; c < 2 || c > 100 {
			ps.add("spec.loadBalancer.leastRequest.choiceCount: %d is not in 2-100", c)
		} else if p.lb == lbLeastRequest {
			p.choiceCount = uint32(c)
		}
	}
	if h := lb.HashOn; h != nil {
		switch {
		case (h.Header != "") == h.SourceIP:
			ps.add("spec.loadBalancer.hashOn: needs exactly one of header (a header name) or sourceIP: true")
		case h.Header != "" && (!headerName.MatchString(h.Header) || len(h.Header) > 256):
			ps.add("spec.loadBalancer.hashOn.header: %q is not an HTTP header name", h.Header)
		case p.lb.hashed():
			p.hashHeader, p.hashSourceIP = strings.ToLower(h.Header), h.SourceIP
		}
	} else if p.lb.hashed() {
		ps.add("spec.loadBalancer: policy %s needs hashOn (header or sourceIP)", lb.Policy)
	}
	// Envoy ramps up only under RoundRobin and LeastRequest.
	if d := ps.duration("spec.loadBalancer.slowStart", lb.SlowStart); p.lb == lbLeastRequest || p.lb == lbRoundRobin {
		p.slowStart = d
	}
}

func (ps *problems) readOutlier(od *v1alpha1.OutlierDetection) *outlier {
	o := &outlier{}
	if c := od.Consecutive5xx; c != nil {
		if *c < 1 {
			ps.add("spec.outlierDetection.consecutive5xx: %d must be at least 1", *c)
		} else {
			o.consecutive5xx = uint32(*c)
		}
	}
	o.interval = ps.duration("spec.outlierDetection.interval", od.Interval)
	o.baseEjectionTime = ps.duration("spec.outlierDetection.baseEjectionTime", od.BaseEjectionTime)
	if m := od.MaxEjectionPercent; m != nil {
		if *m < 0 || *m > 100 {
			ps.add("spec.outlierDetection.maxEjectionPercent: %d is not in 0-100", *m)
		} else {
			v := uint32(*m)
			o.maxEjectionPercent = &v
		}
	}
	return o
}

// readRetries returns the retry policy of r; nil for zero attempts, no retry at all.
func (ps *problems) readRetries(r *v1alpha1.Retries) *retry {
	if r.Attempts < 0 || r.Attempts > 10 {
		ps.add("spec.retries.attempts: %d is not in 0-10", r.Attempts)
	}
	on := r.RetryOn
	if on == "" {
		on = defaultRetryOn
	}
	var unknown []string
	for _, c := range strings.Split(on, ",") {
		if !slices.Contains(retryConditions, c) {
			unknown = append(unknown, fmt.Sprintf("%q", c))
		}
	}
	if len(unknown) > 0 {
		ps.add("spec.retries.retryOn: unknown retry condition %s; retryOn is a comma-separated list (no spaces) of %s",
			strings.Join(unknown, ", "), strings.Join(retryConditions, ", "))
	}
	rt := &retry{attempts: uint32(max(r.Attempts, 0)), retryOn: on,
		perTryTimeout: ps.duration("spec.retries.perTryTimeout", r.PerTryTimeout)}
	if rt.attempts == 0 {
		return nil
	}
	return rt
}

// policyIndex holds the valid TrafficPolicies by the Service they target.
type policyIndex map[objectKey][]*policyCandidate

type policyCandidate struct {
	tp     *v1alpha1.TrafficPolicy
	policy policy
	used   bool
}

func indexPolicies(tps []*v1alpha1.TrafficPolicy) (policyIndex, []error) {
	idx := policyIndex{}
	var errs []error
	seen := map[objectKey]bool{}
	for _, tp := range tps {
		if tp == nil {
			continue
		}
		if err := firstDefinition(seen, "TrafficPolicy", objectKey{tp.Namespace, tp.Name}); err != nil {
			errs = append(errs, err)
			continue
		}
		p, err := parsePolicy(tp)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		target := objectKey{tp.Namespace, tp.Spec.TargetRef.Name}
		idx[target] = append(idx[target], &policyCandidate{tp: tp, policy: p})
	}
	for _, list := range idx {
		slices.SortFunc(list, comparePrecedence)
	}
	return idx, errs
}

// comparePrecedence orders the policies of one Service, the one that
// applies first: a policy for one port over one for the whole Service, then
// the oldest, then by name.
func comparePrecedence(a, b *policyCandidate) int {
	ap, bp := a.tp.Spec.TargetRef.Port != nil, b.tp.Spec.TargetRef.Port != nil
	if ap != bp {
		if ap {
			return -1
		}
		return 1
	}
	at, bt := a.tp.CreationTimestamp.Time, b.tp.CreationTimestamp.Time
	return cmp.Or(at.Compare(bt), cmp.Compare(a.tp.Name, b.tp.Name))
}

// forPort returns the policy that applies to one Service port.
func (idx policyIndex) forPort(svc objectKey, port int32) policy {
	for _, c := range idx[svc] {
		if p := c.tp.Spec.TargetRef.Port; p == nil || *p == port {
			c.used = true
			return c.policy
		}
	}
	return defaultPolicy
}

// unused reports the valid policies that apply nowhere: their Service is
// missing (exists tells which Services the inputs have) or has no such
// port, or other policies take precedence on every port they target.
func (idx policyIndex) unused(exists map[objectKey]bool, built []*service) []error {
	ports := map[objectKey][]int32{}
	for _, s := range built {
		for _, p := range s.ports {
			ports[s.key] = append(ports[s.key], p.port)
		}
	}
	targets := make([]objectKey, 0, len(idx))
	for k := range idx {
		targets = append(targets, k)
	}
	slices.SortFunc(targets, func(a, b objectKey) int {
		return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
	})
	var errs []error
	for _, target := range targets {
		list := idx[target]
		for _, c := range list {
			if c.used {
				continue
			}
			var err error
			switch tr := c.tp.Spec.TargetRef; {
			case !exists[target]:
				err = unapplied(ErrPolicyTargetMissing, "targets Service %s, which does not exist; not applied", target)
			case tr.Port != nil && !slices.Contains(ports[target], *tr.Port):
				err = unapplied(ErrPolicyPortMissing, "targets port %d, which Service %s does not have (TCP ports: %s); not applied",
					*tr.Port, target, cmp.Or(capture.JoinPorts(ports[target]), "none"))
			case len(ports[target]) == 0:
				err = unapplied(ErrPolicyPortMissing, "targets Service %s, which has no TCP port that is translated; not applied", target)
			default:
				err = unapplied(ErrPolicyOverridden, "not applied: other policies take precedence on every port it targets: %s (a policy for one port wins over one for the whole Service, then the oldest)",
					winners(list, c, ports[target]))
			}
			errs = append(errs, &ObjectError{Kind: "TrafficPolicy", Namespace: c.tp.Namespace, Name: c.tp.Name, Err: err})
		}
	}
	return errs
}

// Why a valid TrafficPolicy applies nowhere; Translate's errors for such a
// policy wrap one of these (errors.Is), so its status can say the same.
var (
	ErrPolicyTargetMissing = errors.New("the target Service does not exist")
	ErrPolicyPortMissing   = errors.New("the target Service has no such port")
	ErrPolicyOverridden    = errors.New("other policies take precedence")
)

// unappliedError is a message that unwraps to its reason.
type unappliedError struct {
	reason error
	msg    string
}

func (e *unappliedError) Error() string { return e.msg }
func (e *unappliedError) Unwrap() error { return e.reason }

func unapplied(reason error, format string, args ...any) error {
	return &unappliedError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// winners names, for each port c targets, the policy that applies there.
func winners(list []*policyCandidate, c *policyCandidate, ports []int32) string {
	var out []string
	for _, port := range ports {
		if p := c.tp.Spec.TargetRef.Port; p != nil && *p != port {
			continue
		}
		for _, o := range list {
			if p := o.tp.Spec.TargetRef.Port; p == nil || *p == port {
				out = append(out, fmt.Sprintf("%s on port %d", o.tp.Name, port))
				break
			}
		}
	}
	return strings.Join(out, ", ")
}
