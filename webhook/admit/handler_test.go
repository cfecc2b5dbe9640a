package admit

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/tandem-mesh/tandem/internal/testutil/webhooktest"
	"github.com/tandem-mesh/tandem/webhook"
)

func TestMalformedRequests(t *testing.T) {
	h := &Handler{Injector: newTestInjector(t), Namespaces: staticNamespaces{}}
	valid := review(webhooktest.MustJSON(t, webhooktest.PC0()), "shop")
	for _, tc := range []struct {
		name, method, contentType, body string
		code                            int
		want                            string
	}{
		{"not JSON", "POST", "application/json", "{not json", 400, "malformed AdmissionReview"},
		{"empty", "POST", "application/json", "", 400, "empty body"},
		{"trailing garbage", "POST", "application/json", string(valid) + "}", 400, "malformed AdmissionReview"},
		{"wrong kind", "POST", "application/json", `{"apiVersion":"v1","kind":"Pod"}`, 400, `got apiVersion "v1" kind "Pod"`},
		{"v1beta1", "POST", "application/json", `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}`, 400, "accepted: apiVersion admission.k8s.io/v1"},
		{"no request", "POST", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, 400, "no request"},
		{"GET", "GET", "application/json", string(valid), 405, "must be POSTed"},
		{"YAML", "POST", "application/yaml", string(valid), 415, "application/json"},
		{"duplicate name", "POST", "application/json", string(review([]byte(`{"spec":{"containers":[]},"spec":{"containers":[]}}`), "shop")), 400, `duplicate object member name "spec"`},
		{"invalid UTF-8", "POST", "application/json", string(review([]byte("{\"metadata\":{\"name\":\"\xff\"}}"), "shop")), 400, "invalid UTF-8"},
	} {
		req := httptest.NewRequest(tc.method, Path, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.contentType)
		rec := httptest.NewRecorder()
		before := testutil.ToFloat64(requestsTotal.WithLabelValues(ResultError, ""))
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s: HTTP %d %q, want %d with %q", tc.name, rec.Code, rec.Body.String(), tc.code, tc.want)
		}
		if after := testutil.ToFloat64(requestsTotal.WithLabelValues(ResultError, "")); after != before+1 {
			t.Errorf("%s: error count went from %v to %v", tc.name, before, after)
		}
	}
	// A charset parameter is still JSON.
	req := httptest.NewRequest("POST", Path, bytes.NewReader(valid))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("JSON with charset: HTTP %d %s", rec.Code, rec.Body.String())
	}
}

