package admit

import (
	"bytes"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/testutil/golden"
	"github.com/tandem-mesh/tandem/internal/testutil/webhooktest"
	"github.com/tandem-mesh/tandem/internal/textdiff"
	"github.com/tandem-mesh/tandem/webhook"
)

// goldenDir holds the injector's golden pods. They live with the injector
// (package webhook), whose own tests read them too; this package checks
// the whole path, the admission request to the patched pod.
const goldenDir = "../testdata/golden"

// TestGolden runs every <case>.yaml of goldenDir through the webhook's
// HTTP handler, applies the returned patch to the pod and compares the
// result, with the answer's message and warnings, to <case>.golden.yaml.
// It also checks that the offline path (Inject on the decoded pod) gives
// the same pod, and that re-injecting the result changes nothing.
func TestGolden(t *testing.T) {
	d := golden.New(t, goldenDir)
	in := newTestInjector(t)
	count := 0
	for _, name := range d.Cases(t, ".yaml") {
		if strings.HasSuffix(name, ".golden") {
			continue
		}
		count++
		t.Run(name, func(t *testing.T) {
			c := webhooktest.ParseCase(t, name, d.Read(t, name+".yaml"))
			ns := namespaceOf(c)
			resp := serve(t, &Handler{Injector: in, Namespaces: caseNamespaces(c)}, review(c.Pod, ns.Name))

			var got bytes.Buffer
			switch {
			case !resp.Allowed:
				got.WriteString("# denied: " + resp.Result.Message + "\n")
			default:
				patched, err := applyPatch(c.Pod, resp)
				if err != nil {
					t.Fatalf("the patch does not apply: %v\npatch: %s", err, resp.Patch)
				}
				if len(resp.Patch) == 0 {
					got.WriteString("# skipped: " + resp.Result.Message + "\n")
				} else {
					got.WriteString("# injected\n")
				}
				for _, w := range resp.Warnings {
					got.WriteString("# warning: " + w + "\n")
				}
				out, err := yaml.JSONToYAML(patched)
				if err != nil {
					t.Fatal(err)
				}
				got.Write(out)
				checkOfflineAgrees(t, in, c.Pod, ns, patched)
			}
			d.Check(t, name+".golden.yaml", got.Bytes())
		})
	}
	if count < 20 {
		t.Errorf("only %d golden cases; the injector's contract asks for at least 20", count)
	}
}

// checkOfflineAgrees: the offline injection of the same pod equals the
// webhook's patched pod, and injecting that again (as `injector inject`
// does on an injected manifest) changes nothing.
func checkOfflineAgrees(t *testing.T, in *webhook.Injector, raw []byte, ns webhook.Namespace, patched []byte) {
	t.Helper()
	pod, err := webhooktest.DecodePod(raw)
	if err != nil {
		t.Fatal(err)
	}
	res, err := in.Inject(pod, ns, webhook.Admission)
	if err != nil {
		t.Fatalf("offline injection: %v", err)
	}
	offline := webhooktest.MustJSON(t, pod)
	if webhooktest.Canonical(t, offline) != webhooktest.Canonical(t, patched) {
		t.Errorf("offline injection differs from the webhook's patched pod:\n%s",
			textdiff.Lines(webhooktest.Canonical(t, patched), webhooktest.Canonical(t, offline)))
	}
	if !res.Injected {
		return
	}
	again, err := in.Inject(pod, ns, webhook.Reinject)
	if err != nil || !again.Injected {
		t.Fatalf("re-injection: %v %+v", err, again)
	}
	if got := webhooktest.Canonical(t, webhooktest.MustJSON(t, pod)); got != webhooktest.Canonical(t, offline) {
		t.Errorf("re-injection changed the pod:\n%s", textdiff.Lines(webhooktest.Canonical(t, offline), got))
	}
	if skip, err := in.Inject(pod, ns, webhook.Admission); err != nil || skip.Injected {
		t.Errorf("the webhook injected an injected pod again: %v %+v", err, skip)
	}
}
