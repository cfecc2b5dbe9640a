package clustercheck

import (
	"context"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Pre checks whether Tandem can be installed: the API server's version,
// the injection modes it serves, the caller's permissions for an install,
// cert-manager, and the nodes' CNI.
func Pre(ctx context.Context, e *Env) []Result {
	ctx, cancel := ctxTimeout(ctx)
	defer cancel()
	modes := e.modes()
	return []Result{e.serverVersion(), modes.result(), e.permissions(ctx, modes), e.certManager(modes), e.cni(ctx)}
}

func (e *Env) serverVersion() Result {
	const name = "kubernetes-version"
	info, err := e.Kube.Discovery().ServerVersion()
	if err != nil {
		return fail(name, "check the kubeconfig and that the API server is up", "reading the API server's version: %v", err)
	}
	v, err := version.ParseGeneric(info.GitVersion)
	if err != nil {
		return fail(name, "injector serve --native-sidecar=true|false says which sidecars to inject where the version is unknown", "the API server reports version %q, which does not parse", info.GitVersion)
	}
	if !v.AtLeast(version.MajorMinor(1, 29)) {
		return warn(name, "upgrade to Kubernetes 1.29 or newer for native sidecars (Jobs complete, the app starts after the proxy)",
			"%s: classic sidecars (native sidecars need 1.29)", info.GitVersion)
	}
	return pass(name, "%s: native sidecars", info.GitVersion)
}

// modes is what injection the API server can serve.
type modes struct {
	webhook, policy, certManager bool
	err                          error
}

func (e *Env) modes() modes {
	var m modes
	served := func(gv, resource string) bool {
		l, err := e.Kube.Discovery().ServerResourcesForGroupVersion(gv)
		if err != nil {
			return false
		}
		return slices.ContainsFunc(l.APIResources, func(r metav1.APIResource) bool { return r.Name == resource })
	}
	if _, err := e.Kube.Discovery().ServerResourcesForGroupVersion("admissionregistration.k8s.io/v1"); err != nil {
		m.err = err
	}
	m.webhook = served("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations")
	m.policy = served("admissionregistration.k8s.io/v1", "mutatingadmissionpolicies")
	m.certManager = served("cert-manager.io/v1", "certificates")
	return m
}

func (m modes) result() Result {
	const name = "injection-modes"
	switch {
	case m.err != nil:
		return fail(name, "check that the API server serves admissionregistration.k8s.io/v1", "reading the admission APIs: %v", m.err)
	case m.webhook && m.policy:
		return pass(name, "the webhook (config/default) and admission policies (MutatingAdmissionPolicy v1, config/policy)")
	case m.webhook:
		return pass(name, "the webhook (config/default); admission policies (config/policy) need MutatingAdmissionPolicy v1, Kubernetes 1.36+")
	case m.policy:
		return pass(name, "admission policies (config/policy); no MutatingWebhookConfiguration API for the webhook")
	}
	return fail(name, "Tandem injects through a MutatingWebhookConfiguration or a MutatingAdmissionPolicy (admissionregistration.k8s.io/v1)", "the API server serves neither way of injecting")
}

// access is one permission an install needs.
type access struct {
	verb, group, resource, namespace string
}

func (a access) String() string {
	r := a.resource
	if a.group != "" {
		r += "." + a.group
	}
	if a.namespace != "" {
		return fmt.Sprintf("%s %s in %s", a.verb, r, a.namespace)
	}
	return a.verb + " " + r
}

func (e *Env) permissions(ctx context.Context, m modes) Result {
	const name = "permissions"
	need := []access{
		{"create", "apiextensions.k8s.io", "customresourcedefinitions", ""},
		{"create", "", "namespaces", ""},
		{"create", "rbac.authorization.k8s.io", "clusterroles", ""},
		{"create", "rbac.authorization.k8s.io", "clusterrolebindings", ""},
		// The injector's role lets it bind tandem-agent: granting it needs bind.
		{"bind", "rbac.authorization.k8s.io", "clusterroles", ""},
	}
	if m.webhook {
		need = append(need, access{"create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", ""})
	}
	if m.policy {
		for _, r := range []string{"mutatingadmissionpolicies", "mutatingadmissionpolicybindings", "validatingadmissionpolicies", "validatingadmissionpolicybindings"} {
			need = append(need, access{"create", "admissionregistration.k8s.io", r, ""})
		}
	}
	for _, r := range []struct{ group, resource string }{
		{"apps", "deployments"}, {"", "services"}, {"", "serviceaccounts"}, {"", "configmaps"},
		{"rbac.authorization.k8s.io", "roles"}, {"rbac.authorization.k8s.io", "rolebindings"}, {"policy", "poddisruptionbudgets"},
	} {
		need = append(need, access{"create", r.group, r.resource, e.Namespace})
	}
	if m.certManager {
		need = append(need, access{"create", "cert-manager.io", "certificates", e.Namespace}, access{"create", "cert-manager.io", "issuers", e.Namespace})
	}
	var missing []string
	for _, a := range need {
		ok, err := e.may(ctx, a)
		if err != nil {
			return fail(name, "the API server must answer SelfSubjectAccessReviews", "asking whether you may %s: %v", a, err)
		}
		if !ok {
			missing = append(missing, a.String())
		}
	}
	if len(missing) > 0 {
		return fail(name, "install as a cluster administrator (the cluster-admin ClusterRole has all of it)",
			"you may not %s, which an install does", list(missing, 6))
	}
	// What kubectl tandem itself needs afterwards.
	pf := access{"create", "", "pods/portforward", e.Namespace}
	if ok, err := e.may(ctx, pf); err == nil && !ok {
		return warn(name, "grant it to whoever runs kubectl tandem status and check (see docs/operations.md)",
			"you may create everything an install creates, but not %s, through which status and check read discovery", pf)
	}
	return pass(name, "you may create everything an install creates (%d permissions checked), and port-forward to the injector", len(need))
}

// may asks the API server whether the caller may do a.
func (e *Env) may(ctx context.Context, a access) (bool, error) {
	resource, sub, _ := strings.Cut(a.resource, "/")
	r, err := e.Kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
		Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
			Verb: a.verb, Group: a.group, Resource: resource, Subresource: sub, Namespace: a.namespace}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return r.Status.Allowed, nil
}

