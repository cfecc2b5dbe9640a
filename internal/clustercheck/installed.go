package clustercheck

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	tandemv1alpha1 "github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/installation"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

// renewWarning: a serving certificate this close to its end is flagged.
const renewWarning = 7 * 24 * time.Hour

// Installed checks an install: CRDs, the injector, the injection (webhook
// and its certificate, or the admission policies and their bindings),
// discovery, the CNI plugin in CNI mode, and the labeled namespaces.
func Installed(ctx context.Context, e *Env) []Result {
	ctx, cancel := ctxTimeout(ctx)
	defer cancel()
	out := []Result{e.crds(ctx)}
	in, err := installation.Find(ctx, e.Kube, e.Namespace)
	if err != nil {
		hint := "install Tandem (make deploy, or kubectl apply --server-side -k config/default), or name its namespace with --tandem-namespace"
		if !errors.Is(err, installation.ErrNotInstalled) {
			hint = "you need to read Deployments and pods in " + e.Namespace
		}
		return append(out, fail("injector", hint, "%v", err))
	}
	out = append(out, e.injector(in))
	mode, r := e.injection(ctx)
	out = append(out, r)
	var discoveryCA []byte
	switch mode {
	case modeWebhook:
		rs, ca := e.webhook(ctx, in)
		out = append(out, rs...)
		discoveryCA = ca
	case modePolicy:
		rs, ca := e.policies(ctx)
		out = append(out, rs...)
		discoveryCA = ca
	}
	capture := e.defaultCapture(ctx, in, mode)
	out = append(out, e.discovery(ctx, in, discoveryCA))
	out = append(out, e.cniPlugin(ctx, capture))
	out = append(out, e.namespaces(ctx, capture))
	return out
}

// defaultCapture is the capture mode of pods without the annotation: the
// injector's flag, or the policies' parameter.
func (e *Env) defaultCapture(ctx context.Context, in *installation.Install, m mode) string {
	switch m {
	case modeWebhook:
		if v, ok := in.Flag("capture"); ok {
			return v
		}
	case modePolicy:
		if cm, err := e.Kube.CoreV1().ConfigMaps(e.Namespace).Get(ctx, wellknown.PolicyParams, metav1.GetOptions{}); err == nil && cm.Data["capture"] != "" {
			return cm.Data["capture"]
		}
	}
	return wellknown.CaptureInit
}

