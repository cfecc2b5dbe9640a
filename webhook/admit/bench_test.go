package admit

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/tandem-mesh/tandem/internal/testutil/webhooktest"
)

// The benchmarks post a v1 AdmissionReview for creating a pod to a handler
// and read the answer, as the API server does. Compare:
//   - BenchmarkAdmissionRoundTrip: decode the review and its pod, answer
//     "allowed" without a patch: what any webhook pays for the same request;
//   - BenchmarkInjectServe: the injector on Istio's minimal pod (PC0);
//   - BenchmarkInjectServeEnv2000: the injector on a pod with 2000 env vars,
//     which must stay within 10 times BenchmarkInjectServe.

func benchmarkServe(b *testing.B, h http.Handler, raw []byte, wantPatch bool) {
	body := review(raw, "shop")
	req, _ := http.NewRequest(http.MethodPost, Path, nil)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(len(body))
	rec := httptest.NewRecorder()
	req.Body = io.NopCloser(bytes.NewReader(body))
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || bytes.Contains(rec.Body.Bytes(), []byte(`"patch"`)) != wantPatch {
		b.Fatalf("HTTP %d, patch expected %v: %.300s", rec.Code, wantPatch, rec.Body.String())
	}
	// A server writes the answer into its connection's buffer; a reused
	// buffer stands for it, so the figures are the handler's own.
	w := &bufferWriter{header: http.Header{}}
	r := bytes.NewReader(body)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(body)
		req.Body = io.NopCloser(r)
		w.buf.Reset()
		h.ServeHTTP(w, req)
	}
}

type bufferWriter struct {
	header http.Header
	buf    bytes.Buffer
}

func (w *bufferWriter) Header() http.Header         { return w.header }
func (w *bufferWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }
func (w *bufferWriter) WriteHeader(int)             {}

var allowAll = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	req, code, err := readReview(r)
	if err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	_ = writeReview(w, &req.AdmissionRequest, admission.Allowed(""))
})

func BenchmarkAdmissionRoundTrip(b *testing.B) {
	benchmarkServe(b, allowAll, webhooktest.MustJSON(b, webhooktest.PC0()), false)
}

// BenchmarkAdmissionRoundTripControllerRuntime: the same floor through
// controller-runtime's generic admission.Webhook, for reference.
func BenchmarkAdmissionRoundTripControllerRuntime(b *testing.B) {
	wh := &admission.Webhook{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})}
	benchmarkServe(b, wh, webhooktest.MustJSON(b, webhooktest.PC0()), false)
}

func BenchmarkInjectServe(b *testing.B) {
	h := &Handler{Injector: newTestInjector(b), Namespaces: staticNamespaces{}}
	benchmarkServe(b, h, webhooktest.MustJSON(b, webhooktest.PC0()), true)
}

func BenchmarkAdmissionRoundTripEnv2000(b *testing.B) {
	benchmarkServe(b, allowAll, webhooktest.ReadCase(b, goldenDir+"/env-2000.yaml").Pod, false)
}

func BenchmarkInjectServeEnv2000(b *testing.B) {
	h := &Handler{Injector: newTestInjector(b), Namespaces: staticNamespaces{}}
	benchmarkServe(b, h, webhooktest.ReadCase(b, goldenDir+"/env-2000.yaml").Pod, true)
}

// BenchmarkInjectServeProxyless2000: the proxyless template changes every
// container, so the 2000 variables are encoded and compared as well.
func BenchmarkInjectServeProxylessEnv2000(b *testing.B) {
	raw := webhooktest.ReadCase(b, goldenDir+"/env-2000.yaml").Pod
	raw = bytes.Replace(raw, []byte(`"name":"env-2000"`), []byte(`"name":"env-2000","annotations":{"tandem.dev/template":"proxyless"}`), 1)
	h := &Handler{Injector: newTestInjector(b), Namespaces: staticNamespaces{}}
	benchmarkServe(b, h, raw, true)
}
