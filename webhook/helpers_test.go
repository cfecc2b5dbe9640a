package webhook

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	jsonv2 "github.com/go-json-experiment/json"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// testCase is a golden input: an optional Namespace and a Pod.
type testCase struct {
	ns  Namespace
	raw []byte // the pod as JSON
}

// staticNamespaces serves one namespace, or answers that others are labeled.
type staticNamespaces map[string]Namespace

func (s staticNamespaces) GetNamespace(_ context.Context, name string) (Namespace, error) {
	if ns, ok := s[name]; ok {
		return ns, nil
	}
	return labeledNamespace(name), nil
}

func labeledNamespace(name string) Namespace {
	return Namespace{Name: name, Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}
}

func newTestInjector(t testing.TB) *Injector {
	t.Helper()
	in, err := New(Config{Defaults: RecommendedDefaults(), InjectorNamespace: DefaultInjectorNamespace})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func readCase(t testing.TB, path string) testCase {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tc testCase
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var meta metav1.PartialObjectMetadata
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch meta.Kind {
		case "Namespace":
			tc.ns = Namespace{Name: meta.Name, Labels: meta.Labels, Annotations: meta.Annotations}
		case "Pod":
			if tc.raw, err = yaml.YAMLToJSON(doc); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
	}
	if tc.raw == nil {
		t.Fatalf("%s: no Pod", path)
	}
	return tc
}

func (tc testCase) namespaces(podNamespace string) staticNamespaces {
	if tc.ns.Name == "" {
		return staticNamespaces{}
	}
	return staticNamespaces{tc.ns.Name: tc.ns}
}

// review is an AdmissionReview for creating the pod in raw.
func review(raw []byte, namespace string) []byte {
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "705ab4f5-6393-11e8-b7cc-42010a800002",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: namespace,
			Operation: admissionv1.Create,
			UserInfo:  authUser,
			Object:    runtimeRaw(raw),
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
	return out.Response
}

// applyPatch applies an admission response's JSON patch to raw.
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

// canonical decodes a pod as the API server does (field names matched
// exactly) and encodes it again, for comparisons that do not depend on key
// order or on fields the API would not keep.
func canonical(t testing.TB, raw []byte) string {
	t.Helper()
	var pod corev1.Pod
	if err := jsonv2.Unmarshal(raw, &pod); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	out, err := json.Marshal(&pod)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

var authUser = authenticationv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller"}

func runtimeRaw(raw []byte) runtime.RawExtension { return runtime.RawExtension{Raw: raw} }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// decodeFull decodes a pod as the webhook does, env lists included.
func decodeFull(t testing.TB, raw []byte) *corev1.Pod {
	t.Helper()
	d, err := decodePod(raw)
	if err == nil {
		err = d.decodeEnv()
	}
	if err != nil {
		t.Fatal(err)
	}
	return d.pod
}
