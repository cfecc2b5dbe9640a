package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tandem-mesh/tandem/internal/charts"
	"github.com/tandem-mesh/tandem/internal/controller/agentrbac"
	"github.com/tandem-mesh/tandem/internal/manifests"
	"github.com/tandem-mesh/tandem/internal/testutil/logbuf"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

// TestInstalledInjector starts the injector as each install starts it: the
// objects `make deploy` applies for every mode and capture mode, the
// injector container's args and env as the kubelet would give them (images
// from the ConfigMaps, Secret volumes as files), as its own ServiceAccount
// with the install's RBAC, against a real API server. Only what a pod's own
// network namespace makes unnecessary is changed: the ports it binds, which
// must be the ones the Deployment declares, become free loopback ports, and
// the webhook Service becomes a URL. It must stay up, become ready and do
// its job: agents of a labeled namespace are authorised, a pod created there
// comes out injected, and its agent can verify discovery.
func TestInstalledInjector(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "injector")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, mode := range []string{"default", "policy"} {
		for _, capture := range []string{"init", "cni"} {
			t.Run(mode+"-"+capture, func(t *testing.T) {
				testInstalled(t, bin, testenv.DeployOverlay(t, mode, capture), capture)
			})
		}
	}
	// Both modes with cert-manager issuing the certificate (its components).
	for _, v := range []struct{ name, base, component string }{
		{"default-certmanager", "default", "certmanager"},
		{"policy-certmanager", "policy", "policy/certmanager"},
	} {
		t.Run(v.name, func(t *testing.T) {
			root, err := testenv.RepoRoot()
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			rel := func(p string) string {
				r, err := filepath.Rel(dir, filepath.Join(root, "config", p))
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			k := fmt.Sprintf("resources:\n- %s\ncomponents:\n- %s\n", rel(v.base), rel(v.component))
			if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600); err != nil {
				t.Fatal(err)
			}
			objs, err := manifests.Build(dir)
			if err != nil {
				t.Fatal(err)
			}
			testInstalled(t, bin, objs, "init")
		})
	}
	// Every render of the tandem chart, as `helm install -n tandem-system` installs it.
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range charts.Cases {
		if c.Chart != "tandem" {
			continue
		}
		t.Run("chart/"+c.Name, func(t *testing.T) {
			values, err := c.ValuesIn(root)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := charts.Render(filepath.Join(root, "charts", c.Chart), charts.Release{Name: "tandem", Namespace: "tandem-system", Values: values})
			if err != nil {
				t.Fatal(err)
			}
			capture := "init"
			if strings.Contains(c.Values, "mode: cni") {
				capture = "cni"
			}
			testInstalled(t, bin, objs, capture)
		})
	}
}

// portFlags are the injector's flags that bind a port, with the name of the
// container port that must declare it.
var portFlags = []struct{ flag, port string }{
	{"health-probe-bind-address", "health"},
	{"metrics-bind-address", "metrics"},
	{"discovery-addr", "discovery"},
	{"webhook-port", "webhook"},
}

