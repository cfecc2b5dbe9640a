package manifests_test

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

// `make deploy CAPTURE=cni` adds config/cni: the installer DaemonSet on the
// agent image, allowed to get pods and nothing else, and CNI mode as the
// injector's default.
func TestDeployOverlayCNI(t *testing.T) {
	objs := testenv.DeployOverlay(t, "default", "cni")
	var dep appsv1.Deployment
	strictDecode(t, find(t, objs, "Deployment", "tandem-injector"), &dep)
	if args := dep.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--capture=cni") {
		t.Errorf("injector args %v lack --capture=cni", args)
	}
	var ds appsv1.DaemonSet
	strictDecode(t, find(t, objs, "DaemonSet", "tandem-cni"), &ds)
	c := ds.Spec.Template.Spec.Containers[0]
	if c.Image != "registry.local:5000/tandem/agent:v9" || !slices.Equal(c.Command[:2], []string{"/usr/local/bin/tandem-cni", "install"}) {
		t.Errorf("installer container: image %s, command %v", c.Image, c.Command)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath == nil {
			t.Errorf("volume %s is not a hostPath", v.Name)
		}
	}
	for _, arg := range []string{"--cni-bin-dir=/host/opt/cni/bin", "--cni-net-dir=/host/etc/cni/net.d"} {
		if !slices.Contains(c.Command, arg) || mounts[arg[len("--cni-xxx-dir="):]] == "" {
			t.Errorf("installer flag %s does not match a volume mount (%v)", arg, mounts)
		}
	}
	var role rbacv1.ClusterRole
	strictDecode(t, find(t, objs, "ClusterRole", "tandem-cni"), &role)
	want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}}
	if !slices.EqualFunc(role.Rules, want, func(a, b rbacv1.PolicyRule) bool {
		return slices.Equal(a.APIGroups, b.APIGroups) && slices.Equal(a.Resources, b.Resources) && slices.Equal(a.Verbs, b.Verbs) &&
			len(a.ResourceNames)+len(a.NonResourceURLs) == 0
	}) {
		t.Errorf("tandem-cni may do more than get pods: %+v", role.Rules)
	}
	var binding rbacv1.ClusterRoleBinding
	strictDecode(t, find(t, objs, "ClusterRoleBinding", "tandem-cni"), &binding)
	var sa corev1.ServiceAccount
	strictDecode(t, find(t, objs, "ServiceAccount", "tandem-cni"), &sa)
	if s := binding.Subjects; len(s) != 1 || s[0].Name != ds.Spec.Template.Spec.ServiceAccountName || s[0].Namespace != ds.Namespace ||
		sa.Namespace != ds.Namespace || binding.RoleRef.Name != role.Name {
		t.Errorf("binding %+v does not grant the role to the DaemonSet's service account %s/%s", binding, ds.Namespace, ds.Spec.Template.Spec.ServiceAccountName)
	}
}

// `make deploy MODE=policy CAPTURE=cni`: the admission policies and the CNI
// installer together, no webhook, the images in the policies' defaults too.
func TestDeployOverlayPolicyCNI(t *testing.T) {
	objs := testenv.DeployOverlay(t, "policy", "cni")
	for _, o := range objs {
		if o.GetKind() == "MutatingWebhookConfiguration" || o.GetKind() == "Certificate" {
			t.Errorf("policy mode installs %s %s", o.GetKind(), o.GetName())
		}
	}
	find(t, objs, "DaemonSet", "")
	find(t, objs, "MutatingAdmissionPolicy", "")
	defaults := find(t, objs, "ConfigMap", "tandem-injection-defaults")
	if got, _, _ := unstructured.NestedString(defaults.Object, "data", "agent-image"); got != "registry.local:5000/tandem/agent:v9" {
		t.Errorf("policy defaults agent-image = %q", got)
	}
	if got, _, _ := unstructured.NestedString(defaults.Object, "data", "capture"); got != "cni" {
		t.Errorf("policy defaults capture = %q, want cni", got)
	}
	var dep appsv1.Deployment
	strictDecode(t, find(t, objs, "Deployment", "tandem-injector"), &dep)
	if args := dep.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--capture=cni") || !slices.Contains(args, "--webhook=false") {
		t.Errorf("injector args %v lack --capture=cni or --webhook=false", args)
	}
}
