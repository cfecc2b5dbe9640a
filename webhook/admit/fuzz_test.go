package admit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	jsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-mesh/tandem/internal/testutil/webhooktest"
	"github.com/tandem-mesh/tandem/internal/textdiff"
	"github.com/tandem-mesh/tandem/webhook"
)

// FuzzInject feeds arbitrary pod JSON to the webhook; see checkAdmission.
// Seeds: the golden inputs and the corpus in testdata/fuzz/FuzzInject.
func FuzzInject(f *testing.F) {
	inputs, _ := filepath.Glob(filepath.Join(goldenDir, "*.yaml"))
	for _, path := range inputs {
		if strings.HasSuffix(path, ".golden.yaml") || strings.Contains(path, "env-2000") {
			continue
		}
		f.Add(webhooktest.ReadCase(f, path).Pod)
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
	f.Add("proxyless", "true", "", "", "", "", "info", "", "", "", "*", "true", "istio-proxy", "A", true)
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
			// An init container and a native sidecar of the pod's own.
			always := corev1.ContainerRestartPolicyAlways
			pod.Spec.InitContainers = []corev1.Container{{Name: name + "-init"}, {Name: name + "-sidecar", RestartPolicy: &always}}
			pod.Spec.Volumes = []corev1.Volume{{Name: name}}
		}
		checkAdmission(t, in, webhooktest.MustJSON(t, pod))
	})
}

// checkAdmission: whatever the input, no panic and an answer; an invalid
// review is HTTP 400, an undecodable pod an error inside the review, a
// refused one a denial that says the same as the offline path. A patch
// always applies to the input (with another JSON patch library than the
// one that made it) and gives exactly the pod the offline injection
// produces; it only adds, and leaves every field of the pod's own as it
// was written, but for appending to the lists the template extends.
// Injecting that pod again changes nothing, and the webhook leaves it alone.
func checkAdmission(t *testing.T, in *webhook.Injector, raw []byte) {
	h := &Handler{Injector: in, Namespaces: staticNamespaces{}}
	if !jsontext.Value(raw).IsValid() {
		if code := post(h, rawReview(raw)); code != 400 {
			t.Fatalf("a review with invalid JSON got HTTP %d, want 400", code)
		}
		return
	}
	resp := serve(t, h, rawReview(raw))
	pod, decodeErr := webhooktest.DecodePod(raw)
	if decodeErr != nil || jsontext.Value(raw).Kind() == 'n' {
		if resp.Allowed {
			// An env list of the wrong shape, which the API server never
			// sends: the webhook may leave it undecoded, but a patch applies.
			if _, err := applyPatch(raw, resp); err != nil {
				t.Fatalf("the patch does not apply: %v", err)
			}
			return
		}
		if resp.Result.Code != 400 {
			t.Fatalf("undecodable pod (%v) answered allowed=%v %+v", decodeErr, resp.Allowed, resp.Result)
		}
		return
	}
	// Inject replaces what it changes: a shallow copy keeps the pod as it was.
	ns := labeledNamespace("shop")
	original := webhooktest.MustJSON(t, pod)
	shallow := *pod
	offline, err := in.Inject(pod, ns, webhook.Admission)
	if got := webhooktest.MustJSON(t, &shallow); !bytes.Equal(got, original) {
		t.Fatalf("Inject wrote into the pod it was given:\n%s", textdiff.Lines(string(original), string(got)))
	}
	switch {
	case webhook.IsDenied(err):
		if resp.Allowed || resp.Result.Code != 403 || resp.Result.Message != err.Error() {
			t.Fatalf("offline denied (%v), webhook answered %+v", err, resp.Result)
		}
		return
	case err != nil:
		t.Fatalf("injection failed: %v", err)
	}
	if !resp.Allowed || offline.Injected != (len(resp.Patch) > 0) {
		t.Fatalf("offline injected=%v, webhook allowed=%v with patch %s", offline.Injected, resp.Allowed, resp.Patch)
	}
	patched, err := applyPatch(raw, resp)
	if err != nil {
		t.Fatalf("the patch does not apply: %v\npatch: %s\npod: %s", err, resp.Patch, raw)
	}
	want := webhooktest.Canonical(t, webhooktest.MustJSON(t, pod))
	if got := webhooktest.Canonical(t, patched); got != want {
		t.Fatalf("patched pod differs from the injected one:\n%s\npatch: %s", textdiff.Lines(want, got), resp.Patch)
	}
	if !offline.Injected {
		return
	}
	checkOnlyAdds(t, raw, patched, resp.Patch, offline.Status)
	again, err := in.Inject(pod, ns, webhook.Reinject)
	if err != nil || !again.Injected {
		t.Fatalf("re-injection: %v %+v", err, again)
	}
	if got := webhooktest.Canonical(t, webhooktest.MustJSON(t, pod)); got != want {
		t.Fatalf("re-injection changed the pod:\n%s", textdiff.Lines(want, got))
	}
	if skip, err := in.Inject(pod, ns, webhook.Admission); err != nil || skip.Injected {
		t.Fatalf("the webhook would inject an injected pod again: %v %+v", err, skip)
	}
}