func (e *Env) certManager(m modes) Result {
	const name = "cert-manager"
	switch {
	case m.certManager:
		return pass(name, "cert-manager serves cert-manager.io/v1: config/default can have it issue the webhook's and discovery's certificate")
	case m.policy:
		return warn(name, "install cert-manager for config/default, or install config/policy, where the injector issues its own certificate",
			"not installed (no cert-manager.io/v1 API)")
	}
	return fail(name, "install cert-manager (https://cert-manager.io) before config/default; this API server has no admission policies for config/policy",
		"not installed (no cert-manager.io/v1 API), and config/default needs it")
}

// knownCNIs are primary CNI plugins by the name of the DaemonSet that
// installs them.
var knownCNIs = []struct{ plugin, daemonSet string }{
	{"Calico", "calico-node"}, {"Cilium", "cilium"}, {"Flannel", "kube-flannel-ds"}, {"Flannel", "flannel"},
	{"Canal", "canal"}, {"Weave Net", "weave-net"}, {"kindnet", "kindnet"}, {"Amazon VPC CNI", "aws-node"},
	{"Antrea", "antrea-agent"}, {"kube-router", "kube-router"}, {"OVN-Kubernetes", "ovnkube-node"},
	{"Azure CNI", "azure-cns"}, {"GKE Dataplane V2", "anetd"}, {"Multus", "kube-multus-ds"},
}

func (e *Env) cni(ctx context.Context) Result {
	const name = "cni"
	nodes, err := e.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return warn(name, "CNI mode needs tandem-cni on every node, chained after the primary plugin (docs/cni.md)", "cannot list nodes: %v", err)
	}
	dss, err := e.Kube.AppsV1().DaemonSets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return warn(name, "CNI mode chains tandem-cni after the node's primary plugin (docs/cni.md)", "cannot list DaemonSets to find the nodes' CNI: %v", err)
	}
	var found []string
	var tandem *appsv1.DaemonSet
	for i, ds := range dss.Items {
		if ds.Name == wellknown.CNIDaemonSet {
			tandem = &dss.Items[i]
		}
		for _, k := range knownCNIs {
			if ds.Name == k.daemonSet {
				found = append(found, fmt.Sprintf("%s (DaemonSet %s/%s, %d of %d nodes ready)", k.plugin, ds.Namespace, ds.Name, ds.Status.NumberReady, ds.Status.DesiredNumberScheduled))
			}
		}
	}
	suffix := ""
	if tandem != nil {
		suffix = fmt.Sprintf("; tandem-cni is installed on %d of %d nodes", tandem.Status.NumberReady, tandem.Status.DesiredNumberScheduled)
	}
	if len(found) == 0 {
		return warn(name, "init mode needs nothing of the CNI; CNI mode (make deploy CAPTURE=cni) chains tandem-cni after whatever primary plugin the nodes use (docs/cni.md)",
			"%s; no DaemonSet of a known CNI plugin found%s", count(len(nodes.Items), "node", "nodes"), suffix)
	}
	return pass(name, "%s; %s%s: CNI mode chains tandem-cni after it", count(len(nodes.Items), "node", "nodes"), list(found, 3), suffix)
}