func (e *Env) crds(ctx context.Context) Result {
	const name = "crds"
	gr := schema.GroupResource{Group: tandemv1alpha1.GroupVersion.Group, Resource: "trafficpolicies"}
	crdName := gr.String()
	u, err := e.Kube.Discovery().RESTClient().Get().AbsPath("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crdName).DoRaw(ctx)
	hint := "install the CRDs: kubectl apply --server-side -k config/crd (or the tandem-crds chart)"
	switch {
	case apierrors.IsNotFound(err):
		return fail(name, hint, "CustomResourceDefinition %s is missing: TrafficPolicies cannot be read, and the injector and agents fail to watch them", crdName)
	case err != nil:
		return fail(name, "you need to get customresourcedefinitions", "reading CustomResourceDefinition %s: %v", crdName, err)
	}
	var crd apiextv1.CustomResourceDefinition
	if err := json.Unmarshal(u, &crd); err != nil {
		return fail(name, hint, "CustomResourceDefinition %s: %v", crdName, err)
	}
	if crd.DeletionTimestamp != nil {
		return fail(name, hint+", once it is gone", "CustomResourceDefinition %s is being deleted, with every TrafficPolicy", crdName)
	}
	established := slices.ContainsFunc(crd.Status.Conditions, func(c apiextv1.CustomResourceDefinitionCondition) bool {
		return c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue
	})
	if !established {
		return fail(name, "kubectl describe crd "+crdName, "CustomResourceDefinition %s is not established", crdName)
	}
	var served []string
	for _, v := range crd.Spec.Versions {
		if v.Served {
			served = append(served, v.Name)
		}
	}
	want := tandemv1alpha1.GroupVersion.Version
	if !slices.Contains(served, want) {
		return fail(name, hint+": this kubectl tandem reads "+want, "CustomResourceDefinition %s serves %s, not %s", crdName, strings.Join(served, ", "), want)
	}
	return pass(name, "%s serves %s", crdName, strings.Join(served, ", "))
}

func (e *Env) injector(in *installation.Install) Result {
	const name = "injector"
	d := in.Deployment
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	hint := fmt.Sprintf("kubectl -n %s describe deployment %s; kubectl -n %s logs deployment/%s", in.Namespace, d.Name, in.Namespace, d.Name)
	ready := 0
	var notReady []string
	for _, p := range in.Pods {
		if installation.Ready(&p) {
			ready++
		} else {
			notReady = append(notReady, fmt.Sprintf("%s (%s)", p.Name, podState(&p)))
		}
	}
	switch {
	case d.Status.AvailableReplicas == 0 || ready == 0:
		msg := fmt.Sprintf("Deployment %s/%s: no replica available (%d of %d wanted)", in.Namespace, d.Name, d.Status.AvailableReplicas, want)
		if len(notReady) > 0 {
			msg += "; pods: " + list(notReady, 3)
		}
		return fail(name, hint, "%s", msg)
	case d.Status.AvailableReplicas < want:
		return warn(name, hint, "Deployment %s/%s: %d of %d replicas available (%s)", in.Namespace, d.Name, d.Status.AvailableReplicas, want, in.Image())
	}
	return pass(name, "Deployment %s/%s: %d of %d replicas available (%s)", in.Namespace, d.Name, d.Status.AvailableReplicas, want, in.Image())
}

// podState says briefly why a pod is not ready.
func podState(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return w.Reason
		}
		if t := cs.State.Terminated; t != nil {
			return "terminated: " + t.Reason
		}
	}
	if p.Status.Phase == corev1.PodRunning {
		return "not ready"
	}
	return strings.ToLower(string(p.Status.Phase))
}

type mode int

const (
	modeNone mode = iota
	modeWebhook
	modePolicy
)

func (e *Env) injection(ctx context.Context) (mode, Result) {
	const name = "injection"
	ar := e.Kube.AdmissionregistrationV1()
	_, werr := ar.MutatingWebhookConfigurations().Get(ctx, wellknown.WebhookConfiguration, metav1.GetOptions{})
	_, perr := ar.MutatingAdmissionPolicies().Get(ctx, wellknown.MutatingPolicy, metav1.GetOptions{})
	webhook, policy := werr == nil, perr == nil
	for _, err := range []error{werr, perr} {
		if err != nil && !apierrors.IsNotFound(err) && !isNotServed(err) {
			return modeNone, fail(name, "you need to get mutatingwebhookconfigurations and mutatingadmissionpolicies", "reading the injection's configuration: %v", err)
		}
	}
	switch {
	case webhook && policy:
		return modeNone, fail(name, "remove one: kubectl delete mutatingwebhookconfiguration "+wellknown.WebhookConfiguration+", or kubectl delete -f config/policy/policies.yaml",
			"both MutatingWebhookConfiguration and MutatingAdmissionPolicy %s are installed: whichever runs first injects, the other skips; keep one", wellknown.MutatingPolicy)
	case webhook:
		return modeWebhook, pass(name, "webhook: MutatingWebhookConfiguration %s", wellknown.WebhookConfiguration)
	case policy:
		return modePolicy, pass(name, "admission policies: MutatingAdmissionPolicy %s", wellknown.MutatingPolicy)
	}
	return modeNone, fail(name, "apply config/default (webhook) or config/policy (admission policies)",
		"neither MutatingWebhookConfiguration nor MutatingAdmissionPolicy %s is installed: no pod is injected", wellknown.MutatingPolicy)
}

// isNotServed: the API server has no such resource (admission policies
// before Kubernetes 1.36).
func isNotServed(err error) bool {
	var se *apierrors.StatusError
	return errors.As(err, &se) && se.ErrStatus.Code == 404
}

