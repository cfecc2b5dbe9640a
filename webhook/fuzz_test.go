package webhook

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/tandem-mesh/tandem/internal/testutil/textdiff"
)

// FuzzInject feeds arbitrary pod JSON to the admission handler; see checkAdmission.
// Seeds: the golden inputs and the corpus in testdata/fuzz/FuzzInject.
func FuzzInject(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/golden/*.yaml")
	for _, path := range inputs {
		if strings.HasSuffix(path, ".golden.yaml") || strings.Contains(path, "env-2000") {
			continue
		}
		f.Add(readCase(f, path).raw)
	}
	in := newTestInjector(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkAdmission(t, in, raw)
	})
}

// FuzzAnnotations builds valid pods around arbitrary annotation values,
// label and names, to reach the value parsers and the mutation more often
// than random JSON does; see checkAdmission.
func FuzzAnnotations(f *testing.F) {
	f.Add("envoy", "true", "100m", "128Mi", "", "1Gi", "info", "shop,payments", "8080,9090", "10.0.0.0/8", "*", "", "app", "TARGET", false)
	f.Add("proxyless", "false", "0.5", "1G", "2", "", "debug", "", "", "fd00::/8", "10.96.0.0/12", "true", "web", "GRPC_XDS_BOOTSTRAP_CONFIG", true)
	f.Add("proxyless", "true", "1e3", "1Ei", "1m", "1", "warn", "a,,b", "0", "1.2.3.4/33", "", "false", "tandem-proxy", "TANDEM_POD_NAME", false)
	f.Add("nope", "yes", "-1", "x", "", "", "trace", "UPPER", "65536", "::/0", " * ", "enabled", "tandem-run", "", true)
	in := newTestInjector(f)
	f.Fuzz(func(t *testing.T, template, native, cpu, mem, cpuLimit, memLimit, logLevel, watch, ports, excludeCIDRs, includeCIDRs, label, name, env string, withInit bool) {
		pod := &corev1.Pod{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: "fuzz", Namespace: "shop", Annotations: map[string]string{
				"tandem.dev/template": template, "tandem.dev/native-sidecar": native,
				"tandem.dev/proxy-cpu": cpu, "tandem.dev/proxy-memory": mem,
				"tandem.dev/proxy-cpu-limit": cpuLimit, "tandem.dev/proxy-memory-limit": memLimit,
				"tandem.dev/log-level": logLevel, "tandem.dev/watch-namespaces": watch,
				"traffic.tandem.dev/exclude-outbound-ports": ports, "traffic.tandem.dev/exclude-outbound-cidrs": excludeCIDRs,
				"traffic.tandem.dev/include-outbound-cidrs": includeCIDRs,
			}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Env: []corev1.EnvVar{{Name: env, Value: "v"}}}}},
		}
		if label != "" {
			pod.Labels = map[string]string{"tandem.dev/inject": label}
		}
		if withInit {
			pod.Spec.InitContainers = []corev1.Container{{Name: name + "-init"}}
			pod.Spec.Volumes = []corev1.Volume{{Name: name}}
		}
		checkAdmission(t, in, mustJSON(t, pod))
	})
}

// checkAdmission: whatever the input, no panic; an undecodable pod is an
// error, a refused one a denial that says the same as the offline path;
// the HTTP handler, which decodes the pod with the review, answers as the
// admission.Handler does; a patch always applies to the input and gives
// exactly the pod the offline injection produces; injecting that pod
// again changes nothing, and the webhook leaves it alone.
func checkAdmission(t *testing.T, in *Injector, raw []byte) {
	ns := labeledNamespace("shop")
	h := &Handler{Injector: in, Namespaces: staticNamespaces{}}
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "fuzz", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "shop",
		Operation: admissionv1.Create, Object: runtimeRaw(raw),
	}}
	resp, result := h.handle(context.Background(), req)
	if err := resp.Complete(req); err != nil {
		t.Fatalf("completing the response: %v", err)
	}
	d, decodeErr := decodePod(raw)
	if decodeErr != nil {
		if result != ResultError || resp.Allowed {
			t.Fatalf("undecodable pod got result %s, allowed=%v", result, resp.Allowed)
		}
		return
	}
	// Operations come in map order, so the patches are compared by effect.
	viaHTTP := serve(t, h, review(raw, "shop"))
	p1, err1 := applyPatch(raw, viaHTTP)
	p2, err2 := applyPatch(raw, &resp.AdmissionResponse)
	if viaHTTP.Allowed != resp.Allowed || viaHTTP.Result.Message != resp.Result.Message ||
		(err1 == nil) != (err2 == nil) || err1 == nil && canonical(t, p1) != canonical(t, p2) {
		t.Fatalf("HTTP answer (allowed=%v %q, patch error %v) differs from the handler's (allowed=%v %q, patch error %v)",
			viaHTTP.Allowed, viaHTTP.Result.Message, err1, resp.Allowed, resp.Result.Message, err2)
	}
	if err := d.decodeEnv(); err != nil {
		// An env list of the wrong shape, which the API server never sends:
		// the webhook may leave it undecoded, but any patch still applies.
		if _, perr := applyPatch(raw, &resp.AdmissionResponse); perr != nil {
			t.Fatalf("the patch does not apply: %v", perr)
		}
		return
	}
	pod := d.pod
	offline, err := in.Inject(pod, ns, Admission)
	switch {
	case IsDenied(err):
		if result != ResultDenied || resp.Allowed || resp.Result.Message != err.Error() {
			t.Fatalf("offline denied (%v), webhook answered %s %+v", err, result, resp.Result)
		}
		return
	case err != nil:
		t.Fatalf("injection failed: %v", err)
	}
	if offline.Injected != (result == ResultInjected) {
		t.Fatalf("offline injected=%v, webhook result %s", offline.Injected, result)
	}
	patched, err := applyPatch(raw, &resp.AdmissionResponse)
	if err != nil {
		t.Fatalf("the patch does not apply: %v\npatch: %s\npod: %s", err, resp.Patch, raw)
	}
	if _, err := decodePod(patched); err != nil {
		t.Fatalf("the patched pod does not decode: %v\n%s", err, patched)
	}
	want := canonical(t, mustJSON(t, pod))
	if got := canonical(t, patched); got != want {
		t.Fatalf("patched pod differs from the injected one:\n%s\npatch: %s", textdiff.Lines(want, got), resp.Patch)
	}
	if !offline.Injected {
		return
	}
	again, err := in.Inject(pod, ns, Reinject)
	if err != nil || !again.Injected {
		t.Fatalf("re-injection: %v %+v", err, again)
	}
	if got := canonical(t, mustJSON(t, pod)); got != want {
		t.Fatalf("re-injection changed the pod:\n%s", textdiff.Lines(want, got))
	}
	if skip, err := in.Inject(pod, ns, Admission); err != nil || skip.Injected {
		t.Fatalf("the webhook would inject an injected pod again: %v %+v", err, skip)
	}
}

func TestFuzzCorpusCommitted(t *testing.T) {
	for _, name := range []string{"FuzzInject", "FuzzAnnotations"} {
		entries, err := os.ReadDir(filepath.Join("testdata/fuzz", name))
		if err != nil || len(entries) == 0 {
			t.Errorf("no committed seed corpus in testdata/fuzz/%s: %v", name, err)
		}
	}
}
