package agentrbac_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/controller/agentrbac"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

func TestAgentBindingFollowsNamespaceLabel(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{})
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()

	// The role under test is the one shipped in config/rbac.
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "agent_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(data, &role); err != nil {
		t.Fatalf("config/rbac/agent_role.yaml: %v", err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	testenv.StartManager(t, cfg, manager.Options{Cache: cache.Options{ByObject: agentrbac.CacheByObject()}},
		func(mgr ctrl.Manager) error {
			return (&agentrbac.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr)
		})

	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"tandem.dev/inject": "enabled"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
	} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	var binding *rbacv1.ClusterRoleBinding
	poll.Eventually(t, 10*time.Second, func() error {
		binding, err = cs.RbacV1().ClusterRoleBindings().Get(ctx, "tandem-agent:shop", metav1.GetOptions{})
		return err
	})
	wantSubject := rbacv1.Subject{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "system:serviceaccounts:shop"}
	if len(binding.Subjects) != 1 || binding.Subjects[0] != wantSubject {
		t.Fatalf("binding subjects = %+v, want exactly %+v", binding.Subjects, wantSubject)
	}
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != "tandem-agent" {
		t.Fatalf("binding roleRef = %+v", binding.RoleRef)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, "tandem-agent:plain", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("unlabeled namespace got a binding (err=%v)", err)
	}

	// What the binding grants, asked of the API server's own authorizer.
	can := func(ns, verb, group, resource string) bool {
		t.Helper()
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User:   fmt.Sprintf("system:serviceaccount:%s:default", ns),
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{
				Verb: verb, Group: group, Resource: resource, Namespace: "elsewhere",
			},
		}}
		got, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got.Status.Allowed
	}
	checkAccess := func(wantShop bool) {
		t.Helper()
		if got := can("shop", "list", "discovery.k8s.io", "endpointslices"); got != wantShop {
			t.Errorf("shop's service account may list endpointslices: %v, want %v", got, wantShop)
		}
		if got := can("shop", "watch", "", "services"); got != wantShop {
			t.Errorf("shop's service account may watch services: %v, want %v", got, wantShop)
		}
		if got := can("shop", "watch", "gateway.networking.k8s.io", "grpcroutes"); got != wantShop {
			t.Errorf("shop's service account may watch grpcroutes: %v, want %v", got, wantShop)
		}
		if can("plain", "list", "discovery.k8s.io", "endpointslices") {
			t.Error("an unlabeled namespace's service account may list endpointslices")
		}
		if can("shop", "create", "discovery.k8s.io", "endpointslices") || can("shop", "list", "", "secrets") {
			t.Error("the agent role grants more than reading services, endpointslices, trafficpolicies and routes")
		}
	}
	poll.Eventually(t, 5*time.Second, func() error {
		if !can("shop", "list", "discovery.k8s.io", "endpointslices") {
			return fmt.Errorf("binding not yet effective")
		}
		return nil
	})
	checkAccess(true)

	// A binding deleted by hand comes back.
	if err := cs.RbacV1().ClusterRoleBindings().Delete(ctx, "tandem-agent:shop", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 10*time.Second, func() error {
		_, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, "tandem-agent:shop", metav1.GetOptions{})
		return err
	})

	// Removing the label removes the binding and the access.
	shop, err := cs.CoreV1().Namespaces().Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(shop.Labels, "tandem.dev/inject")
	if _, err := cs.CoreV1().Namespaces().Update(ctx, shop, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 10*time.Second, func() error {
		_, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, "tandem-agent:shop", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("binding still present after unlabeling (err=%v)", err)
	})
	poll.Eventually(t, 5*time.Second, func() error {
		if can("shop", "list", "discovery.k8s.io", "endpointslices") {
			return fmt.Errorf("access not yet revoked")
		}
		return nil
	})
	checkAccess(false)

}