// webhook checks the webhook's Service and that its configuration's
// caBundle verifies the certificate the injector serves; it returns that
// CA, which also signs discovery's certificate.
func (e *Env) webhook(ctx context.Context, in *installation.Install) ([]Result, []byte) {
	var out []Result
	out = append(out, e.serviceReady(ctx, wellknown.WebhookService, "webhook-service", "the API server calls the webhook through it: without ready endpoints pods in labeled namespaces are refused"))
	const name = "webhook-certificate"
	wh, err := e.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, wellknown.WebhookConfiguration, metav1.GetOptions{})
	if err != nil {
		return append(out, fail(name, "", "reading MutatingWebhookConfiguration %s: %v", wellknown.WebhookConfiguration, err)), nil
	}
	caHint := "cert-manager's CA injector writes it from the Certificate named by the annotation cert-manager.io/inject-ca-from (is cert-manager's cainjector running?); a Helm install's injector writes it itself"
	var bundle []byte
	for _, w := range wh.Webhooks {
		switch {
		case len(w.ClientConfig.CABundle) == 0:
			return append(out, fail(name, caHint, "webhook %s has no caBundle: the API server cannot verify the injector", w.Name)), nil
		case bundle == nil:
			bundle = w.ClientConfig.CABundle
		case string(bundle) != string(w.ClientConfig.CABundle):
			return append(out, fail(name, caHint, "the webhooks of %s carry different caBundles", wh.Name)), nil
		}
	}
	port, ok := in.Port(wellknown.WebhookPortName)
	if !ok {
		return append(out, fail(name, "the injector's container must declare its webhook port, named "+wellknown.WebhookPortName, "Deployment %s declares no port named %s", in.Deployment.Name, wellknown.WebhookPortName)), bundle
	}
	host := webhookHost(wh, in.Namespace)
	return append(out, e.certificate(ctx, in, name, port, host, bundle, "caBundle of "+wh.Name, caHint)), bundle
}

// webhookHost is the name the API server verifies the webhook's
// certificate for.
func webhookHost(wh *admissionv1.MutatingWebhookConfiguration, ns string) string {
	for _, w := range wh.Webhooks {
		if s := w.ClientConfig.Service; s != nil {
			return s.Name + "." + s.Namespace + ".svc"
		}
	}
	return wellknown.WebhookService + "." + ns + ".svc"
}

