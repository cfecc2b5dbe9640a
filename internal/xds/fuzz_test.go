package xds_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/tandem-mesh/tandem/internal/xds"
	"github.com/tandem-mesh/tandem/internal/xds/objects"
)

// FuzzTranslate feeds arbitrary files through the path of `agent config`:
// reading objects, translating them in both modes, rendering. Whatever the
// input, nothing panics, every published resource validates, the snapshot
// is consistent, and the incremental endpoints agree with the full
// translation. Seeds: the golden inputs and testdata/fuzz/FuzzTranslate.
func FuzzTranslate(f *testing.F) {
	inputs, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.yaml"))
	for _, path := range inputs {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, _, err := objects.Read(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		in.Local = goldenClient
		for _, mode := range modes {
			res, _ := xds.Translate(in, mode)
			for _, r := range all(res) {
				if err := xds.Validate(r); err != nil {
					t.Fatalf("%v: published resource fails validation: %v", mode, err)
				}
			}
			if _, err := res.JSON(); err != nil {
				t.Fatalf("%v: rendering: %v", mode, err)
			}
			snapshot(t, res)
			checkIncrementalEndpoints(t, in, mode, res)
		}
	})
}

// FuzzRouteFields puts arbitrary strings into the fields of an HTTPRoute
// and a GRPCRoute that reach Envoy: paths and regular expressions, header
// and query names and values, header filters, rewrites, redirects,
// durations. Whatever they hold, nothing panics, every published resource
// validates (Envoy never gets a configuration it would refuse), and a
// rule is either translated or dropped with a reason. Seeds:
// testdata/fuzz/FuzzRouteFields.
func FuzzRouteFields(f *testing.F) {
	f.Add(uint8(1), "/api", "x-user", "alice", "x-set", "50%", "/v2", "example.org", "10s", "helloworld.Greeter", "SayHello")
	f.Add(uint8(2), "/users/[0-9]+", "Version", "(a|b)", "Host", "x", "/", "", "0s", "", "Say.*")
	f.Add(uint8(0), "/a//b", ":method", "\r\n", "x", "", "", "EXAMPLE.org", "1h30m", ".bad", "")
	f.Fuzz(func(t *testing.T, kind uint8, path, name, value, setName, setValue, prefix, host, timeout, service, method string) {
		// Names too: the rule's is the method's string, the GRPCRoute's the
		// service's.
		ruleName := gatewayv1.SectionName(method)
		pathType := []gatewayv1.PathMatchType{gatewayv1.PathMatchExact, gatewayv1.PathMatchPathPrefix, gatewayv1.PathMatchRegularExpression}[kind%3]
		valueType := []gatewayv1.HeaderMatchType{gatewayv1.HeaderMatchExact, gatewayv1.HeaderMatchRegularExpression}[kind/3%2]
		methodType := []gatewayv1.GRPCMethodMatchType{gatewayv1.GRPCMethodMatchExact, gatewayv1.GRPCMethodMatchRegularExpression}[kind/6%2]
		parents := gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
			Group: new(gatewayv1.Group("")), Kind: new(gatewayv1.Kind("Service")), Name: "echo"}}}
		backends := []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
			Name: "echo", Port: new(gatewayv1.PortNumber(80))}}}}
		headers := &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: gatewayv1.HTTPHeaderName(setName), Value: setValue}}, Remove: []string{setName}}
		in := xds.Inputs{
			Services: []*corev1.Service{{ObjectMeta: metav1.ObjectMeta{Namespace: "mesh", Name: "echo"},
				Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "grpc", Port: 7070}}}}},
			HTTPRoutes: []*gatewayv1.HTTPRoute{{ObjectMeta: metav1.ObjectMeta{Namespace: "mesh", Name: "fuzz"}, Spec: gatewayv1.HTTPRouteSpec{
				CommonRouteSpec: parents,
				Rules: []gatewayv1.HTTPRouteRule{{
					Name: &ruleName,
					Matches: []gatewayv1.HTTPRouteMatch{{
						Path:        &gatewayv1.HTTPPathMatch{Type: &pathType, Value: &path},
						Headers:     []gatewayv1.HTTPHeaderMatch{{Type: &valueType, Name: gatewayv1.HTTPHeaderName(name), Value: value}},
						QueryParams: []gatewayv1.HTTPQueryParamMatch{{Name: gatewayv1.HTTPHeaderName(name), Value: value}},
					}},
					Filters: []gatewayv1.HTTPRouteFilter{
						{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: headers},
						{Type: gatewayv1.HTTPRouteFilterResponseHeaderModifier, ResponseHeaderModifier: headers},
						{Type: gatewayv1.HTTPRouteFilterURLRewrite, URLRewrite: &gatewayv1.HTTPURLRewriteFilter{
							Hostname: new(gatewayv1.PreciseHostname(host)),
							Path:     &gatewayv1.HTTPPathModifier{Type: gatewayv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: &prefix}}},
					},
					Timeouts:    &gatewayv1.HTTPRouteTimeouts{Request: new(gatewayv1.Duration(timeout))},
					BackendRefs: backends,
				}, {
					Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &pathType, Value: &path}}},
					Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gatewayv1.HTTPRequestRedirectFilter{
						Hostname: new(gatewayv1.PreciseHostname(host)), Path: &gatewayv1.HTTPPathModifier{Type: gatewayv1.FullPathHTTPPathModifier, ReplaceFullPath: &prefix}}}},
				}},
			}}},
			GRPCRoutes: []*gatewayv1.GRPCRoute{{ObjectMeta: metav1.ObjectMeta{Namespace: "mesh", Name: service}, Spec: gatewayv1.GRPCRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
					Group: new(gatewayv1.Group("")), Kind: new(gatewayv1.Kind("Service")), Name: "echo", Port: new(gatewayv1.PortNumber(7070))}}},
				Rules: []gatewayv1.GRPCRouteRule{{
					Matches: []gatewayv1.GRPCRouteMatch{{
						Method:  &gatewayv1.GRPCMethodMatch{Type: &methodType, Service: &service, Method: &method},
						Headers: []gatewayv1.GRPCHeaderMatch{{Name: gatewayv1.GRPCHeaderName(name), Value: value}},
					}},
					BackendRefs: []gatewayv1.GRPCBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
						Name: "echo", Port: new(gatewayv1.PortNumber(7070))}}}},
				}},
			}}},
		}
		for _, mode := range modes {
			res, _ := xds.Translate(in, mode)
			for _, r := range all(res) {
				if err := xds.Validate(r); err != nil {
					t.Fatalf("%v: published resource fails validation: %v", mode, err)
				}
			}
			snapshot(t, res)
		}
		for _, rs := range xds.EvaluateRoutes(in) {
			for _, p := range rs.Parents {
				if !p.Accepted.OK && p.Accepted.Message == "" {
					t.Fatalf("%s %s not accepted without a reason", rs.Kind, rs.Name)
				}
			}
		}
	})
}