// checkOnlyAdds: every operation of patch is an "add", and the patched
// document keeps every member of raw as it was written (compared as JSON,
// unknown members included), but for appending the template's environment
// and mounts to the lists of the pod's own containers.
func checkOnlyAdds(t *testing.T, raw, patched, patch []byte, st webhook.Status) {
	t.Helper()
	var ops []jsonpatch.Operation
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if op.Operation != "add" {
			t.Fatalf("patch operation %s %s: an injection only adds\npatch: %s", op.Operation, op.Path, patch)
		}
	}
	var a, b map[string]any
	decodeGeneric(t, raw, &a)
	decodeGeneric(t, patched, &b)
	injected := slices.Concat(st.InitContainers, st.Containers, st.Volumes)
	appended := len(st.Env)+len(st.VolumeMounts) > 0
	own := func(list string, appended bool) memberCheck {
		return func(a, b any) { checkOwnItems(t, list, a, b, injected, appended) }
	}
	checkMembers(t, "", a, b, map[string]memberCheck{
		"metadata": func(a, b any) {
			checkMembers(t, "metadata.", a, b, map[string]memberCheck{
				// Annotations are added to, never changed.
				"annotations": func(a, b any) { checkMembers(t, "metadata.annotations.", a, b, nil) },
			})
		},
		"spec": func(a, b any) {
			checkMembers(t, "spec.", a, b, map[string]memberCheck{
				"initContainers": own("initContainers", appended),
				"containers":     own("containers", appended),
				"volumes":        own("volumes", false),
			})
		},
	})
}

// memberCheck compares one member of two JSON objects.
type memberCheck func(a, b any)

// checkMembers: b, a JSON object, holds every member of a as it was, but
// for those special checks.
func checkMembers(t *testing.T, where string, a, b any, special map[string]memberCheck) {
	t.Helper()
	am, ok := a.(map[string]any)
	if !ok {
		return
	}
	bm, _ := b.(map[string]any)
	for k, v := range am {
		if check, ok := special[k]; ok {
			check(v, bm[k])
		} else if !reflect.DeepEqual(v, bm[k]) {
			t.Fatalf("%s%s changed:\n%v\n%v", where, k, v, bm[k])
		}
	}
}

// checkOwnItems: the list after injection holds the pod's own items in
// their order, each as it was but for its env and volumeMounts, which may
// only be appended to.
func checkOwnItems(t *testing.T, list string, before, after any, injected []string, appended bool) {
	t.Helper()
	al, _ := before.([]any)
	bl, _ := after.([]any)
	var own []any
	for _, item := range bl {
		m, _ := item.(map[string]any)
		if name, _ := m["name"].(string); !slices.Contains(injected, name) {
			own = append(own, item)
		}
	}
	if len(own) != len(al) {
		t.Fatalf("spec.%s: %d items of the pod's own before, %d after", list, len(al), len(own))
	}
	extended := func(k string) memberCheck {
		return func(a, b any) {
			av, _ := a.([]any)
			bv, _ := b.([]any)
			if !appended && !reflect.DeepEqual(a, b) || len(bv) < len(av) || !reflect.DeepEqual(av, bv[:len(av)]) {
				t.Fatalf("spec.%s.%s was not only appended to:\n%v\n%v", list, k, a, b)
			}
		}
	}
	for i := range al {
		where := fmt.Sprintf("spec.%s[%d].", list, i)
		if _, ok := al[i].(map[string]any); !ok {
			if !reflect.DeepEqual(al[i], own[i]) {
				t.Fatalf("%s changed", where)
			}
			continue
		}
		checkMembers(t, where, al[i], own[i], map[string]memberCheck{"env": extended("env"), "volumeMounts": extended("volumeMounts")})
		// Members it gained: only the lists the template extends.
		for k := range own[i].(map[string]any) {
			if _, had := al[i].(map[string]any)[k]; !had && !(appended && (k == "env" || k == "volumeMounts")) {
				t.Fatalf("%s gained %s", where, k)
			}
		}
	}
}

func decodeGeneric(t *testing.T, raw []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
}

// rawReview is an AdmissionReview for creating the pod whose JSON is raw,
// which is placed in it byte for byte.
func rawReview(raw []byte) []byte {
	const placeholder = `{"placeholder":true}`
	body := review([]byte(placeholder), "shop")
	return bytes.Replace(body, []byte(placeholder), raw, 1)
}

// post sends body to h and returns the HTTP status.
func post(h http.Handler, body []byte) int {
	req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func TestFuzzCorpusCommitted(t *testing.T) {
	for _, name := range []string{"FuzzInject", "FuzzAnnotations"} {
		entries, err := os.ReadDir(filepath.Join("testdata/fuzz", name))
		if err != nil || len(entries) == 0 {
			t.Errorf("no committed seed corpus in testdata/fuzz/%s: %v", name, err)
		}
	}
}
