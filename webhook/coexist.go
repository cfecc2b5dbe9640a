package webhook

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Pods Tandem's sidecars cannot share: the pod would never become ready,
// or the API server would refuse it. Such a pod is left as it is, with the
// reason, never refused: it was fine before the injector saw it.

// mesh is another service mesh's injector, recognised by the annotation it
// writes on the pods it injects or by the names of the containers it adds.
type mesh struct {
	name        string
	annotations []string
	containers  []string
	prefixes    []string
}

var meshes = []mesh{
	{name: "Istio", annotations: []string{"sidecar.istio.io/status"}, containers: []string{"istio-proxy", "istio-init", "istio-validation"}},
	{name: "Linkerd", annotations: []string{"linkerd.io/proxy-version"}, containers: []string{"linkerd-proxy", "linkerd-init", "linkerd-network-validator"}},
	{name: "Consul", annotations: []string{"consul.hashicorp.com/connect-inject-status"}, containers: []string{"consul-dataplane", "envoy-sidecar", "consul-sidecar", "copy-consul-bin"}, prefixes: []string{"consul-connect-"}},
	{name: "Kuma", annotations: []string{"kuma.io/sidecar-injected"}, containers: []string{"kuma-sidecar", "kuma-init"}},
}

// tandemPorts are the ports Tandem's sidecars listen on in the pod's network.
var tandemPorts = []int32{wellknown.ProxyAdminPort, wellknown.ProxyOutboundPort, wellknown.AgentDebugPort, wellknown.AgentMetricsPort, wellknown.AgentHealthPort}

// The node labels that name a node's operating system (the second is the
// deprecated beta label, still found in older manifests).
var osLabels = []string{corev1.LabelOSStable, "beta.kubernetes.io/os"}

// coexistence checks that the sidecars can run beside the pod's own
// containers. Tandem's own containers (a pod being re-injected has them
// removed already; one that names them without a status is refused later)
// are not the pod's.
func coexistence(pod *corev1.Pod) skip {
	s := skip{selected: true}
	if name, why := otherMesh(pod); name != "" {
		s.reason, s.msg = ReasonOtherMesh, fmt.Sprintf("the pod is already in the %s mesh (%s): two meshes' sidecars would compete for the same ports and traffic", name, why)
		return s
	}
	if why := windows(pod); why != "" {
		s.reason, s.msg = ReasonWindows, fmt.Sprintf("the pod runs on Windows (%s); Tandem's sidecars are Linux containers", why)
		return s
	}
	var podUID *int64
	if pod.Spec.SecurityContext != nil {
		podUID = pod.Spec.SecurityContext.RunAsUser
	}
	for _, c := range ownContainers(pod) {
		for _, p := range c.Ports {
			if slices.Contains(tandemPorts, p.ContainerPort) {
				s.reason, s.msg = ReasonPortClash, fmt.Sprintf("container %q declares port %d, which Tandem's sidecars use (%s)", c.Name, p.ContainerPort, portsList())
				return s
			}
		}
		uid := podUID
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			uid = c.SecurityContext.RunAsUser
		}
		if uid != nil && *uid == wellknown.ProxyUID {
			where := "its securityContext.runAsUser"
			if uid == podUID {
				where = "the pod's securityContext.runAsUser"
			}
			s.reason, s.msg = ReasonUIDClash, fmt.Sprintf("container %q runs as UID %d (%s), the UID whose traffic Tandem's capture lets through unbalanced", c.Name, *uid, where)
			return s
		}
	}
	return skip{}
}

// otherMesh names the mesh that injected pod, and how it was recognised.
func otherMesh(pod *corev1.Pod) (name, why string) {
	for _, m := range meshes {
		for _, a := range m.annotations {
			if _, ok := pod.Annotations[a]; ok {
				return m.name, "annotation " + a
			}
		}
	}
	for _, c := range ownContainers(pod) {
		for _, m := range meshes {
			if slices.Contains(m.containers, c.Name) || slices.ContainsFunc(m.prefixes, func(p string) bool { return strings.HasPrefix(c.Name, p) }) {
				return m.name, fmt.Sprintf("container %q", c.Name)
			}
		}
	}
	return "", ""
}

// windows says why pod can only run on Windows nodes, or "" when it may run
// on Linux. The rule: spec.os.name is windows; or the node selector asks for
// kubernetes.io/os=windows; or the pod has required node affinity and every
// one of its terms (they are alternatives) rules Linux out, by an In on
// kubernetes.io/os without "linux" or a NotIn with it. A pod some term lets
// onto Linux is injected.
func windows(pod *corev1.Pod) string {
	if pod.Spec.OS != nil && pod.Spec.OS.Name == corev1.Windows {
		return "spec.os.name is windows"
	}
	for _, l := range osLabels {
		if pod.Spec.NodeSelector[l] == string(corev1.Windows) {
			return fmt.Sprintf("its nodeSelector asks for %s=windows", l)
		}
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		return ""
	}
	for _, t := range terms {
		if !slices.ContainsFunc(t.MatchExpressions, rulesOutLinux) {
			return ""
		}
	}
	return "every term of its required node affinity rules out kubernetes.io/os=linux"
}

func rulesOutLinux(r corev1.NodeSelectorRequirement) bool {
	if !slices.Contains(osLabels, r.Key) {
		return false
	}
	linux := slices.Contains(r.Values, string(corev1.Linux))
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return !linux
	case corev1.NodeSelectorOpNotIn:
		return linux
	case corev1.NodeSelectorOpDoesNotExist:
		// Every node carries its OS label.
		return true
	}
	return false
}

// ownContainers are the pod's containers of every kind but Tandem's.
func ownContainers(pod *corev1.Pod) []corev1.Container {
	all := slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers)
	return slices.DeleteFunc(all, func(c corev1.Container) bool { return slices.Contains(reservedContainers, c.Name) })
}

func portsList() string {
	s := make([]string, len(tandemPorts))
	for i, p := range tandemPorts {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ", ")
}