// certificate checks what a ready injector pod serves on port: that roots
// verify it for host, and that it is not expired.
func (e *Env) certificate(ctx context.Context, in *installation.Install, name string, port int, host string, roots []byte, rootsName, hint string) Result {
	rootCerts := parseCerts(roots)
	if len(rootCerts) == 0 {
		return fail(name, hint, "the %s holds no PEM certificate", rootsName)
	}
	pool := x509.NewCertPool()
	for _, c := range rootCerts {
		pool.AddCert(c)
	}
	pods := in.Running()
	if len(pods) == 0 {
		return fail(name, "see the check injector", "no injector pod is running to serve the certificate")
	}
	chain, err := e.served(ctx, &pods[0], port, host)
	if err != nil {
		if installation.Forbidden(err) {
			return fail(name, "check reads the served certificate through port-forward: you need create on pods/portforward in "+in.Namespace, "%v", err)
		}
		return fail(name, "kubectl -n "+in.Namespace+" logs "+pods[0].Name, "reading the certificate pod %s serves on port %d: %v", pods[0].Name, port, err)
	}
	leaf := chain[0]
	now := e.now()
	renewHint := "cert-manager renews it before it ends (kubectl -n " + in.Namespace + " describe certificate); with --cert-secret the injector renews it itself: restart the injector, or delete the Secret to have it issue a new one"
	// Who signed it, whether it names host, and when it is valid are told
	// apart: Verify gives up at the first of them.
	switch {
	case !signedBy(leaf, chain[1:], rootCerts):
		var holds []string
		for _, r := range rootCerts {
			holds = append(holds, fmt.Sprintf("%q key %s", r.Subject.CommonName, keyID(r.SubjectKeyId)))
		}
		return fail(name, hint, "the %s does not verify the certificate pod %s serves for %s: it was issued by %q key %s, the %s holds %s; the API server or the agents refuse it",
			rootsName, pods[0].Name, host, leaf.Issuer.CommonName, keyID(leaf.AuthorityKeyId), rootsName, strings.Join(holds, ", "))
	case leaf.VerifyHostname(host) != nil:
		return fail(name, "the certificate must name "+host+" (config/certmanager lists the names)", "the certificate pod %s serves is not for %s: %v", pods[0].Name, host, leaf.VerifyHostname(host))
	case now.After(leaf.NotAfter):
		return fail(name, renewHint, "the certificate pod %s serves for %s expired at %s", pods[0].Name, host, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return fail(name, "check the clocks of the nodes and of this machine", "the certificate pod %s serves for %s is not valid before %s", pods[0].Name, host, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, Intermediates: inter, CurrentTime: now}); err != nil {
		return fail(name, hint, "the certificate pod %s serves for %s does not verify: %v", pods[0].Name, host, err)
	}
	if leaf.NotAfter.Sub(now) < renewWarning {
		return warn(name, renewHint, "the certificate for %s expires at %s, in %s", host, leaf.NotAfter.UTC().Format(time.RFC3339), leaf.NotAfter.Sub(now).Round(time.Hour))
	}
	return pass(name, "the %s verifies the certificate served for %s, valid until %s", rootsName, host, leaf.NotAfter.UTC().Format(time.RFC3339))
}

// signedBy reports whether leaf was signed by one of roots, directly or
// through one of the intermediates, whatever their validity.
func signedBy(leaf *x509.Certificate, intermediates, roots []*x509.Certificate) bool {
	signs := func(c *x509.Certificate) bool {
		for _, r := range roots {
			if c.CheckSignatureFrom(r) == nil {
				return true
			}
		}
		return false
	}
	if signs(leaf) {
		return true
	}
	for _, i := range intermediates {
		if leaf.CheckSignatureFrom(i) == nil && signs(i) {
			return true
		}
	}
	return false
}

// keyID shows a key identifier briefly.
func keyID(id []byte) string {
	if len(id) == 0 {
		return "(none)"
	}
	return fmt.Sprintf("%x", id[:min(len(id), 4)])
}

// parseCerts reads the certificates of a PEM bundle.
func parseCerts(pemBytes []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, pemBytes = pem.Decode(pemBytes)
		if b == nil {
			return out
		}
		if c, err := x509.ParseCertificate(b.Bytes); b.Type == "CERTIFICATE" && err == nil {
			out = append(out, c)
		}
	}
}

// served returns the certificate chain pod serves on port.
func (e *Env) served(ctx context.Context, pod *corev1.Pod, port int, host string) ([]*x509.Certificate, error) {
	s, err := e.Forward.Open(ctx, pod.Namespace, pod.Name)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	conn, err := s.Dial(port)
	if err != nil {
		return nil, err
	}
	c := tls.Client(conn, &tls.Config{ServerName: host, InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}) //nolint:gosec // verified below, with reasons
	defer c.Close()
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := c.HandshakeContext(hctx); err != nil {
		return nil, err
	}
	chain := c.ConnectionState().PeerCertificates
	if len(chain) == 0 {
		return nil, errors.New("no certificate")
	}
	return chain, nil
}

