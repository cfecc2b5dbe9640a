package xds

import (
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/testutil/policytest"
)

func trafficPolicy(t *testing.T, name, spec string) *v1alpha1.TrafficPolicy {
	t.Helper()
	tp := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}}
	if err := yaml.UnmarshalStrict([]byte(spec), &tp.Spec); err != nil {
		t.Fatalf("spec of %s: %v", name, err)
	}
	return tp
}

func TestParsePolicy(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	cases := []struct {
		spec string
		want policy
	}{
		{
			spec: `targetRef: {name: cart}`,
			want: policy{},
		},
		{
			// The documentation's sample: settings of other policies are ignored.
			spec: `
targetRef: {name: cart, port: 8443}
loadBalancer:
  policy: RingHash
  leastRequest: {choiceCount: 2}
  hashOn: {header: X-User-Id}
  slowStart: 30s
outlierDetection: {consecutive5xx: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
retries: {attempts: 3, retryOn: "unavailable,reset", perTryTimeout: 1s}
timeout: 5s
maxRequestsPerConnection: 1000`,
			want: policy{
				setsLB: true, lb: lbRingHash, hashHeader: "x-user-id",
				outlier: &outlier{consecutive5xx: 5, interval: 10 * time.Second, baseEjectionTime: 30 * time.Second, maxEjectionPercent: u32(50)},
				retry:   &retry{attempts: 3, retryOn: "unavailable,reset", perTryTimeout: time.Second},
				timeout: 5 * time.Second, maxRequests: 1000,
			},
		},
		{
			spec: `{targetRef: {name: cart}, loadBalancer: {leastRequest: {choiceCount: 4}, slowStart: 1m}}`,
			want: policy{setsLB: true, lb: lbLeastRequest, choiceCount: 4, slowStart: time.Minute},
		},
		{
			spec: `{targetRef: {name: cart}, loadBalancer: {policy: RoundRobin, slowStart: 2s}}`,
			want: policy{setsLB: true, lb: lbRoundRobin, slowStart: 2 * time.Second},
		},
		{
			spec: `{targetRef: {name: cart}, loadBalancer: {policy: Random, slowStart: 2s}}`,
			want: policy{setsLB: true, lb: lbRandom},
		},
		{
			spec: `{targetRef: {name: cart}, loadBalancer: {policy: Maglev, hashOn: {sourceIP: true}}}`,
			want: policy{setsLB: true, lb: lbMaglev, hashSourceIP: true},
		},
		{
			spec: `{targetRef: {name: cart}, loadBalancer: {policy: RoundRobin, hashOn: {header: x}}}`,
			want: policy{setsLB: true, lb: lbRoundRobin},
		},
		{
			spec: `{targetRef: {name: cart}, retries: {attempts: 2}}`,
			want: policy{retry: &retry{attempts: 2, retryOn: "connect-failure,refused-stream,unavailable"}},
		},
		{
			spec: `{targetRef: {name: cart}, retries: {attempts: 0, retryOn: 5xx}}`,
			want: policy{},
		},
		{
			spec: `{targetRef: {name: cart}, outlierDetection: {}}`,
			want: policy{outlier: &outlier{}},
		},
	}
	for _, c := range cases {
		got, err := parsePolicy(trafficPolicy(t, "p", c.spec))
		if err != nil {
			t.Errorf("%s: %v", c.spec, err)
			continue
		}
		c.want.source = objectKey{"ns", "p"}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got  %+v\n want %+v", c.spec, got, c.want)
		}
	}
}

// A policy read from a file has not been through the API server's
// validation; the translation checks the same rules (the cases the CRD test
// also runs) and names the problem.
func TestParsePolicyRefusesInvalid(t *testing.T) {
	for _, c := range policytest.Invalids {
		tp := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "ns"}}
		decodeErr := yaml.UnmarshalStrict([]byte(c.Spec), &tp.Spec)
		if c.Translator == "" {
			if decodeErr == nil {
				t.Errorf("%s: %s decodes; the case expects it not to, so give it a Translator message", c.Name, c.Spec)
			}
			continue
		}
		if decodeErr != nil {
			t.Errorf("%s: %v", c.Name, decodeErr)
			continue
		}
		_, err := parsePolicy(tp)
		if err == nil {
			t.Errorf("%s: %s accepted", c.Name, c.Spec)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.Translator) || !strings.HasPrefix(msg, "TrafficPolicy ns/bad: invalid, not applied: ") {
			t.Errorf("%s:\n error %q\n want  %q", c.Name, msg, c.Translator)
		}
	}
}

func TestPolicyPrecedence(t *testing.T) {
	at := func(tp *v1alpha1.TrafficPolicy, day int) *v1alpha1.TrafficPolicy {
		tp.CreationTimestamp = metav1.NewTime(time.Date(2026, 1, day, 0, 0, 0, 0, time.UTC))
		return tp
	}
	tps := []*v1alpha1.TrafficPolicy{
		at(trafficPolicy(t, "b-new", `{targetRef: {name: svc}, loadBalancer: {policy: Random}}`), 3),
		at(trafficPolicy(t, "z-old", `{targetRef: {name: svc}, loadBalancer: {policy: RoundRobin}}`), 1),
		at(trafficPolicy(t, "a-old", `{targetRef: {name: svc}, retries: {attempts: 1}}`), 1),
		at(trafficPolicy(t, "port", `{targetRef: {name: svc, port: 81}, loadBalancer: {policy: Maglev, hashOn: {sourceIP: true}}}`), 9),
		at(trafficPolicy(t, "other", `{targetRef: {name: other}}`), 1),
	}
	idx, errs := indexPolicies(tps)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	key := objectKey{"ns", "svc"}
	if got := idx.forPort(key, 80).source.name; got != "a-old" {
		t.Errorf("port 80 gets %q; want a-old (oldest whole-Service policy, name breaks the tie)", got)
	}
	if got := idx.forPort(key, 81).source.name; got != "port" {
		t.Errorf("port 81 gets %q; want the port's own policy", got)
	}
	if got := idx.forPort(objectKey{"ns", "none"}, 80); !reflect.DeepEqual(got, defaultPolicy) {
		t.Errorf("untargeted Service gets %+v, want the default", got)
	}
	svc := &service{key: key}
	svc.ports = []*servicePort{{svc: svc, port: 80}, {svc: svc, port: 81}}
	var msgs []string
	for _, e := range idx.unused(map[objectKey]bool{key: true}, []*service{svc}) {
		msgs = append(msgs, e.Error())
	}
	want := []string{
		"TrafficPolicy ns/b-new: not applied: other policies take precedence on every port it targets: a-old on port 80, port on port 81",
		"TrafficPolicy ns/z-old: not applied: other policies take precedence on every port it targets: a-old on port 80, port on port 81",
		"TrafficPolicy ns/other: targets Service ns/other, which does not exist; not applied",
	}
	if len(msgs) != len(want) {
		t.Fatalf("got %d reports, want %d:\n%s", len(msgs), len(want), strings.Join(msgs, "\n"))
	}
	for _, w := range want {
		found := false
		for _, m := range msgs {
			found = found || strings.HasPrefix(m, w)
		}
		if !found {
			t.Errorf("missing report %q in:\n%s", w, strings.Join(msgs, "\n"))
		}
	}
}
