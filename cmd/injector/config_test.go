package main

import (
	"os"
	"path/filepath"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

// TestWebhookKustomization builds config/webhook the way an overlay uses it
// (a namespace and a name prefix) and checks that the webhooks still point
// at the Service, which points at the injector's port.
func TestWebhookKustomization(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	overlay := t.TempDir()
	rel, err := filepath.Rel(overlay, filepath.Join(root, "config", "webhook"))
	if err != nil {
		t.Fatal(err)
	}
	kustomization := "namespace: mesh\nnamePrefix: staging-\nresources:\n- " + rel + "\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), overlay)
	if err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	var svc corev1.Service
	for _, r := range res.Resources() {
		js, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		switch r.GetKind() {
		case "MutatingWebhookConfiguration":
			err = yaml.UnmarshalStrict(js, &mwc)
		case "Service":
			err = yaml.UnmarshalStrict(js, &svc)
		default:
			t.Errorf("unexpected %s %s", r.GetKind(), r.GetName())
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if svc.Name != "staging-tandem-webhook" || svc.Namespace != "mesh" || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort.IntValue() != 9443 {
		t.Errorf("service %s/%s %+v", svc.Namespace, svc.Name, svc.Spec.Ports)
	}
	if mwc.Name != "staging-tandem-injector" || len(mwc.Webhooks) != 2 {
		t.Fatalf("webhook configuration %q with %d webhooks", mwc.Name, len(mwc.Webhooks))
	}
	for _, w := range mwc.Webhooks {
		s := w.ClientConfig.Service
		if s == nil || s.Name != svc.Name || s.Namespace != svc.Namespace || s.Path == nil || *s.Path != "/inject" {
			t.Errorf("%s: clientConfig %+v does not reach the service", w.Name, w.ClientConfig)
		}
		if *w.SideEffects != admissionregistrationv1.SideEffectClassNone || *w.TimeoutSeconds > 10 ||
			*w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy || *w.FailurePolicy != admissionregistrationv1.Fail ||
			len(w.AdmissionReviewVersions) != 1 || w.AdmissionReviewVersions[0] != "v1" {
			t.Errorf("%s: %+v", w.Name, w)
		}
	}
}