// serviceReady checks that a Service of the install has ready endpoints.
func (e *Env) serviceReady(ctx context.Context, service, name, why string) Result {
	hint := fmt.Sprintf("kubectl -n %s get endpointslices -l kubernetes.io/service-name=%s; see the check injector", e.Namespace, service)
	if _, err := e.Kube.CoreV1().Services(e.Namespace).Get(ctx, service, metav1.GetOptions{}); err != nil {
		return fail(name, "reinstall: the install creates Service "+service, "Service %s/%s: %v", e.Namespace, service, err)
	}
	slices, err := e.Kube.DiscoveryV1().EndpointSlices(e.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
	if err != nil {
		return fail(name, "you need to list endpointslices in "+e.Namespace, "EndpointSlices of Service %s/%s: %v", e.Namespace, service, err)
	}
	ready := 0
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				ready++
			}
		}
	}
	if ready == 0 {
		return fail(name, hint, "Service %s/%s has no ready endpoint: %s", e.Namespace, service, why)
	}
	return pass(name, "Service %s/%s: %s", e.Namespace, service, count(ready, "ready endpoint", "ready endpoints"))
}

// policies checks the admission policies, their bindings and parameters;
// it returns the discovery CA the injector published there.
func (e *Env) policies(ctx context.Context) ([]Result, []byte) {
	const name = "admission-policies"
	hint := "kubectl apply --server-side -k config/policy (or the tandem chart with injection.mode=policy)"
	ar := e.Kube.AdmissionregistrationV1()
	var problems []string
	mbs, err := ar.MutatingAdmissionPolicyBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		return []Result{fail(name, "you need to list mutatingadmissionpolicybindings", "listing MutatingAdmissionPolicyBindings: %v", err)}, nil
	}
	var params *admissionv1.ParamRef
	var mutating []*admissionv1.MatchResources
	for _, b := range mbs.Items {
		if b.Spec.PolicyName == wellknown.MutatingPolicy {
			params = b.Spec.ParamRef
			mutating = append(mutating, b.Spec.MatchResources)
		}
	}
	if len(mutating) == 0 {
		problems = append(problems, fmt.Sprintf("no MutatingAdmissionPolicyBinding binds policy %s: it injects no pod", wellknown.MutatingPolicy))
	} else {
		problems = append(problems, unselected("MutatingAdmissionPolicyBinding", wellknown.MutatingPolicy, "are not injected", mutating)...)
	}
	if _, err := ar.ValidatingAdmissionPolicies().Get(ctx, wellknown.ValidatingPolicy, metav1.GetOptions{}); err != nil {
		problems = append(problems, fmt.Sprintf("ValidatingAdmissionPolicy %s: %v", wellknown.ValidatingPolicy, err))
	} else if vbs, err := ar.ValidatingAdmissionPolicyBindings().List(ctx, metav1.ListOptions{}); err != nil {
		problems = append(problems, fmt.Sprintf("listing ValidatingAdmissionPolicyBindings: %v", err))
	} else {
		var validating []*admissionv1.MatchResources
		for _, b := range vbs.Items {
			if b.Spec.PolicyName == wellknown.ValidatingPolicy {
				validating = append(validating, b.Spec.MatchResources)
			}
		}
		if len(validating) == 0 {
			problems = append(problems, fmt.Sprintf("no ValidatingAdmissionPolicyBinding binds policy %s: invalid annotations are not refused", wellknown.ValidatingPolicy))
		} else {
			problems = append(problems, unselected("ValidatingAdmissionPolicyBinding", wellknown.ValidatingPolicy, "are not checked", validating)...)
		}
	}
	if len(problems) > 0 {
		return []Result{fail(name, hint, "%s", strings.Join(problems, "; "))}, nil
	}
	out := []Result{pass(name, "MutatingAdmissionPolicy %s and ValidatingAdmissionPolicy %s are bound", wellknown.MutatingPolicy, wellknown.ValidatingPolicy)}
	const pname = "policy-parameters"
	pns, pn := e.Namespace, wellknown.PolicyParams
	if params != nil && params.Name != "" {
		pn = params.Name
		if params.Namespace != "" {
			pns = params.Namespace
		}
	}
	cm, err := e.Kube.CoreV1().ConfigMaps(pns).Get(ctx, pn, metav1.GetOptions{})
	if err != nil {
		return append(out, fail(pname, hint+"; without its parameters the policy refuses every pod it matches", "ConfigMap %s/%s: %v", pns, pn, err)), nil
	}
	addr, ca := cm.Data[wellknown.ParamDiscoveryAddress], cm.Data[wellknown.ParamDiscoveryCA]
	if addr == "" || ca == "" {
		return append(out, warn(pname, "the injector publishes them when discovery serves (injector serve --policy-params): see the check discovery",
			"ConfigMap %s/%s has no discovery address and CA: agents of new pods watch the API server", pns, pn)), nil
	}
	return append(out, pass(pname, "ConfigMap %s/%s: agents of new pods follow discovery at %s", pns, pn, addr)), []byte(ca)
}