func TestNonPodAllowedWithoutPatch(t *testing.T) {
	h := &Handler{Injector: newTestInjector(t), Namespaces: staticNamespaces{}}
	body := bytes.Replace(review([]byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"}}`), "shop"),
		[]byte(`"kind":{"group":"","version":"v1","kind":"Pod"}`), []byte(`"kind":{"group":"apps","version":"v1","kind":"Deployment"}`), 1)
	if !bytes.Contains(body, []byte(`"kind":"Deployment"}`)) {
		t.Fatalf("test request not rewritten: %s", body)
	}
	before := testutil.ToFloat64(requestsTotal.WithLabelValues(ResultSkipped, ReasonNotPod))
	resp := serve(t, h, body)
	if !resp.Allowed || len(resp.Patch) != 0 || resp.PatchType != nil {
		t.Errorf("non-Pod: %+v, want allowed without a patch", resp)
	}
	if after := testutil.ToFloat64(requestsTotal.WithLabelValues(ResultSkipped, ReasonNotPod)); after != before+1 {
		t.Errorf("skipped count went from %v to %v", before, after)
	}
}

func TestUpdateIsNotInjected(t *testing.T) {
	h := &Handler{Injector: newTestInjector(t), Namespaces: staticNamespaces{}}
	body := bytes.Replace(review(webhooktest.MustJSON(t, webhooktest.PC0()), "shop"), []byte(`"operation":"CREATE"`), []byte(`"operation":"UPDATE"`), 1)
	if resp := serve(t, h, body); !resp.Allowed || len(resp.Patch) != 0 {
		t.Errorf("UPDATE: %+v, want allowed without a patch", resp)
	}
}

type failingNamespaces struct{}

func (failingNamespaces) GetNamespace(context.Context, string) (webhook.Namespace, error) {
	return webhook.Namespace{}, errors.New("the API server is away")
}

func TestResults(t *testing.T) {
	in := newTestInjector(t)
	count := func(result, reason string) float64 {
		return testutil.ToFloat64(requestsTotal.WithLabelValues(result, reason))
	}
	pc0 := webhooktest.MustJSON(t, webhooktest.PC0())
	ok := &Handler{Injector: in, Namespaces: staticNamespaces{}}
	for _, tc := range []struct {
		name           string
		h              *Handler
		raw            []byte
		result, reason string
		allowed        bool
		code           int32
		msg, warning   string
	}{
		{"injected", ok, pc0, ResultInjected, "", true, 200, "", ""},
		{"denied", ok, []byte(`{"metadata":{"name":"x","annotations":{"tandem.dev/proxy-cpu":"x"}},"spec":{"containers":[{"name":"a"}]}}`),
			ResultDenied, "", false, 403, "tandem.dev/proxy-cpu", ""},
		{"not selected: no warning", &Handler{Injector: in, Namespaces: staticNamespaces{"shop": {Name: "shop"}}}, pc0,
			ResultSkipped, "not-selected", true, 200, "neither", ""},
		{"other mesh: a warning", ok, []byte(`{"metadata":{"name":"x","annotations":{"linkerd.io/proxy-version":"stable-2.14.0"}},"spec":{"containers":[{"name":"a"}]}}`),
			ResultSkipped, "other-mesh", true, 200, "Linkerd", "tandem: pod not injected: the pod is already in the Linkerd mesh (annotation linkerd.io/proxy-version)"},
		{"already injected: no warning", ok, []byte(`{"metadata":{"name":"x","annotations":{"tandem.dev/status":"{}"}},"spec":{"containers":[{"name":"a"}]}}`),
			ResultSkipped, "already-injected", true, 200, "already injected", ""},
		{"classic Job pod: a warning", ok, []byte(`{"metadata":{"name":"x","annotations":{"tandem.dev/native-sidecar":"false"}},"spec":{"restartPolicy":"OnFailure","containers":[{"name":"a"}]}}`),
			ResultInjected, "", true, 200, "", "tandem: pod \"x\" has restartPolicy OnFailure but gets Tandem's sidecars as regular containers"},
		{"bad pod", ok, []byte(`{"spec":{"containers":"no"}}`), ResultError, "", false, 400, "decoding the pod", ""},
		{"bad env of a container the template extends", ok, []byte(`{"metadata":{"annotations":{"tandem.dev/template":"proxyless"}},"spec":{"containers":[{"name":"a","env":[{"name":5}]}]}}`),
			ResultError, "", false, 400, "env of container", ""},
		{"namespace lookup", &Handler{Injector: in, Namespaces: failingNamespaces{}}, pc0, ResultError, "", false, 500, "the API server is away", ""},
	} {
		before := count(tc.result, tc.reason)
		resp := serve(t, tc.h, review(tc.raw, "shop"))
		if resp.Allowed != tc.allowed || resp.Result == nil || resp.Result.Code != tc.code || !strings.Contains(resp.Result.Message, tc.msg) {
			t.Errorf("%s: allowed=%v result=%+v, want allowed=%v code %d message with %q", tc.name, resp.Allowed, resp.Result, tc.allowed, tc.code, tc.msg)
		}
		if tc.warning == "" && len(resp.Warnings) > 0 || tc.warning != "" && (len(resp.Warnings) != 1 || !strings.HasPrefix(resp.Warnings[0], tc.warning)) {
			t.Errorf("%s: warnings %q, want one starting %q", tc.name, resp.Warnings, tc.warning)
		}
		if tc.result == ResultInjected && (resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch || len(resp.Patch) == 0) {
			t.Errorf("%s: no JSON patch in %+v", tc.name, resp)
		}
		if after := count(tc.result, tc.reason); after != before+1 {
			t.Errorf("%s: %s/%s count went from %v to %v", tc.name, tc.result, tc.reason, before, after)
		}
	}
}

// TestMetricsRegistered: the counters are on controller-runtime's registry,
// which the manager's metrics endpoint serves, with every series from the start.
func TestMetricsRegistered(t *testing.T) {
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]int{}
	for _, f := range families {
		found[f.GetName()] = len(f.GetMetric())
	}
	// injected, denied, error, and a skip per reason: the two of requests
	// that are no pod creation and the injector's ten.
	if n := found["tandem_injector_requests_total"]; n != 3+2+10 {
		t.Errorf("tandem_injector_requests_total has %d series, want 15", n)
	}
	if found["tandem_injector_request_duration_seconds"] != 4 {
		t.Errorf("tandem_injector_request_duration_seconds has %d series, want 4", found["tandem_injector_request_duration_seconds"])
	}
}

var _ http.Handler = (*Handler)(nil)
