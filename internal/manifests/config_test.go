package manifests_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tandem-mesh/tandem/internal/manifests"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

// buildDefault builds config/default, with the given components of config/
// (as a user's overlay adds them).
func buildDefault(t *testing.T, components ...string) []*unstructured.Unstructured {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "config", "default")
	if len(components) > 0 {
		dir = t.TempDir()
		rel := func(p string) string {
			r, err := filepath.Rel(dir, filepath.Join(root, "config", p))
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		k := "resources:\n- " + rel("default") + "\ncomponents:\n"
		for _, c := range components {
			k += "- " + rel(c) + "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := manifests.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// strictDecode decodes an object into typed Go, refusing unknown fields, so
// a misspelt field in a manifest fails here rather than in a cluster.
func strictDecode(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	data, err := json.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// The whole install, applied object by object with server-side dry run to a
// real API server; cert-manager's objects, whose CRDs a test API server does
// not have, are decoded strictly into cert-manager's own Go types instead.
func TestDefaultConfigIsAcceptedByAPIServer(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{})
	base := []string{"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
		"Role", "RoleBinding", "Deployment", "PodDisruptionBudget", "Service", "ConfigMap", "MutatingWebhookConfiguration"}
	t.Run("default", func(t *testing.T) { acceptedByAPIServer(t, cfg, buildDefault(t), base) })
	t.Run("certmanager", func(t *testing.T) {
		acceptedByAPIServer(t, cfg, buildDefault(t, "certmanager"), append(base, "Issuer", "Certificate"))
	})
}

func acceptedByAPIServer(t *testing.T, cfg *rest.Config, objs []*unstructured.Unstructured, want []string) {
	c, err := client.New(cfg, client.Options{Scheme: runtime.NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kinds := map[string]int{}
	// Namespaces and CRDs first, as kubectl apply orders them.
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int {
		return cmpBool(isFoundation(b), isFoundation(a))
	})
	for _, o := range objs {
		kinds[o.GetKind()]++
		switch {
		case o.GroupVersionKind().Group == "cert-manager.io":
			switch o.GetKind() {
			case "Issuer":
				strictDecode(t, o, &cmv1.Issuer{})
			case "Certificate":
				strictDecode(t, o, &cmv1.Certificate{})
			default:
				t.Errorf("unexpected cert-manager kind %s", o.GetKind())
			}
		case isFoundation(o):
			// Namespaced objects need their namespace to exist, and the
			// test API server already has the CRDs: apply these for real.
			if err := c.Patch(ctx, o.DeepCopy(), client.Apply, client.FieldOwner("config-test"), client.ForceOwnership); err != nil {
				t.Errorf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		default:
			if err := c.Patch(ctx, o.DeepCopy(), client.Apply, client.DryRunAll, client.FieldOwner("config-test")); err != nil {
				t.Errorf("server-side dry run of %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
			}
		}
	}
	for _, k := range want {
		if kinds[k] == 0 {
			t.Errorf("config/default has no %s", k)
		}
	}
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	t.Fatalf("config/default has no %s %s", kind, name)
	return nil
}

// The pieces that must name each other do: webhook Service, the injector's
// certificate Secret and webhook configuration, cert-manager's certificate
// (with its component), the injector's RBAC.
func TestDefaultConfigIsConsistent(t *testing.T) {
	objs := buildDefault(t)
	var mwc admissionregv1.MutatingWebhookConfiguration
	strictDecode(t, find(t, objs, "MutatingWebhookConfiguration", ""), &mwc)
	var dep appsv1.Deployment
	strictDecode(t, find(t, objs, "Deployment", "tandem-injector"), &dep)
	arg := func(name string) string {
		for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				return v
			}
		}
		return ""
	}
	// The injector writes the caBundle of the configuration the API server
	// calls, and keeps its certificate in a Secret (no volume).
	if got := arg("webhook-configuration"); got != mwc.Name {
		t.Errorf("--webhook-configuration=%q, but the webhook configuration is %q", got, mwc.Name)
	}
	secret := arg("cert-secret")
	if secret == "" || len(dep.Spec.Template.Spec.Volumes) != 0 {
		t.Errorf("--cert-secret=%q, volumes %v: want the certificate read from a Secret, no volume", secret, dep.Spec.Template.Spec.Volumes)
	}
	if len(mwc.Webhooks) != 2 {
		t.Fatalf("webhook configuration has %d entries, want 2 (namespace label, pod label)", len(mwc.Webhooks))
	}

	// With cert-manager: its certificate goes into that Secret and names the
	// Services the injector is reached by.
	withCM := buildDefault(t, "certmanager")
	var cert cmv1.Certificate
	strictDecode(t, find(t, withCM, "Certificate", "tandem-webhook-cert"), &cert)
	var ca cmv1.Certificate
	strictDecode(t, find(t, withCM, "Certificate", "tandem-ca"), &ca)
	if !ca.Spec.IsCA {
		t.Errorf("Certificate tandem-ca is not a CA")
	}
	if cert.Spec.SecretName != secret {
		t.Errorf("cert-manager writes Secret %s, the injector reads %s", cert.Spec.SecretName, secret)
	}
	for _, wh := range mwc.Webhooks {
		svc := wh.ClientConfig.Service
		if svc == nil {
			t.Fatalf("webhook %s has no service reference", wh.Name)
		}
		find(t, objs, "Service", svc.Name)
		dns := svc.Name + "." + svc.Namespace + ".svc"
		if !slices.Contains(cert.Spec.DNSNames, dns) {
			t.Errorf("certificate dnsNames %v lack the webhook Service %s", cert.Spec.DNSNames, dns)
		}
	}
	if dns := "tandem-discovery." + cert.Namespace + ".svc"; !slices.Contains(cert.Spec.DNSNames, dns) {
		t.Errorf("certificate dnsNames %v lack the discovery Service %s", cert.Spec.DNSNames, dns)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 {
		t.Error("the injector must run at least 2 replicas")
	}

	// The injector may bind the agent role and no other.
	var role rbacv1.ClusterRole
	strictDecode(t, find(t, objs, "ClusterRole", "tandem-injector"), &role)
	for _, r := range role.Rules {
		if slices.Contains(r.Verbs, "bind") || slices.Contains(r.Verbs, "escalate") || slices.Contains(r.Verbs, "*") {
			if !slices.Equal(r.ResourceNames, []string{"tandem-agent"}) {
				t.Errorf("injector rule %+v may bind or escalate beyond the tandem-agent role", r)
			}
		}
	}
}

// `make deploy` sets the images through an overlay; the built objects must
// carry them where the injector and the pods will read them.
func TestDeployOverlaySetsImages(t *testing.T) {
	objs := testenv.DeployOverlay(t)
	var dep appsv1.Deployment
	strictDecode(t, find(t, objs, "Deployment", "tandem-injector"), &dep)
	if got := dep.Spec.Template.Spec.Containers[0].Image; got != "registry.local:5000/tandem/injector:v9" {
		t.Errorf("injector image = %q", got)
	}
	var cm corev1.ConfigMap
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" && strings.HasPrefix(o.GetName(), "tandem-images") {
			strictDecode(t, o, &cm)
		}
	}
	if cm.Data["agent-image"] != "registry.local:5000/tandem/agent:v9" || cm.Data["proxy-image"] != "envoyproxy/envoy:v1.40.1" {
		t.Errorf("tandem-images ConfigMap = %v", cm.Data)
	}
	// The Deployment must reference the generated (hash-suffixed) ConfigMap.
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil && e.ValueFrom.ConfigMapKeyRef.Name != cm.Name {
			t.Errorf("env %s reads ConfigMap %s, the overlay made %s", e.Name, e.ValueFrom.ConfigMapKeyRef.Name, cm.Name)
		}
	}
}

func isFoundation(o *unstructured.Unstructured) bool {
	return o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition"
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