func (e *Env) discovery(ctx context.Context, in *installation.Install, ca []byte) Result {
	const name = "discovery"
	if r := e.serviceReady(ctx, wellknown.DiscoveryService, name, "agents of new pods watch the API server instead"); !r.OK {
		return r
	}
	var serving, agents int
	var problems []string
	for _, p := range in.Running() {
		r, s, err := installation.Replica(ctx, e.Forward, &p)
		if err != nil {
			if installation.Forbidden(err) {
				return fail(name, "you need create on pods/portforward in "+in.Namespace, "%v", err)
			}
			problems = append(problems, fmt.Sprintf("%s: %v", p.Name, err))
			continue
		}
		s.Close()
		switch {
		case !r.Discovery:
			problems = append(problems, p.Name+": discovery is turned off (--discovery=false)")
		case !r.Ready:
			problems = append(problems, p.Name+": discovery has not loaded the cluster's state yet")
		default:
			serving++
			agents += len(r.Agents)
		}
	}
	if serving == 0 {
		return fail(name, fmt.Sprintf("kubectl -n %s logs deployment/%s", in.Namespace, in.Deployment.Name), "no injector replica serves discovery: %s", list(problems, 3))
	}
	if len(ca) > 0 {
		port, ok := in.Port(wellknown.DiscoveryPortName)
		if !ok {
			port = wellknown.DiscoveryPort
		}
		host := wellknown.DiscoveryService + "." + in.Namespace + ".svc"
		if r := e.certificate(ctx, in, name, port, host, ca, "CA agents are given", "the injector passes agents the CA of the certificate it serves; a renewed CA reaches agents of new pods only: restart the workloads"); !r.OK || r.Warning {
			return r
		}
	}
	msg := fmt.Sprintf("%d of %d running replicas serve, %s connected", serving, len(in.Running()), count(agents, "agent", "agents"))
	if len(problems) > 0 {
		return warn(name, fmt.Sprintf("kubectl -n %s logs deployment/%s", in.Namespace, in.Deployment.Name), "%s; %s", msg, list(problems, 3))
	}
	return pass(name, "%s", msg)
}

func (e *Env) cniPlugin(ctx context.Context, capture string) Result {
	const name = "cni-plugin"
	var annotated []string
	if nss, err := e.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		for _, ns := range nss.Items {
			if ns.Annotations[wellknown.AnnotationCapture] == wellknown.CaptureCNI {
				annotated = append(annotated, ns.Name)
			}
		}
	}
	if capture != wellknown.CaptureCNI && len(annotated) == 0 {
		return pass(name, "init mode: no namespace uses CNI mode, no plugin needed")
	}
	why := "CNI mode is the default"
	if capture != wellknown.CaptureCNI {
		why = "namespaces " + list(annotated, 3) + " use CNI mode"
	}
	hint := "kubectl apply -k config/cni (or the tandem-cni chart); kubectl -n " + wellknown.CNINamespace + " describe daemonset " + wellknown.CNIDaemonSet
	ds, err := e.Kube.AppsV1().DaemonSets(wellknown.CNINamespace).Get(ctx, wellknown.CNIDaemonSet, metav1.GetOptions{})
	if err != nil {
		return fail(name, hint, "%s, but DaemonSet %s/%s: %v: pods in CNI mode fail their capture check (tandem-validate) and do not start", why, wellknown.CNINamespace, wellknown.CNIDaemonSet, err)
	}
	st := ds.Status
	if st.DesiredNumberScheduled == 0 || st.NumberReady < st.DesiredNumberScheduled {
		return fail(name, hint, "%s, but DaemonSet %s/%s is ready on %d of %d nodes: pods in CNI mode on the others fail their capture check (tandem-validate) and do not start", why, ds.Namespace, ds.Name, st.NumberReady, st.DesiredNumberScheduled)
	}
	return pass(name, "%s: DaemonSet %s/%s ready on %d of %d nodes", why, ds.Namespace, ds.Name, st.NumberReady, st.DesiredNumberScheduled)
}