func testInstalled(t *testing.T, bin string, objs []*unstructured.Unstructured, capture string) {
	_, cfg := testenv.Start(t, testenv.Options{})
	admin := kubernetes.NewForConfigOrDie(cfg)
	c, err := client.New(cfg, client.Options{Scheme: runtime.NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var dep appsv1.Deployment
	byKind := map[string][]*unstructured.Unstructured{}
	for _, o := range objs {
		byKind[o.GetKind()] = append(byKind[o.GetKind()], o)
		if o.GetKind() == "Deployment" && o.GetName() == "tandem-injector" {
			fromUnstructured(t, o, &dep)
		}
	}
	if dep.Name == "" {
		t.Fatal("the install has no Deployment tandem-injector")
	}
	ns := dep.Namespace
	ctr := dep.Spec.Template.Spec.Containers[slices.IndexFunc(dep.Spec.Template.Spec.Containers, func(c corev1.Container) bool { return c.Name == "injector" })]

	// The ports the pod would bind, moved to free loopback ports.
	args := expandArgs(t, ctr, byKind["ConfigMap"], ns)
	defaults := &serveOptions{}
	fs := flagSetFor(defaults)
	if len(args) < 2 || args[1] != "serve" {
		t.Fatalf("the install runs %q, not injector serve", args)
	}
	if err := fs.Parse(args[2:]); err != nil {
		t.Fatalf("the install's args %q: %v", args, err)
	}
	local := map[string]string{}
	for _, pf := range portFlags {
		value := fs.Lookup(pf.flag).Value.String()
		_, port, err := net.SplitHostPort(value)
		if err != nil {
			port = value
		}
		i := slices.IndexFunc(ctr.Ports, func(p corev1.ContainerPort) bool { return p.Name == pf.port })
		if i < 0 {
			continue // not served by this install (the webhook in policy mode)
		}
		if strconv.Itoa(int(ctr.Ports[i].ContainerPort)) != port {
			t.Fatalf("container port %s is %d, but --%s=%s", pf.port, ctr.Ports[i].ContainerPort, pf.flag, value)
		}
		local[pf.port] = testenv.FreeAddr(t)
		override := local[pf.port]
		if pf.flag == "webhook-port" {
			_, override, _ = net.SplitHostPort(override)
		}
		args = append(args, "--"+pf.flag+"="+override)
	}
	// The status endpoint is on the pod's loopback, declared as no port.
	args = append(args, "--status-addr="+testenv.FreeAddr(t))
	if p := ctr.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "health" || local["health"] == "" {
		t.Fatalf("readiness probe %+v: want an HTTP probe on port health", p)
	}
	readyURL := "http://" + local["health"] + ctr.ReadinessProbe.HTTPGet.Path

	// What the cluster would hold: the install, with cert-manager's work
	// done by the test where the install relies on it. A chart has no
	// Namespace: helm install --create-namespace makes it.
	if len(byKind["Namespace"]) == 0 {
		mustCreate(ctx, t, admin, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	for _, kind := range []string{"Namespace", "ServiceAccount", "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding", "ConfigMap"} {
		for _, o := range byKind[kind] {
			create(ctx, t, c, o)
		}
	}
	// The CA of what the injector serves, when the test issued it.
	var issuedCA []byte
	for _, cert := range byKind["Certificate"] {
		if ca := playCertManager(ctx, t, admin, cert); ca != nil {
			issuedCA = ca
		}
	}
	// The webhook configuration's caBundle: cert-manager's (played by the
	// test), or, without it, the injector's own, which it writes itself.
	injectorWritesCA := false
	if webhook := byKind["MutatingWebhookConfiguration"]; len(webhook) > 0 {
		if local["webhook"] == "" {
			t.Fatal("the install registers a webhook, but the injector declares no webhook port")
		}
		ca := registerWebhook(ctx, t, admin, webhook[0], local["webhook"])
		if injectorWritesCA = ca == nil; !injectorWritesCA && !bytes.Equal(ca, issuedCA) {
			t.Fatal("the webhook configuration's CA is not the one of the certificate the injector serves")
		}
		if injectorWritesCA && fs.Lookup("webhook-configuration").Value.String() != webhook[0].GetName() {
			t.Fatalf("nothing writes the caBundle: no cert-manager annotation, and the injector's --webhook-configuration is %q, not %s",
				fs.Lookup("webhook-configuration").Value.String(), webhook[0].GetName())
		}
	}
	for kind, list := range byKind {
		if slices.Contains([]string{"Namespace", "ServiceAccount", "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding", "ConfigMap", "MutatingWebhookConfiguration", "CustomResourceDefinition"}, kind) ||
			list[0].GroupVersionKind().Group == "cert-manager.io" {
			continue
		}
		for _, o := range list {
			create(ctx, t, c, o)
		}
	}

	// The kubelet's part: Secret volumes as files, the pod's token as the
	// injector's credentials.
	for _, m := range ctr.VolumeMounts {
		v := dep.Spec.Template.Spec.Volumes[slices.IndexFunc(dep.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })]
		if v.Secret == nil {
			t.Fatalf("volume %s: only Secret volumes are expected", v.Name)
		}
		dir := t.TempDir()
		s, err := admin.CoreV1().Secrets(ns).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("Secret %s of volume %s: %v", v.Secret.SecretName, v.Name, err)
		}
		for k, b := range s.Data {
			if err := os.WriteFile(filepath.Join(dir, k), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for i, a := range args {
			args[i] = strings.ReplaceAll(a, m.MountPath, dir)
		}
	}
	kubeconfig := serviceAccountKubeconfig(ctx, t, admin, cfg, ns, dep.Spec.Template.Spec.ServiceAccountName)

	cmd := exec.Command(bin, args[1:]...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	for _, e := range resolvedEnv(t, ctr, byKind["ConfigMap"], ns) {
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	var out logbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	t.Logf("injector %s", strings.Join(args[1:], " "))
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf(format+"\ninjector log:\n%s", append(a, out.String())...)
	}
	if err := waitUntil(ctx, 90*time.Second, func() (bool, error) {
		select {
		case err := <-exited:
			exited <- err
			return false, fmt.Errorf("the injector exited: %v", err)
		default:
		}
		code, _ := get(t, readyURL)
		return code == 200, nil
	}); err != nil {
		fail("%s: %v", readyURL, err)
	}

	// A certificate the injector issued itself: the CA agents and the
	// webhook configuration must carry is the one in its Secret.
	if secret := fs.Lookup("cert-secret").Value.String(); secret != "" && issuedCA == nil {
		s, err := admin.CoreV1().Secrets(ns).Get(ctx, secret, metav1.GetOptions{})
		if err != nil || len(s.Data["ca.crt"]) == 0 {
			fail("the injector's Secret %s: %v", secret, err)
		}
		issuedCA = s.Data["ca.crt"]
	}
	if injectorWritesCA {
		name := byKind["MutatingWebhookConfiguration"][0].GetName()
		if err := waitUntil(ctx, 30*time.Second, func() (bool, error) {
			wh, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, w := range wh.Webhooks {
				if w.ClientConfig.URL == nil || w.ClientConfig.Service != nil {
					return false, fmt.Errorf("webhook %s: the test's URL was lost: %+v", w.Name, w.ClientConfig)
				}
				if !bytes.Equal(w.ClientConfig.CABundle, issuedCA) {
					return false, nil
				}
			}
			return true, nil
		}); err != nil {
			fail("the injector did not write its CA into every webhook of %s: %v", name, err)
		}
	}

	// Its job: the agents of a labeled namespace may watch what they need.
	mustCreate(ctx, t, admin, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}})
	if err := waitUntil(ctx, 30*time.Second, func() (bool, error) {
		_, err := admin.RbacV1().ClusterRoleBindings().Get(ctx, agentrbac.BindingName("shop"), metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		fail("no agent binding for namespace shop: %v", err)
	}
	// The API server's authorizer sees a new binding a moment after it exists.
	for _, r := range []struct{ group, resource string }{{"", "services"}, {"discovery.k8s.io", "endpointslices"}} {
		for _, verb := range []string{"list", "watch"} {
			var sar *authzv1.SubjectAccessReview
			if err := waitUntil(ctx, 10*time.Second, func() (bool, error) {
				var err error
				sar, err = admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
					User:               "system:serviceaccount:shop:default",
					Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:shop"},
					ResourceAttributes: &authzv1.ResourceAttributes{Verb: verb, Group: r.group, Resource: r.resource},
				}}, metav1.CreateOptions{})
				return err == nil && sar.Status.Allowed, err
			}); err != nil {
				fail("the agents of shop may not %s %s: %v %+v", verb, r.resource, err, sar)
			}
		}
	}

	// A pod created there comes out injected, its agent pointed at discovery.
	var pod *corev1.Pod
	if err := waitUntil(ctx, 30*time.Second, func() (bool, error) {
		p, err := admin.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "app"},
			// What the ServiceAccount admission plugin would set.
			Spec: corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err
		}
		pod = p
		// Policy mode: the agent gets discovery once the injector has
		// published it; until then the pod is injected without it.
		addr, _ := webhook.AgentDiscovery(p)
		return addr != "", nil
	}); err != nil {
		if pod != nil {
			fail("pod in shop: %v; status %q, containers %+v", err, pod.Annotations[wellknown.StatusAnnotation], pod.Spec.InitContainers)
		}
		fail("pod in shop: %v", err)
	}
	if pod.Annotations[wellknown.StatusAnnotation] == "" {
		fail("pod in shop was not injected: %+v", pod.Spec)
	}
	wantInit := map[string]string{"init": wellknown.InitContainerName, "cni": wellknown.ValidateContainerName}[capture]
	if !slices.ContainsFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == wantInit }) {
		fail("capture %s: the pod has no %s", capture, wantInit)
	}
	address, ca := webhook.AgentDiscovery(pod)
	if issuedCA != nil && ca != string(issuedCA) {
		fail("the agent trusts %q, not the CA of the certificate the injector serves", ca)
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		fail("agent's --discovery-address=%q: %v", address, err)
	}
	if want := wellknown.DiscoveryService + "." + ns + ".svc"; host != want {
		fail("agents dial discovery at %s, want the Service %s", address, want)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(ca)) {
		fail("the agent's %s is no PEM certificate: %q", wellknown.DiscoveryCAEnv, ca)
	}
	conn, err := tls.Dial("tcp", local["discovery"], &tls.Config{RootCAs: roots, ServerName: host, NextProtos: []string{"h2"}})
	if err != nil {
		fail("an agent's TLS handshake with discovery: %v", err)
	}
	conn.Close()

	// Still up, and it stops cleanly as the kubelet stops it.
	select {
	case err := <-exited:
		fail("the injector exited: %v", err)
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	stopped = true
	select {
	case err := <-exited:
		if err != nil {
			fail("after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		fail("still running 30s after SIGTERM")
	}
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandArgs returns the container's command line as the kubelet runs it:
// $(VAR) references to its env replaced, unknown ones left as written.
func expandArgs(t *testing.T, ctr corev1.Container, configMaps []*unstructured.Unstructured, ns string) []string {
	env := map[string]string{}
	for _, e := range resolvedEnv(t, ctr, configMaps, ns) {
		env[e.Name] = e.Value
	}
	args := append([]string{"injector"}, ctr.Args...)
	for i, a := range args {
		args[i] = envRef.ReplaceAllStringFunc(a, func(ref string) string {
			if v, ok := env[envRef.FindStringSubmatch(ref)[1]]; ok {
				return v
			}
			return ref
		})
	}
	return args
}

// resolvedEnv is the container's env with the values the kubelet would
// give it: literals, the pod's namespace, keys of the install's ConfigMaps.
func resolvedEnv(t *testing.T, ctr corev1.Container, configMaps []*unstructured.Unstructured, ns string) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			out = append(out, e)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			out = append(out, corev1.EnvVar{Name: e.Name, Value: ns})
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			i := slices.IndexFunc(configMaps, func(o *unstructured.Unstructured) bool { return o.GetName() == ref.Name })
			if i < 0 {
				t.Fatalf("env %s reads ConfigMap %s, which the install does not have", e.Name, ref.Name)
			}
			v, ok, _ := unstructured.NestedString(configMaps[i].Object, "data", ref.Key)
			if !ok {
				t.Fatalf("env %s reads key %s of ConfigMap %s, which it does not have", e.Name, ref.Key, ref.Name)
			}
			out = append(out, corev1.EnvVar{Name: e.Name, Value: v})
		default:
			t.Fatalf("env %s: a source this test does not resolve: %+v", e.Name, e.ValueFrom)
		}
	}
	return out
}

