package webhookca_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/controller/webhookca"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

const name = "tandem-injector"

func configuration(name string) *admissionregv1.MutatingWebhookConfiguration {
	none := admissionregv1.SideEffectClassNone
	fail := admissionregv1.Fail
	hook := func(n string) admissionregv1.MutatingWebhook {
		return admissionregv1.MutatingWebhook{
			Name:                    n,
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionregv1.WebhookClientConfig{Service: &admissionregv1.ServiceReference{
				Namespace: "mesh", Name: "tandem-webhook", Path: new("/inject"),
			}},
			Rules: []admissionregv1.RuleWithOperations{{
				Operations: []admissionregv1.OperationType{admissionregv1.Create},
				Rule:       admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			SideEffects:   &none,
			FailurePolicy: &fail,
		}
	}
	return &admissionregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/part-of": "tandem"}},
		Webhooks:   []admissionregv1.MutatingWebhook{hook("namespace.inject.tandem.dev"), hook("object.inject.tandem.dev")},
	}
}

// injectorRule is the injector's permission on webhook configurations, as
// config/rbac installs it.
func injectorRule(t *testing.T) rbacv1.PolicyRule {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		var role rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict(doc, &role); err != nil {
			t.Fatal(err)
		}
		for _, r := range role.Rules {
			if role.Kind == "ClusterRole" && slices.Contains(r.Resources, "mutatingwebhookconfigurations") {
				return r
			}
		}
	}
	t.Fatal("config/rbac/role.yaml grants nothing on mutatingwebhookconfigurations")
	return rbacv1.PolicyRule{}
}

// The caBundle of every webhook follows the CA, running with only the
// injector's permission: written into the install's configuration once it
// exists (never creating it), kept when its client configuration is
// rewritten, put back when overwritten, replaced when the CA changes; the
// rest of the configuration is left as the install wrote it, and other
// configurations are not touched.
func TestWritesTheCAIntoTheWebhooks(t *testing.T) {
	_, admin := testenv.Start(t, testenv.Options{})
	cs := kubernetes.NewForConfigOrDie(admin)
	ctx := context.Background()
	whs := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()

	// The injector's identity, with the permission config/rbac grants it.
	rule := injectorRule(t)
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "webhookca"}, Rules: []rbacv1.PolicyRule{rule}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	user := "system:serviceaccount:mesh:tandem-injector"
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "webhookca"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "webhookca"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	injector := rest.CopyConfig(admin)
	injector.Impersonate = rest.ImpersonationConfig{UserName: user}

	var mu sync.Mutex
	ca := "CA-1"
	changed := make(chan event.GenericEvent, 1)
	testenv.StartManager(t, injector, manager.Options{Cache: cache.Options{ByObject: webhookca.CacheByObject(name)}},
		func(mgr ctrl.Manager) error {
			return (&webhookca.Reconciler{
				Client: mgr.GetClient(), Name: name,
				CA:      func() string { mu.Lock(); defer mu.Unlock(); return ca },
				Changed: changed,
			}).SetupWithManager(mgr)
		})

	// Not installed: nothing is created.
	changed <- event.GenericEvent{}
	poll.Never(t, 2*time.Second, "the configuration created by the injector", func() bool {
		_, err := whs.Get(ctx, name, metav1.GetOptions{})
		return !apierrors.IsNotFound(err)
	})
	other, err := whs.Create(ctx, configuration("someone-else"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	installed, err := whs.Create(ctx, configuration(name), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// want checks the webhooks are as the install (then the test) wrote
	// them, with caBundle wantCA.
	want := func(wantCA string, expect *admissionregv1.MutatingWebhookConfiguration) func() error {
		return func() error {
			got, err := whs.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			w := expect.DeepCopy()
			for i := range w.Webhooks {
				w.Webhooks[i].ClientConfig.CABundle = []byte(wantCA)
			}
			if !equality.Semantic.DeepEqual(got.Webhooks, w.Webhooks) || !equality.Semantic.DeepEqual(got.Labels, w.Labels) {
				g, _ := json.Marshal(got.Webhooks)
				e, _ := json.Marshal(w.Webhooks)
				return fmt.Errorf("webhooks\n%s\nwant\n%s", g, e)
			}
			return nil
		}
	}
	poll.Eventually(t, 30*time.Second, want("CA-1", installed))

	// The API server cannot reach Services here: the webhooks are given a
	// URL instead, as a test does, touching nothing else. The CA stays.
	url := "https://127.0.0.1:9443/inject"
	var ops []map[string]any
	for i := range installed.Webhooks {
		at := fmt.Sprintf("/webhooks/%d/clientConfig", i)
		ops = append(ops, map[string]any{"op": "remove", "path": at + "/service"}, map[string]any{"op": "add", "path": at + "/url", "value": url})
		installed.Webhooks[i].ClientConfig.Service = nil
		installed.Webhooks[i].ClientConfig.URL = &url
	}
	patch(t, cs, ops)
	poll.Eventually(t, 30*time.Second, want("CA-1", installed))
	poll.Never(t, 2*time.Second, "the URL or the CA lost", func() bool { return want("CA-1", installed)() != nil })

	// Overwritten by hand: put back.
	patch(t, cs, []map[string]any{{"op": "replace", "path": "/webhooks/1/clientConfig/caBundle", "value": "c3RhbGU="}})
	poll.Eventually(t, 30*time.Second, want("CA-1", installed))

	// A new CA replaces the old; without a CA the caBundle stays as it is.
	for _, next := range []string{"CA-2", ""} {
		mu.Lock()
		ca = next
		mu.Unlock()
		changed <- event.GenericEvent{}
		if next != "" {
			poll.Eventually(t, 30*time.Second, want(next, installed))
		}
	}
	poll.Never(t, 2*time.Second, "the caBundle changed without a CA", func() bool { return want("CA-2", installed)() != nil })

	got, err := whs.Get(ctx, other.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != other.ResourceVersion {
		t.Errorf("configuration %s was changed: %+v", other.Name, got.Webhooks)
	}
	// The injector's identity may not change it either.
	if _, err := kubernetes.NewForConfigOrDie(injector).AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, other.Name, types.JSONPatchType,
		[]byte(`[{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":"eA=="}]`), metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the injector patching another webhook configuration: %v, want forbidden", err)
	}
}

func patch(t *testing.T, cs kubernetes.Interface, ops []map[string]any) {
	t.Helper()
	b, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(context.Background(), name, types.JSONPatchType, b, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Only webhooks lacking the CA are patched, each after a test of its name,
// so a configuration reordered since it was read is not written blindly.
func TestPatch(t *testing.T) {
	wh := configuration(name)
	wh.Webhooks[0].ClientConfig.CABundle = []byte("CA")
	got, err := json.Marshal(webhookca.Patch(wh, []byte("CA")))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `[{"op":"test","path":"/webhooks/1/name","value":"object.inject.tandem.dev"},{"op":"add","path":"/webhooks/1/clientConfig/caBundle","value":"Q0E="}]` {
		t.Errorf("patch %s", got)
	}
	wh.Webhooks[1].ClientConfig.CABundle = []byte("CA")
	if p := webhookca.Patch(wh, []byte("CA")); p != nil {
		t.Errorf("nothing to change, patch %+v", p)
	}
}