func (e *Env) namespaces(ctx context.Context, capture string) Result {
	const name = "namespaces"
	nss, err := e.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: wellknown.InjectLabel + "=" + wellknown.InjectLabelEnabled})
	if err != nil {
		return fail(name, "you need to list namespaces", "listing namespaces: %v", err)
	}
	if len(nss.Items) == 0 {
		return warn(name, "kubectl label namespace NAME "+wellknown.InjectLabel+"="+wellknown.InjectLabelEnabled, "no namespace is labeled %s=%s: only pods labeled %s=true are injected", wellknown.InjectLabel, wellknown.InjectLabelEnabled, wellknown.InjectLabel)
	}
	var names, unbound, refusing []string
	for _, ns := range nss.Items {
		names = append(names, ns.Name)
		if _, err := e.Kube.RbacV1().ClusterRoleBindings().Get(ctx, wellknown.AgentBindingPrefix+ns.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			unbound = append(unbound, ns.Name)
		}
		nsCapture := cmp.Or(ns.Annotations[wellknown.AnnotationCapture], capture)
		if lvl := ns.Labels[webhook.PodSecurityEnforceLabel]; (lvl == "baseline" || lvl == "restricted") && nsCapture != wellknown.CaptureCNI {
			refusing = append(refusing, ns.Name+" ("+lvl+")")
		}
	}
	if len(unbound) > 0 {
		return fail(name, "the injector's leader grants agents their RBAC: see the check injector, and its logs",
			"%d labeled (%s), but no ClusterRoleBinding %s<namespace> for %s: agents there cannot fall back to the API server", len(names), list(names, 5), wellknown.AgentBindingPrefix, list(unbound, 5))
	}
	if len(refusing) > 0 {
		return warn(name, "use CNI mode there (annotation "+wellknown.AnnotationCapture+"=cni on the namespace, with config/cni installed)",
			"%d labeled (%s); %s enforce Pod Security, which refuses init mode's NET_ADMIN: new pods there are refused", len(names), list(names, 5), list(refusing, 5))
	}
	return pass(name, "%s labeled for injection: %s", count(len(names), "namespace", "namespaces"), list(names, 5))
}

// unselected says which of the two ways a pod asks for injection no binding
// of a policy selects, as the webhook configuration's two webhooks do:
// pods of labeled namespaces, and pods labeled in elsewhere.
func unselected(kind, policy, consequence string, bindings []*admissionv1.MatchResources) []string {
	l := wellknown.InjectLabel
	var out []string
	for _, way := range []struct {
		what    string
		ns, pod labels.Set
	}{
		{fmt.Sprintf("pods of namespaces labeled %s=%s", l, wellknown.InjectLabelEnabled), labels.Set{l: wellknown.InjectLabelEnabled}, labels.Set{}},
		{fmt.Sprintf("pods labeled %s=true in other namespaces", l), labels.Set{}, labels.Set{l: "true"}},
	} {
		if !slices.ContainsFunc(bindings, func(m *admissionv1.MatchResources) bool {
			if m == nil {
				return true // no matchResources: the policy's own constraints only
			}
			return selects(m.NamespaceSelector, way.ns) && selects(m.ObjectSelector, way.pod)
		}) {
			out = append(out, fmt.Sprintf("no %s of policy %s selects %s: they %s", kind, policy, way.what, consequence))
		}
	}
	return out
}

// selects reports whether a binding's selector (nil: everything) matches set.
func selects(sel *metav1.LabelSelector, set labels.Set) bool {
	if sel == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(set)
}
