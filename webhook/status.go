package webhook

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Status is the JSON of the tandem.dev/status annotation: what the injector
// added to the pod, so that it can be removed again exactly.
type Status struct {
	// Template is the template that was rendered, ConfigHash identifies its output.
	Template      string `json:"template"`
	NativeSidecar bool   `json:"nativeSidecar"`
	ConfigHash    string `json:"configHash"`

	InitContainers []string `json:"initContainers,omitempty"`
	Containers     []string `json:"containers,omitempty"`
	Volumes        []string `json:"volumes,omitempty"`
	// Env and VolumeMounts were added to each of the pod's own containers.
	Env          []string `json:"env,omitempty"`
	VolumeMounts []string `json:"volumeMounts,omitempty"`
	// Annotations were added to the pod (besides this one).
	Annotations []string `json:"annotations,omitempty"`
}

// ParseStatus reads a pod's tandem.dev/status annotation; ok is false when
// the pod has none.
func ParseStatus(pod *corev1.Pod) (s Status, ok bool, err error) {
	raw, ok := pod.Annotations[wellknown.StatusAnnotation]
	if !ok {
		return s, false, nil
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, true, denied("annotation %s on pod %s is not the injector's status JSON (%v); remove the annotation and the containers it names, or recreate the pod from its unmodified manifest",
			wellknown.StatusAnnotation, podName(pod), err)
	}
	return s, true, nil
}

// strip removes from pod everything s lists, and the status annotation,
// and says which parts it changed. It replaces the pod's lists and maps
// rather than writing into them.
func strip(pod *corev1.Pod, s Status) Parts {
	var ch Parts
	drop := func(list []corev1.Container, names []string) []corev1.Container {
		return slices.DeleteFunc(slices.Clone(list), func(c corev1.Container) bool { return slices.Contains(names, c.Name) })
	}
	// The environment and mounts went to each of the pod's own containers.
	dropApp := func(list []corev1.Container) ([]corev1.Container, bool) {
		if len(s.Env)+len(s.VolumeMounts) == 0 || len(list) == 0 {
			return list, false
		}
		list = slices.Clone(list)
		changed := false
		for i := range list {
			c := &list[i]
			ne, nm := len(c.Env), len(c.VolumeMounts)
			c.Env = slices.DeleteFunc(slices.Clone(c.Env), func(e corev1.EnvVar) bool { return slices.Contains(s.Env, e.Name) })
			c.VolumeMounts = slices.DeleteFunc(slices.Clone(c.VolumeMounts), func(m corev1.VolumeMount) bool { return slices.Contains(s.VolumeMounts, m.Name) })
			changed = changed || len(c.Env) != ne || len(c.VolumeMounts) != nm
			// An emptied list goes back to absent, as it was before injection.
			if len(c.Env) == 0 {
				c.Env = nil
			}
			if len(c.VolumeMounts) == 0 {
				c.VolumeMounts = nil
			}
		}
		return list, changed
	}
	n := len(pod.Spec.InitContainers)
	pod.Spec.InitContainers = drop(pod.Spec.InitContainers, s.InitContainers)
	ch.InitContainers = len(pod.Spec.InitContainers) != n
	var app bool
	pod.Spec.InitContainers, app = dropApp(pod.Spec.InitContainers)
	ch.InitContainers = ch.InitContainers || app
	n = len(pod.Spec.Containers)
	pod.Spec.Containers = drop(pod.Spec.Containers, s.Containers)
	ch.Containers = len(pod.Spec.Containers) != n
	pod.Spec.Containers, app = dropApp(pod.Spec.Containers)
	ch.Containers = ch.Containers || app
	n = len(pod.Spec.Volumes)
	pod.Spec.Volumes = slices.DeleteFunc(slices.Clone(pod.Spec.Volumes), func(v corev1.Volume) bool { return slices.Contains(s.Volumes, v.Name) })
	ch.Volumes = len(pod.Spec.Volumes) != n
	annotations := maps.Clone(pod.Annotations)
	for _, a := range s.Annotations {
		delete(annotations, a)
	}
	delete(annotations, wellknown.StatusAnnotation)
	pod.Annotations = annotations
	ch.Annotations = true
	if len(pod.Spec.InitContainers) == 0 {
		pod.Spec.InitContainers = nil
	}
	if len(pod.Spec.Volumes) == 0 {
		pod.Spec.Volumes = nil
	}
	if len(pod.Annotations) == 0 {
		pod.Annotations = nil
	}
	return ch
}

// AgentDiscovery returns the discovery address and CA the injection gave a
// pod's tandem-agent ("" when it was given none: it watches the API
// server).
func AgentDiscovery(p *corev1.Pod) (address, ca string) {
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range list {
			if c.Name != wellknown.AgentContainerName {
				continue
			}
			for _, a := range c.Args {
				if v, ok := strings.CutPrefix(a, "--discovery-address="); ok {
					address = v
				}
			}
			for _, e := range c.Env {
				if e.Name == wellknown.DiscoveryCAEnv {
					ca = e.Value
				}
			}
		}
	}
	return address, ca
}
