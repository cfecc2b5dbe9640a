package webhook

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Reason says in one word why a pod was not injected; the values are the
// admission metrics' "reason" label.
type Reason string

const (
	ReasonSystemNamespace   Reason = "system-namespace"
	ReasonInjectorNamespace Reason = "injector-namespace"
	ReasonHostNetwork       Reason = "host-network"
	ReasonOptedOut          Reason = "opted-out"
	ReasonNotSelected       Reason = "not-selected"
	ReasonAlreadyInjected   Reason = "already-injected"
	ReasonOtherMesh         Reason = "other-mesh"
	ReasonPortClash         Reason = "port-clash"
	ReasonUIDClash          Reason = "uid-clash"
	ReasonWindows           Reason = "windows"
)

// Reasons lists every Reason.
var Reasons = []Reason{
	ReasonSystemNamespace, ReasonInjectorNamespace, ReasonHostNetwork, ReasonOptedOut, ReasonNotSelected,
	ReasonAlreadyInjected, ReasonOtherMesh, ReasonPortClash, ReasonUIDClash, ReasonWindows,
}

// systemNamespaces are never injected: the cluster's own pods must start
// whatever happens to the injector.
var systemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// skip is a decision not to inject; a zero reason means inject.
type skip struct {
	reason   Reason
	msg      string
	selected bool
}

func (s skip) result() Result { return Result{Skipped: s.msg, Reason: s.reason, Selected: s.selected} }

// decide applies the rules of who is injected. The webhook configuration's
// selectors filter first; the checks are repeated here because the offline
// injector has no API server, and because selectors can be edited. What
// the pod's containers allow is checked later, by coexistence.
func (in *Injector) decide(pod *corev1.Pod, ns Namespace, mode Mode) (skip, error) {
	podLabel := pod.Labels[wellknown.InjectLabel]
	s := skip{selected: podLabel == "true" || podLabel != "false" && ns.Labels[wellknown.InjectLabel] == wellknown.InjectLabelEnabled}
	switch {
	case slices.Contains(systemNamespaces, ns.Name):
		s.reason, s.msg = ReasonSystemNamespace, fmt.Sprintf("namespace %s is a system namespace", ns.Name)
		return s, nil
	case ns.Name == in.injectorNamespace:
		s.reason, s.msg = ReasonInjectorNamespace, fmt.Sprintf("namespace %s is the injector's own", ns.Name)
		return s, nil
	case pod.Spec.HostNetwork:
		s.reason, s.msg = ReasonHostNetwork, "the pod uses the host's network, which capture must not touch"
		return s, nil
	}
	if _, labeled := pod.Labels[wellknown.InjectLabel]; labeled && podLabel != "true" && podLabel != "false" {
		return skip{}, denied("label %s=%q on pod %s is invalid; accepted: \"true\" (inject, even in a namespace without the label) or \"false\" (never inject)",
			wellknown.InjectLabel, podLabel, podName(pod))
	}
	switch {
	case podLabel == "false":
		s.reason, s.msg = ReasonOptedOut, fmt.Sprintf("the pod is labeled %s=false", wellknown.InjectLabel)
	case !s.selected:
		s.reason, s.msg = ReasonNotSelected, fmt.Sprintf("neither is namespace %s labeled %s=%s nor the pod %s=true",
			ns.Name, wellknown.InjectLabel, wellknown.InjectLabelEnabled, wellknown.InjectLabel)
	default:
		if _, injected := pod.Annotations[wellknown.StatusAnnotation]; injected && mode == Admission {
			s.reason, s.msg = ReasonAlreadyInjected, "the pod is already injected (it has the "+wellknown.StatusAnnotation+" annotation)"
		}
	}
	return s, nil
}
