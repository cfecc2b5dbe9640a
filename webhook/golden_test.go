package webhook

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/testutil/textdiff"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/golden from the current output")

// TestGolden runs every testdata/golden/<case>.yaml through the webhook's
// HTTP handler, applies the returned patch to the pod and compares the
// result with <case>.golden.yaml. It also checks that the offline path
// (Inject on the decoded pod) gives the same pod, and that re-injecting
// the result changes nothing.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/golden/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in := newTestInjector(t)
	count := 0
	for _, path := range inputs {
		if strings.HasSuffix(path, ".golden.yaml") {
			continue
		}
		count++
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			tc := readCase(t, path)
			nsName := decodeFull(t, tc.raw).Namespace
			h := &Handler{Injector: in, Namespaces: tc.namespaces(nsName)}
			resp := serve(t, h, review(tc.raw, nsName))
			if resp.UID != "705ab4f5-6393-11e8-b7cc-42010a800002" {
				t.Errorf("response UID %q does not echo the request's", resp.UID)
			}

			var got bytes.Buffer
			switch {
			case !resp.Allowed:
				got.WriteString("# denied: " + resp.Result.Message + "\n")
			default:
				patched, err := applyPatch(tc.raw, resp)
				if err != nil {
					t.Fatalf("the patch does not apply: %v\npatch: %s", err, resp.Patch)
				}
				if len(resp.Patch) == 0 {
					got.WriteString("# skipped: " + resp.Result.Message + "\n")
				} else {
					got.WriteString("# injected\n")
				}
				out, err := yaml.JSONToYAML(patched)
				if err != nil {
					t.Fatal(err)
				}
				got.Write(out)
				checkOfflineAgrees(t, in, tc, patched)
			}

			golden := filepath.Join("testdata/golden", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if got.String() != string(want) {
				t.Errorf("output differs from %s (run with -update to accept):\n%s", golden, textdiff.Lines(string(want), got.String()))
			}
		})
	}
	if count < 20 {
		t.Errorf("only %d golden cases; the injector's contract asks for at least 20", count)
	}
}

// checkOfflineAgrees: the offline injection of the same pod equals the
// webhook's patched pod, and injecting that again (as `injector inject`
// does on an injected manifest) changes nothing.
func checkOfflineAgrees(t *testing.T, in *Injector, tc testCase, patched []byte) {
	t.Helper()
	pod := decodeFull(t, tc.raw)
	ns := tc.ns
	if ns.Name == "" {
		ns = labeledNamespace(pod.Namespace)
	}
	res, err := in.Inject(pod, ns, Admission)
	if err != nil {
		t.Fatalf("offline injection: %v", err)
	}
	offline := mustJSON(t, pod)
	if canonical(t, offline) != canonical(t, patched) {
		t.Errorf("offline injection differs from the webhook's patched pod:\n%s", textdiff.Lines(canonical(t, patched), canonical(t, offline)))
	}
	if !res.Injected {
		return
	}
	again, err := in.Inject(pod, ns, Reinject)
	if err != nil || !again.Injected {
		t.Fatalf("re-injection: %v %+v", err, again)
	}
	if got := canonical(t, mustJSON(t, pod)); got != canonical(t, offline) {
		t.Errorf("re-injection changed the pod:\n%s", textdiff.Lines(canonical(t, offline), got))
	}
	if skip, err := in.Inject(pod, ns, Admission); err != nil || skip.Injected {
		t.Errorf("the webhook injected an injected pod again: %v %+v", err, skip)
	}
}