// playCertManager issues the certificate a cert-manager Certificate asks
// for into its Secret, as cert-manager writes it, and returns its CA.
func playCertManager(ctx context.Context, t *testing.T, cs kubernetes.Interface, cert *unstructured.Unstructured) []byte {
	name, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	if isCA, _, _ := unstructured.NestedBool(cert.Object, "spec", "isCA"); isCA || len(dnsNames) == 0 {
		return nil // the CA cert-manager keeps for itself
	}
	dir := t.TempDir()
	// Also for loopback, where registerWebhook sends the API server.
	testenv.ServingCerts(t, dir, append(dnsNames, "127.0.0.1")...)
	data := map[string][]byte{}
	for _, k := range []string{"ca.crt", "tls.crt", "tls.key"} {
		b, err := os.ReadFile(filepath.Join(dir, k))
		if err != nil {
			t.Fatal(err)
		}
		data[k] = b
	}
	mustCreate(ctx, t, cs, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cert.GetNamespace(), Annotations: map[string]string{"cert-manager.io/certificate-name": cert.GetName()}},
		Type:       corev1.SecretTypeTLS,
		Data:       data,
	})
	return data["ca.crt"]
}

// registerWebhook creates the install's webhook configuration and, as this
// API server cannot reach Services, gives each webhook its URL on addr.
// With cert-manager (its inject-ca-from annotation) the test writes the CA
// cert-manager's injector would and returns it; without, it creates the
// configuration as the install has it and then changes nothing but the
// Service to the URL, as the caBundle is the injector's to write (nil).
func registerWebhook(ctx context.Context, t *testing.T, cs kubernetes.Interface, o *unstructured.Unstructured, addr string) []byte {
	var wh admissionregv1.MutatingWebhookConfiguration
	fromUnstructured(t, o, &wh)
	injectFrom, ok := wh.Annotations["cert-manager.io/inject-ca-from"]
	if !ok {
		mustCreate(ctx, t, cs, &wh)
		var ops []map[string]any
		for i, w := range wh.Webhooks {
			if w.ClientConfig.Service == nil || w.ClientConfig.Service.Path == nil {
				t.Fatalf("webhook %s: no Service with a path", w.Name)
			}
			at := fmt.Sprintf("/webhooks/%d/clientConfig", i)
			ops = append(ops,
				map[string]any{"op": "test", "path": fmt.Sprintf("/webhooks/%d/name", i), "value": w.Name},
				map[string]any{"op": "remove", "path": at + "/service"},
				map[string]any{"op": "add", "path": at + "/url", "value": "https://" + addr + *w.ClientConfig.Service.Path})
		}
		patch, err := json.Marshal(ops)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, wh.Name, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatalf("webhook configuration %s: giving the webhooks a URL: %v", wh.Name, err)
		}
		return nil
	}
	from := strings.SplitN(injectFrom, "/", 2)
	if len(from) != 2 {
		t.Fatalf("webhook configuration %s: cert-manager.io/inject-ca-from %q is not NAMESPACE/NAME", wh.Name, injectFrom)
	}
	var ca []byte
	if err := waitUntil(ctx, 10*time.Second, func() (bool, error) {
		s, err := cs.CoreV1().Secrets(from[0]).Get(ctx, from[1], metav1.GetOptions{})
		if err == nil {
			ca = s.Data["ca.crt"]
		}
		return err == nil, nil
	}); err != nil {
		t.Fatalf("the Secret of certificate %s: %v", wh.Annotations["cert-manager.io/inject-ca-from"], err)
	}
	for i := range wh.Webhooks {
		svc := wh.Webhooks[i].ClientConfig.Service
		if svc == nil {
			t.Fatalf("webhook %s: no Service", wh.Webhooks[i].Name)
		}
		url := "https://" + addr + *svc.Path
		wh.Webhooks[i].ClientConfig = admissionregv1.WebhookClientConfig{URL: &url, CABundle: ca}
	}
	mustCreate(ctx, t, cs, &wh)
	return ca
}

// serviceAccountKubeconfig writes a kubeconfig with a token of the
// ServiceAccount, as a pod running as it would hold.
func serviceAccountKubeconfig(ctx context.Context, t *testing.T, cs kubernetes.Interface, cfg *rest.Config, ns, sa string) string {
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a token of ServiceAccount %s/%s: %v", ns, sa, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "x"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func create(ctx context.Context, t *testing.T, c client.Client, o *unstructured.Unstructured) {
	t.Helper()
	if err := c.Create(ctx, o.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
	}
}

func mustCreate[T interface {
	*corev1.Namespace | *corev1.Secret | *admissionregv1.MutatingWebhookConfiguration
}](ctx context.Context, t *testing.T, cs kubernetes.Interface, o T) {
	t.Helper()
	var err error
	switch o := any(o).(type) {
	case *corev1.Namespace:
		_, err = cs.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
	case *corev1.Secret:
		_, err = cs.CoreV1().Secrets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *admissionregv1.MutatingWebhookConfiguration:
		_, err = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, o, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// waitUntil polls cond until it is true, fails, or d passes; the error
// says why it stopped.
func waitUntil(ctx context.Context, d time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		ok, err := cond()
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %v", d)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
