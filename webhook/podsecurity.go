package webhook

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/templates"
)

// PodSecurityEnforceLabel is the namespace label of Pod Security Admission
// that sets the level pods must meet.
const PodSecurityEnforceLabel = "pod-security.kubernetes.io/enforce"

// podSecurityAllows refuses to add a privileged sidecar (one that adds
// capabilities the level forbids, as tandem-init does in init mode) to a pod of a
// namespace that enforces the baseline or restricted level. Pod Security
// Admission would refuse the pod anyway, with a message about a container
// the user never wrote; this one says why and what to do instead.
func podSecurityAllows(pod *corev1.Pod, ns Namespace, sc *templates.Sidecars) error {
	level := ns.Labels[PodSecurityEnforceLabel]
	if level != "baseline" && level != "restricted" {
		return nil
	}
	for _, c := range slices.Concat(sc.InitContainersFirst, sc.InitContainersLast, sc.ContainersFirst) {
		if !privileged(c, level) {
			continue
		}
		if c.Name == wellknown.InitContainerName {
			return denied("pod %s: namespace %q enforces Pod Security %q (label %s), which forbids the capabilities NET_ADMIN and NET_RAW "+
				"that %s needs to install the traffic capture in init mode; use CNI mode instead: install the tandem-cni plugin on the nodes "+
				"(config/cni) and set the annotation %s=%s on the pod or namespace (or run the injector with --capture=%s)",
				podName(pod), ns.Name, level, PodSecurityEnforceLabel, c.Name, wellknown.AnnotationCapture, wellknown.CaptureCNI, wellknown.CaptureCNI)
		}
		return denied("pod %s: namespace %q enforces Pod Security %q (label %s), and the template's container %s adds capabilities or is privileged, which it forbids",
			podName(pod), ns.Name, level, PodSecurityEnforceLabel, c.Name)
	}
	return nil
}

// allowedCapabilities are the capabilities each level lets a container
// add (Pod Security Standards); NET_ADMIN is in neither.
var allowedCapabilities = map[string][]corev1.Capability{
	"baseline": {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
		"NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"},
	"restricted": {"NET_BIND_SERVICE"},
}

// privileged reports whether a container is privileged outright or adds a
// capability the level does not allow.
func privileged(c corev1.Container, level string) bool {
	sc := c.SecurityContext
	if sc == nil {
		return false
	}
	if sc.Privileged != nil && *sc.Privileged {
		return true
	}
	return sc.Capabilities != nil && slices.ContainsFunc(sc.Capabilities.Add, func(cp corev1.Capability) bool {
		return !slices.Contains(allowedCapabilities[level], cp)
	})
}
