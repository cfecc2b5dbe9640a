package admit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tandem-mesh/tandem/internal/testutil/webhooktest"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

// staticNamespaces serves the namespaces it holds and answers that others are labeled.
type staticNamespaces map[string]webhook.Namespace

func (s staticNamespaces) GetNamespace(_ context.Context, name string) (webhook.Namespace, error) {
	if ns, ok := s[name]; ok {
		return ns, nil
	}
	return labeledNamespace(name), nil
}

func labeledNamespace(name string) webhook.Namespace {
	return webhook.Namespace{Name: name, Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}
}

func newTestInjector(t testing.TB) *webhook.Injector {
	t.Helper()
	in, err := webhook.New(webhook.Config{Defaults: webhook.RecommendedDefaults(), InjectorNamespace: webhook.DefaultInjectorNamespace})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// caseNamespaces serves the namespace of a golden case, if it has one.
func caseNamespaces(c webhooktest.Case) staticNamespaces {
	if c.Namespace == nil {
		return staticNamespaces{}
	}
	return staticNamespaces{c.Namespace.Name: namespaceOf(c)}
}

// namespaceOf is the namespace a golden case's pod is created in.
func namespaceOf(c webhooktest.Case) webhook.Namespace {
	if c.Namespace != nil {
		return webhook.Namespace{Name: c.Namespace.Name, Labels: c.Namespace.Labels, Annotations: c.Namespace.Annotations}
	}
	pod, err := webhooktest.DecodePod(c.Pod)
	if err != nil {
		panic(err)
	}
	return labeledNamespace(pod.Namespace)
}

const reviewUID = "705ab4f5-6393-11e8-b7cc-42010a800002"

// review is an AdmissionReview for creating the pod in raw.
func review(raw []byte, namespace string) []byte {
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       reviewUID,
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: namespace,
			Operation: admissionv1.Create,
			UserInfo:  authenticationv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller"},
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	out, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return out
}

// serve posts body to h and decodes the AdmissionReview it answers.
func serve(t testing.TB, h http.Handler, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body.String())
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("decoding the response: %v\n%s", err, rec.Body.String())
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil {
		t.Fatalf("not a v1 AdmissionReview response: %s", rec.Body.String())
	}
	if out.Response.UID != reviewUID {
		t.Fatalf("response UID %q does not echo the request's", out.Response.UID)
	}
	return out.Response
}

// applyPatch applies an admission response's JSON patch to raw, with a
// JSON patch implementation other than the one that computed it.
func applyPatch(raw []byte, resp *admissionv1.AdmissionResponse) ([]byte, error) {
	if len(resp.Patch) == 0 {
		return raw, nil
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		return nil, fmt.Errorf("patch type %v, want JSONPatch", resp.PatchType)
	}
	p, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		return nil, err
	}
	return p.Apply(raw)
}
