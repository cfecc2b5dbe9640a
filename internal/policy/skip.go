package policy

import (
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/webhook"
)

// Pods the injector leaves as they are because Tandem's sidecars cannot
// run beside them (webhook/coexist.go), as CEL conditions on the pod, built
// from the injector's own lists. Each condition is true for a pod that may
// be injected.
func skipConditions() []admissionv1.MatchCondition {
	return []admissionv1.MatchCondition{
		{Name: "not-other-mesh", Expression: "!(" + otherMeshCEL() + ")"},
		{Name: "not-windows", Expression: "!(" + windowsCEL() + ")"},
		{Name: "no-port-clash", Expression: "!(" + ownContainersExist(portClashCEL("c")) + ")"},
		{Name: "no-uid-clash", Expression: "!(" + ownContainersExist(uidClashCEL("c")) + ")"},
	}
}

// skippedCEL is true for a pod the injector skips for one of skipConditions.
func skippedCEL() string {
	var not []string
	for _, m := range skipConditions() {
		not = append(not, "!("+m.Expression+")")
	}
	return strings.Join(not, " || ")
}

// ownContainersExist: some init or regular container of the pod, but
// Tandem's own, meets cond (on c).
func ownContainersExist(cond string) string {
	reserved, _ := webhook.ReservedNames()
	var or []string
	for _, f := range []string{"initContainers", "containers"} {
		or = append(or, fmt.Sprintf("(has(object.spec.%s) && object.spec.%s.exists(c, !(c.name in %s) && (%s)))", f, f, litList(reserved), cond))
	}
	return strings.Join(or, " || ")
}

func otherMeshCEL() string {
	var annotations, names, or []string
	for _, m := range webhook.OtherMeshes() {
		annotations = append(annotations, m.Annotations...)
		names = append(names, m.Containers...)
		for _, p := range m.Prefixes {
			or = append(or, fmt.Sprintf("c.name.startsWith(%s)", lit(p)))
		}
	}
	var ann []string
	for _, a := range annotations {
		ann = append(ann, hasAnnotation("object", a))
	}
	return strings.Join(ann, " || ") + " || " + ownContainersExist(strings.Join(append([]string{"c.name in " + litList(names)}, or...), " || "))
}

// windowsCEL mirrors the injector's rule: spec.os.name is windows; or the
// node selector asks for windows; or every term of the required node
// affinity rules Linux out.
func windowsCEL() string {
	win, linux := lit(string(corev1.Windows)), lit(string(corev1.Linux))
	labels := litList(webhook.OSLabels())
	or := []string{fmt.Sprintf("(has(object.spec.os) && object.spec.os.name == %s)", win)}
	for _, l := range webhook.OSLabels() {
		or = append(or, fmt.Sprintf("(has(object.spec.nodeSelector) && %s in object.spec.nodeSelector && object.spec.nodeSelector[%s] == %s)", lit(l), lit(l), win))
	}
	rulesOutLinux := fmt.Sprintf(`r.key in %s && (r.operator == %s && !(has(r.values) && %s in r.values) || r.operator == %s && has(r.values) && %s in r.values || r.operator == %s)`,
		labels, lit(string(corev1.NodeSelectorOpIn)), linux, lit(string(corev1.NodeSelectorOpNotIn)), linux, lit(string(corev1.NodeSelectorOpDoesNotExist)))
	req := "object.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
	or = append(or, fmt.Sprintf("(has(object.spec.affinity) && has(object.spec.affinity.nodeAffinity) && has(%s) && has(%s.nodeSelectorTerms) && size(%s.nodeSelectorTerms) > 0 && %s.nodeSelectorTerms.all(t, has(t.matchExpressions) && t.matchExpressions.exists(r, %s)))",
		req, req, req, req, rulesOutLinux))
	return strings.Join(or, " || ")
}

func portClashCEL(c string) string {
	var ports []string
	for _, p := range webhook.TandemPorts() {
		ports = append(ports, fmt.Sprint(p))
	}
	return fmt.Sprintf("has(%s.ports) && %s.ports.exists(p, p.containerPort in [%s])", c, c, strings.Join(ports, ", "))
}

// uidClashCEL: the container's effective runAsUser (its own, else the
// pod's) is the proxy's UID.
func uidClashCEL(c string) string {
	return fmt.Sprintf("(has(%s.securityContext) && has(%s.securityContext.runAsUser)) ? %s.securityContext.runAsUser == %d : (has(object.spec.securityContext) && has(object.spec.securityContext.runAsUser) && object.spec.securityContext.runAsUser == %d)",
		c, c, c, wellknown.ProxyUID, wellknown.ProxyUID)
}
