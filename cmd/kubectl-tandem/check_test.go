package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tandem-mesh/tandem/internal/clustercheck"
	"github.com/tandem-mesh/tandem/internal/manifests"
	"github.com/tandem-mesh/tandem/internal/testutil/discoverytest"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// checks runs check (or check --pre) as kubeconfig's user and returns
// the exit code and the results by name.
func checks(t *testing.T, kubeconfig string, args ...string) (int, map[string]clustercheck.Result) {
	t.Helper()
	code, out, errOut := cli(kubeconfig, append([]string{"check", "-o", "json"}, args...)...)
	var doc struct {
		Checks []clustercheck.Result `json:"checks"`
		OK     bool                  `json:"ok"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("check %v: exit %d, %v\n%s%s", args, code, err, out, errOut)
	}
	if doc.OK != (code == 0) {
		t.Errorf("check %v: ok %v but exit %d", args, doc.OK, code)
	}
	by := map[string]clustercheck.Result{}
	for _, r := range doc.Checks {
		by[r.Name] = r
	}
	return code, by
}

// failsWith wants check to fail, the named check among the failures, its
// message and hint saying what and what to do.
func failsWith(t *testing.T, kubeconfig, name, message, hint string) {
	t.Helper()
	code, rs := checks(t, kubeconfig)
	r, ok := rs[name]
	if code != 1 || !ok || r.OK || !strings.Contains(r.Message, message) || !strings.Contains(r.Hint, hint) {
		t.Errorf("check: exit %d; %s: %+v; want it failed, message with %q, hint with %q", code, name, r, message, hint)
	}
	code, table, _ := cli(kubeconfig, "check")
	t.Logf("check (exit %d):\n%s", code, table)
}

func allPass(t *testing.T, kubeconfig string, want ...string) {
	t.Helper()
	code, rs := checks(t, kubeconfig)
	for _, name := range want {
		if r, ok := rs[name]; !ok || !r.OK || r.Warning {
			t.Errorf("%s: %+v; want it passed", name, r)
		}
	}
	if code != 0 {
		t.Errorf("check: exit %d: %+v", code, rs)
	}
	_, table, _ := cli(kubeconfig, "check")
	t.Logf("check:\n%s", table)
}

// TestCheckInstalled: check passes on sound installs, webhook and
// admission policies, with the real injector serving, and fails, naming
// the cause and the fix, for a missing CRD, a caBundle that is not the
// served certificate's CA, an expired certificate, an injector that is not
// ready, and admission policies without a binding.
func TestCheckInstalled(t *testing.T) {
	bin := binaries(t)
	c := startCluster(t, testenv.Options{})
	ctx := context.Background()
	install := testenv.DeployOverlay(t, "default", "init")
	c.apply(t, install, "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service", "MutatingWebhookConfiguration")
	discoverytest.ServiceAccount(t, c.kube, "tandem-system", "default")

	// What cert-manager would do: a CA, a serving certificate of the
	// webhook's and discovery's names, the CA in the caBundle.
	ca, err := testenv.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"tandem-webhook.tandem-system.svc", "tandem-webhook.tandem-system.svc.cluster.local",
		"tandem-discovery.tandem-system.svc", "tandem-discovery.tandem-system.svc.cluster.local", "127.0.0.1"}
	good, expired := t.TempDir(), t.TempDir()
	now := time.Now()
	if err := ca.Issue(good, now.Add(-time.Hour), now.Add(90*24*time.Hour), names...); err != nil {
		t.Fatal(err)
	}
	if err := ca.Issue(expired, now.Add(-48*time.Hour), now.Add(-24*time.Hour), names...); err != nil {
		t.Fatal(err)
	}
	setCABundle := func(pem []byte) {
		t.Helper()
		wh, err := c.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, wellknown.WebhookConfiguration, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range wh.Webhooks {
			wh.Webhooks[i].ClientConfig.CABundle = pem
		}
		if _, err := c.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, wh, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setCABundle(ca.PEM)

	webhookAddr := testenv.FreeAddr(t)
	_, webhookPort, _ := strings.Cut(webhookAddr, ":")
	inj := &injectorProc{t: t, bin: filepath.Join(bin, "injector"), discovery: testenv.FreeAddr(t), status: testenv.FreeAddr(t),
		health: testenv.FreeAddr(t), metrics: testenv.FreeAddr(t)}
	webhookArgs := func(certDir string) []string {
		return []string{"--kubeconfig=" + c.kubeconfig, "--cert-dir=" + certDir, "--webhook-host=127.0.0.1", "--webhook-port=" + webhookPort,
			"--injector-namespace=tandem-system", "--native-sidecar=true"}
	}
	inj.args = webhookArgs(good)
	inj.start()

	// The injector's pod, the Deployment's status and the Services'
	// endpoints, as the kubelet and the controllers would have them.
	var dep appsv1.Deployment
	for _, o := range install {
		if o.GetKind() == "Deployment" {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &dep); err != nil {
				t.Fatal(err)
			}
		}
	}
	pod := createPod(t, c, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "tandem-injector-0", Namespace: "tandem-system", Labels: dep.Spec.Template.Labels},
		Spec: dep.Spec.Template.Spec})
	c.kubelet.Forward("tandem-system", pod.Name, 9443, webhookAddr)
	c.kubelet.Forward("tandem-system", pod.Name, wellknown.DiscoveryPort, inj.discovery)
	c.kubelet.Forward("tandem-system", pod.Name, wellknown.InjectorStatusPort, inj.status)
	setAvailable := func(n int32) {
		t.Helper()
		d, err := c.kube.AppsV1().Deployments("tandem-system").Get(ctx, wellknown.InjectorDeployment, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: *d.Spec.Replicas, ReadyReplicas: n, AvailableReplicas: n, UpdatedReplicas: *d.Spec.Replicas}
		if _, err := c.kube.AppsV1().Deployments("tandem-system").UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setAvailable(*dep.Spec.Replicas)
	for _, svc := range []string{wellknown.WebhookService, wellknown.DiscoveryService} {
		if _, err := c.kube.DiscoveryV1().EndpointSlices("tandem-system").Create(ctx,
			kubeobj.EndpointSlice("tandem-system", svc+"-1", svc, "", 443, pod.Status.PodIP), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "the injector to grant shop's agents", func() bool {
		_, err := c.kube.RbacV1().ClusterRoleBindings().Get(ctx, wellknown.AgentBindingPrefix+"shop", metav1.GetOptions{})
		return err == nil
	})

	all := []string{"crds", "injector", "injection", "webhook-service", "webhook-certificate", "discovery", "cni-plugin", "namespaces"}
	t.Run("webhook", func(t *testing.T) { allPass(t, c.kubeconfig, all...) })
	// The operator roles the install ships are enough.
	operator := c.operator(t)
	t.Run("webhook-operator", func(t *testing.T) { allPass(t, operator, all...) })

	t.Run("CABundleMismatch", func(t *testing.T) {
		other, err := testenv.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		setCABundle(other.PEM)
		defer setCABundle(ca.PEM)
		failsWith(t, c.kubeconfig, "webhook-certificate", "does not verify the certificate pod tandem-injector-0 serves for tandem-webhook.tandem-system.svc", "cert-manager.io/inject-ca-from")
	})

	t.Run("ExpiredCertificate", func(t *testing.T) {
		inj.stop()
		inj.args = webhookArgs(expired)
		inj.start()
		defer func() {
			inj.stop()
			inj.args = webhookArgs(good)
			inj.start()
		}()
		failsWith(t, c.kubeconfig, "webhook-certificate", "tandem-webhook.tandem-system.svc expired at "+now.Add(-24*time.Hour).UTC().Format(time.RFC3339), "renews")
	})

	t.Run("InjectorNotReady", func(t *testing.T) {
		setAvailable(0)
		setReady(t, c, pod, false)
		defer func() {
			setAvailable(*dep.Spec.Replicas)
			setReady(t, c, pod, true)
		}()
		failsWith(t, c.kubeconfig, "injector", "no replica available (0 of 2 wanted); pods: tandem-injector-0 (not ready)", "kubectl -n tandem-system logs deployment/tandem-injector")
	})

	t.Run("MissingCRD", func(t *testing.T) {
		const crd = "trafficpolicies.traffic.tandem.dev"
		if err := c.kube.Discovery().RESTClient().Delete().AbsPath("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).Do(ctx).Error(); err != nil {
			t.Fatal(err)
		}
		// While the API server deletes it, and once it is gone.
		failsWith(t, c.kubeconfig, "crds", "CustomResourceDefinition "+crd+" is ", "kubectl apply --server-side -k config/crd")
		poll.Eventually(t, 30*time.Second, func() error {
			_, err := c.kube.Discovery().RESTClient().Get().AbsPath("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).DoRaw(ctx)
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("still being deleted: %v", err)
		})
		failsWith(t, c.kubeconfig, "crds", "CustomResourceDefinition "+crd+" is missing", "kubectl apply --server-side -k config/crd")
		root, _ := testenv.RepoRoot()
		crds, err := manifests.Build(filepath.Join(root, "config", "crd"))
		if err != nil {
			t.Fatal(err)
		}
		c.apply(t, crds, "CustomResourceDefinition")
	})

	t.Run("CNIMode", func(t *testing.T) {
		// The install's default turned to CNI mode, as make deploy CAPTURE=cni does.
		d, err := c.kube.AppsV1().Deployments("tandem-system").Get(ctx, wellknown.InjectorDeployment, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Spec.Template.Spec.Containers[0].Args = append(d.Spec.Template.Spec.Containers[0].Args, "--capture=cni")
		if _, err := c.kube.AppsV1().Deployments("tandem-system").Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		setAvailable(*dep.Spec.Replicas)
		failsWith(t, c.kubeconfig, "cni-plugin", "CNI mode is the default, but DaemonSet kube-system/tandem-cni", "kubectl apply -k config/cni")
		c.apply(t, testenv.DeployOverlay(t, "default", "cni"), "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet")
		ds, err := c.kube.AppsV1().DaemonSets(wellknown.CNINamespace).Get(ctx, wellknown.CNIDaemonSet, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ds.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, CurrentNumberScheduled: 1, NumberReady: 0, ObservedGeneration: ds.Generation}
		if ds, err = c.kube.AppsV1().DaemonSets(wellknown.CNINamespace).UpdateStatus(ctx, ds, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		failsWith(t, c.kubeconfig, "cni-plugin", "is ready on 0 of 1 nodes", "describe daemonset tandem-cni")
		ds.Status.NumberReady, ds.Status.NumberAvailable = 1, 1
		if _, err := c.kube.AppsV1().DaemonSets(wellknown.CNINamespace).UpdateStatus(ctx, ds, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		allPass(t, c.kubeconfig, "cni-plugin")
	})

	// Admission policies instead of the webhook, the injector as
	// config/policy runs it.
	inj.stop()
	if err := c.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, wellknown.WebhookConfiguration, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.apply(t, testenv.DeployOverlay(t, "policy", "init"), "ConfigMap", "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
	inj.args = []string{"--kubeconfig=" + c.kubeconfig, "--cert-dir=" + good, "--webhook=false", "--policy-params=" + wellknown.PolicyParams,
		"--injector-namespace=tandem-system", "--native-sidecar=true"}
	inj.start()
	poll.Until(t, 30*time.Second, "the injector to publish discovery to the policies", func() bool {
		cm, err := c.kube.CoreV1().ConfigMaps("tandem-system").Get(ctx, wellknown.PolicyParams, metav1.GetOptions{})
		return err == nil && cm.Data[wellknown.ParamDiscoveryCA] != ""
	})
	t.Run("policy", func(t *testing.T) {
		for _, kc := range []string{c.kubeconfig, operator} {
			allPass(t, kc, "crds", "injector", "injection", "admission-policies", "policy-parameters", "discovery", "cni-plugin", "namespaces")
		}
	})
	t.Run("NoAdmissionPolicyBinding", func(t *testing.T) {
		ar := c.kube.AdmissionregistrationV1()
		b, err := ar.MutatingAdmissionPolicyBindings().Get(ctx, wellknown.MutatingPolicy, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := ar.MutatingAdmissionPolicyBindings().Delete(ctx, b.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		failsWith(t, c.kubeconfig, "admission-policies", "no MutatingAdmissionPolicyBinding of policy tandem-injector selects pods of namespaces labeled tandem.dev/inject=enabled: they are not injected", "kubectl apply --server-side -k config/policy")
	})

	t.Run("Pre", func(t *testing.T) {
		code, rs := checks(t, c.kubeconfig, "--pre")
		for _, name := range []string{"kubernetes-version", "injection-modes", "permissions"} {
			if r := rs[name]; !r.OK || r.Warning {
				t.Errorf("%s: %+v; want passed", name, r)
			}
		}
		if r := rs["injection-modes"]; !strings.Contains(r.Message, "the webhook") || !strings.Contains(r.Message, "admission policies") {
			t.Errorf("injection-modes: %q; want both", r.Message)
		}
		// No cert-manager, no known CNI here: to look at, not failures.
		for _, name := range []string{"cert-manager", "cni"} {
			if r := rs[name]; !r.OK || !r.Warning || r.Hint == "" {
				t.Errorf("%s: %+v; want a warning with a hint", name, r)
			}
		}
		if code != 0 {
			t.Errorf("check --pre: exit %d", code)
		}
		// Someone who may create nothing is told what they lack.
		code, rs = checks(t, c.user(t, "nobody"), "--pre")
		if r := rs["permissions"]; code != 1 || r.OK || !strings.Contains(r.Message, "create customresourcedefinitions.apiextensions.k8s.io") || !strings.Contains(r.Hint, "cluster-admin") {
			t.Errorf("check --pre as nobody: exit %d, permissions %+v", code, r)
		}
	})
}

// setReady marks the pod's Ready condition.
func setReady(t *testing.T, c *cluster, pod *corev1.Pod, ready bool) {
	t.Helper()
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	patch := fmt.Sprintf(`{"status":{"conditions":[{"type":"Ready","status":%s}]}}`, strconv.Quote(string(st)))
	if _, err := c.kube.CoreV1().Pods(pod.Namespace).Patch(context.Background(), pod.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
}
