// Package policytest holds the invalid TrafficPolicies that both
// validations must refuse: the CRD's, enforced by the API server
// (api/v1alpha1), and the translator's, for policies read from files that
// never went through one (internal/xds). Both tests read this one table, so
// a rule added to one validation and not the other fails a test.
package policytest

// Invalid is a TrafficPolicy spec that breaks one rule.
type Invalid struct {
	Name string
	// Spec is the spec in YAML.
	Spec string
	// CRD are substrings of the API server's refusal.
	CRD []string
	// Translator is a substring of the translator's refusal; empty when
	// the spec does not even decode into the Go types (a malformed
	// duration), which refuses it before any rule is checked.
	Translator string
}

// Invalids are the cases, each naming the field it breaks in both messages.
var Invalids = []Invalid{
	{
		Name: "ring-hash-without-hash-on", Spec: `{targetRef: {name: cart}, loadBalancer: {policy: RingHash}}`,
		CRD:        []string{"spec.loadBalancer", "policy RingHash and Maglev need hashOn (header or sourceIP)"},
		Translator: "spec.loadBalancer: policy RingHash needs hashOn (header or sourceIP)",
	},
	{
		Name: "maglev-without-hash-on", Spec: `{targetRef: {name: cart}, loadBalancer: {policy: Maglev}}`,
		CRD:        []string{"spec.loadBalancer", "policy RingHash and Maglev need hashOn"},
		Translator: "spec.loadBalancer: policy Maglev needs hashOn",
	},
	{
		Name: "unknown-policy", Spec: `{targetRef: {name: cart}, loadBalancer: {policy: Fastest}}`,
		CRD:        []string{"spec.loadBalancer.policy", `Unsupported value: "Fastest"`, `"RoundRobin", "LeastRequest", "Random", "RingHash", "Maglev"`},
		Translator: `spec.loadBalancer.policy: "Fastest" is not one of RoundRobin, LeastRequest, Random, RingHash, Maglev`,
	},
	{
		Name: "negative-consecutive-5xx", Spec: `{targetRef: {name: cart}, outlierDetection: {consecutive5xx: -1}}`,
		CRD:        []string{"spec.outlierDetection.consecutive5xx", "-1", "should be greater than or equal to 1"},
		Translator: "spec.outlierDetection.consecutive5xx: -1 must be at least 1",
	},
	{
		Name: "negative-attempts", Spec: `{targetRef: {name: cart}, retries: {attempts: -2}}`,
		CRD:        []string{"spec.retries.attempts", "should be greater than or equal to 0"},
		Translator: "spec.retries.attempts: -2 is not in 0-10",
	},
	{
		Name: "too-many-attempts", Spec: `{targetRef: {name: cart}, retries: {attempts: 11}}`,
		CRD:        []string{"spec.retries.attempts", "should be less than or equal to 10"},
		Translator: "spec.retries.attempts: 11 is not in 0-10",
	},
	{
		Name: "choice-count-one", Spec: `{targetRef: {name: cart}, loadBalancer: {policy: LeastRequest, leastRequest: {choiceCount: 1}}}`,
		CRD:        []string{"spec.loadBalancer.leastRequest.choiceCount", "should be greater than or equal to 2"},
		Translator: "spec.loadBalancer.leastRequest.choiceCount: 1 is not in 2-100",
	},
	{
		Name: "negative-max-requests-per-connection", Spec: `{targetRef: {name: cart}, maxRequestsPerConnection: -5}`,
		CRD:        []string{"spec.maxRequestsPerConnection", "should be greater than or equal to 1"},
		Translator: "spec.maxRequestsPerConnection: -5 must be at least 1",
	},
	{
		Name: "zero-max-requests-per-connection", Spec: `{targetRef: {name: cart}, maxRequestsPerConnection: 0}`,
		CRD:        []string{"spec.maxRequestsPerConnection", "should be greater than or equal to 1"},
		Translator: "spec.maxRequestsPerConnection: 0 must be at least 1",
	},
	{
		Name: "max-ejection-percent-over-100", Spec: `{targetRef: {name: cart}, outlierDetection: {maxEjectionPercent: 150}}`,
		CRD:        []string{"spec.outlierDetection.maxEjectionPercent", "should be less than or equal to 100"},
		Translator: "spec.outlierDetection.maxEjectionPercent: 150 is not in 0-100",
	},
	{
		Name: "bad-duration-words", Spec: `{targetRef: {name: cart}, timeout: 5 seconds}`,
		CRD: []string{"spec.timeout", "must be a positive duration such as 500ms, 5s, 1.5m or 1h30m"},
	},
	{
		Name: "bad-duration-no-unit", Spec: `{targetRef: {name: cart}, retries: {attempts: 2, perTryTimeout: "100"}}`,
		CRD: []string{"spec.retries.perTryTimeout", "must be a positive duration"},
	},
	{
		Name: "negative-duration", Spec: `{targetRef: {name: cart}, outlierDetection: {interval: -10s}}`,
		CRD:        []string{"spec.outlierDetection.interval", "must be a positive duration"},
		Translator: `spec.outlierDetection.interval: "-10s" must be a positive duration`,
	},
	{
		Name: "negative-slow-start", Spec: `{targetRef: {name: cart}, loadBalancer: {slowStart: -1s}}`,
		CRD:        []string{"spec.loadBalancer.slowStart", "must be a positive duration"},
		Translator: `spec.loadBalancer.slowStart: "-1s" must be a positive duration`,
	},
	{
		Name: "zero-duration", Spec: `{targetRef: {name: cart}, loadBalancer: {policy: RoundRobin, slowStart: 0s}}`,
		CRD:        []string{"spec.loadBalancer.slowStart", "must be a positive duration"},
		Translator: `spec.loadBalancer.slowStart: "0s" must be a positive duration`,
	},
	{
		Name: "zero-timeout", Spec: `{targetRef: {name: cart}, timeout: 0s}`,
		CRD:        []string{"spec.timeout", "must be a positive duration"},
		Translator: `spec.timeout: "0s" must be a positive duration`,
	},
	{
		Name: "bad-retry-on", Spec: `{targetRef: {name: cart}, retries: {attempts: 2, retryOn: "unavailable,5xx,timeout,oops"}}`,
		CRD:        []string{"spec.retries.retryOn", `Invalid value: "unavailable,5xx,timeout,oops": has an unknown retry condition`, "comma-separated list (no spaces) of 5xx, gateway-error, reset"},
		Translator: `spec.retries.retryOn: unknown retry condition "timeout", "oops"; retryOn is a comma-separated list (no spaces) of 5xx, gateway-error,`,
	},
	{
		Name: "retry-on-with-space", Spec: `{targetRef: {name: cart}, retries: {attempts: 2, retryOn: "reset, unavailable"}}`,
		CRD:        []string{"spec.retries.retryOn", `Invalid value: "reset, unavailable": has an unknown retry condition`},
		Translator: `spec.retries.retryOn: unknown retry condition " unavailable"`,
	},
	{
		Name: "hash-on-header-and-source-ip", Spec: `{targetRef: {name: cart}, loadBalancer: {policy: RingHash, hashOn: {header: x-user, sourceIP: true}}}`,
		CRD:        []string{"spec.loadBalancer.hashOn", "hashOn needs exactly one of header (a header name) or sourceIP: true"},
		Translator: "spec.loadBalancer.hashOn: needs exactly one of header (a header name) or sourceIP: true",
	},
	{
		Name: "hash-on-empty", Spec: `{targetRef: {name: cart}, loadBalancer: {policy: Maglev, hashOn: {}}}`,
		CRD:        []string{"spec.loadBalancer.hashOn", "hashOn needs exactly one of header"},
		Translator: "spec.loadBalancer.hashOn: needs exactly one of header",
	},
	{
		Name: "hash-on-bad-header-name", Spec: `{targetRef: {name: cart}, loadBalancer: {policy: RingHash, hashOn: {header: "x user"}}}`,
		CRD:        []string{"spec.loadBalancer.hashOn.header", "should match"},
		Translator: `spec.loadBalancer.hashOn.header: "x user" is not an HTTP header name`,
	},
	{
		Name: "missing-target", Spec: `{loadBalancer: {policy: RoundRobin}}`,
		CRD:        []string{"spec.targetRef", "Required value"},
		Translator: `spec.targetRef.name: "" is not a Service name`,
	},
	{
		Name: "target-port-zero", Spec: `{targetRef: {name: cart, port: 0}}`,
		CRD:        []string{"spec.targetRef.port", "should be greater than or equal to 1"},
		Translator: "spec.targetRef.port: 0 is not in 1-65535",
	},
	{
		Name: "target-port-too-big", Spec: `{targetRef: {name: cart, port: 70000}}`,
		CRD:        []string{"spec.targetRef.port", "should be less than or equal to 65535"},
		Translator: "spec.targetRef.port: 70000 is not in 1-65535",
	},
	{
		Name: "target-name-not-a-service-name", Spec: `{targetRef: {name: Cart_1}}`,
		CRD:        []string{"spec.targetRef.name", "should match"},
		Translator: `spec.targetRef.name: "Cart_1" is not a Service name`,
	},
}
