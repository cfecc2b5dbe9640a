package webhook

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// systemNamespaces are never injected: the cluster's own pods must start
// whatever happens to the injector.
var systemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// decide applies the rules of who is injected. The webhook configuration's
// selectors filter first; the checks are repeated here because the offline
// injector has no API server, and because selectors can be edited. It
// returns why the pod is skipped, or "" when it is to be injected.
func (in *Injector) decide(pod *corev1.Pod, ns Namespace, mode Mode) (string, error) {
	switch {
	case slices.Contains(systemNamespaces, ns.Name):
		return fmt.Sprintf("namespace %s is a system namespace", ns.Name), nil
	case ns.Name == in.injectorNamespace:
		return fmt.Sprintf("namespace %s is the injector's own", ns.Name), nil
	case pod.Spec.HostNetwork:
		return "the pod uses the host's network, which capture must not touch", nil
	}
	podLabel, labeled := pod.Labels[wellknown.InjectLabel]
	if labeled && podLabel != "true" && podLabel != "false" {
		return "", denied("label %s=%q on pod %s is invalid; accepted: \"true\" (inject, even in a namespace without the label) or \"false\" (never inject)",
			wellknown.InjectLabel, podLabel, podName(pod))
	}
	switch {
	case podLabel == "false":
		return fmt.Sprintf("the pod is labeled %s=false", wellknown.InjectLabel), nil
	case podLabel != "true" && ns.Labels[wellknown.InjectLabel] != wellknown.InjectLabelEnabled:
		return fmt.Sprintf("neither is namespace %s labeled %s=%s nor the pod %s=true",
			ns.Name, wellknown.InjectLabel, wellknown.InjectLabelEnabled, wellknown.InjectLabel), nil
	}
	if _, injected := pod.Annotations[wellknown.StatusAnnotation]; injected && mode == Admission {
		return "the pod is already injected (it has the " + wellknown.StatusAnnotation + " annotation)", nil
	}
	return "", nil
}
