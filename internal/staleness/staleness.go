// Package staleness tells whether an injected pod's sidecars are what the
// installed injection renders for it now, or were rendered before the
// templates or settings changed (the pod must be restarted to catch up).
//
// The webhook records a hash of what it rendered (the configHash of
// tandem.dev/status): a pod is current when rendering it now gives the
// same hash. Admission policies record no hash (CEL has none), so a
// policy-injected pod's sidecars are compared, field by field, with what
// renders now from the policies' parameters; fields the API server fills
// in (defaults) are not differences. The comparison also explains a
// hash that differs.
package staleness

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-mesh/tandem/templates"
	"github.com/tandem-mesh/tandem/webhook"
)

// States of a Verdict.
const (
	Current = "current"
	Stale   = "stale"
	Unknown = "unknown"
)

// Who injected a pod, as its status tells.
const (
	ByWebhook = "webhook"
	ByPolicy  = "policy"
)

// Verdict is what Check says of a pod.
type Verdict struct {
	State string `json:"state"`
	// Reason says what differs (stale) or why nothing can be said (unknown).
	Reason     string `json:"reason,omitempty"`
	InjectedBy string `json:"injectedBy"`
	Template   string `json:"template"`
	// NativeSidecar is the layout the pod was injected with.
	NativeSidecar bool `json:"nativeSidecar"`
}

// Check compares pod's sidecars with what in renders for it in namespace
// ns now. A pod without tandem.dev/status is Unknown: it is not injected.
func Check(in *webhook.Injector, pod *corev1.Pod, ns webhook.Namespace) Verdict {
	st, ok, err := webhook.ParseStatus(pod)
	switch {
	case err != nil:
		return Verdict{State: Unknown, Reason: err.Error()}
	case !ok:
		return Verdict{State: Unknown, Reason: "not injected"}
	}
	v := Verdict{InjectedBy: ByWebhook, Template: st.Template, NativeSidecar: st.NativeSidecar}
	if st.ConfigHash == "" {
		v.InjectedBy = ByPolicy
	}
	if in == nil {
		v.State, v.Reason = Unknown, "no injection to compare with"
		return v
	}
	r, err := in.Render(pod, ns)
	if err != nil {
		v.State, v.Reason = Unknown, "the injection would not render this pod now: "+err.Error()
		return v
	}
	if r.Template != st.Template {
		v.State, v.Reason = Stale, fmt.Sprintf("injected with template %s; the pod gets %s now", st.Template, r.Template)
		return v
	}
	if st.ConfigHash != "" && st.ConfigHash == r.Hash {
		v.State = Current
		return v
	}
	diff := compare(pod, st, r)
	switch {
	case st.ConfigHash != "":
		v.State, v.Reason = Stale, fmt.Sprintf("rendered with config hash %s, %s now", st.ConfigHash, r.Hash)
		if diff != "" {
			v.Reason += ": " + diff
		}
	case diff != "":
		v.State, v.Reason = Stale, diff
	default:
		v.State = Current
	}
	return v
}

// Relevant is what Check reads of pod, and nothing else: its name, UID,
// resource version and phase, Tandem's annotations, the sidecars and
// volumes its status lists, and of its own containers only the
// environment the injection added. The app's own settings (its
// environment may hold credentials) are left out.
func Relevant(pod *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
		Annotations: map[string]string{}}}
	out.Status.Phase = pod.Status.Phase
	for k, v := range pod.Annotations {
		if strings.HasPrefix(k, "tandem.dev/") || strings.HasPrefix(k, "traffic.tandem.dev/") {
			out.Annotations[k] = v
		}
	}
	st, ok, err := webhook.ParseStatus(pod)
	if !ok || err != nil {
		return out // the verdict says why
	}
	keep := func(list []corev1.Container) []corev1.Container {
		var kept []corev1.Container
		for _, c := range list {
			switch {
			case slices.Contains(st.InitContainers, c.Name) || slices.Contains(st.Containers, c.Name):
				kept = append(kept, c)
			case len(st.Env) > 0:
				app := corev1.Container{Name: c.Name}
				for _, e := range c.Env {
					if slices.Contains(st.Env, e.Name) {
						app.Env = append(app.Env, e)
					}
				}
				kept = append(kept, app)
			}
		}
		return kept
	}
	out.Spec.InitContainers = keep(pod.Spec.InitContainers)
	out.Spec.Containers = keep(pod.Spec.Containers)
	for _, v := range pod.Spec.Volumes {
		if slices.Contains(st.Volumes, v.Name) {
			out.Spec.Volumes = append(out.Spec.Volumes, v)
		}
	}
	return out
}

// compare returns the first difference between the pod's sidecars and r,
// or "" when every field r sets has the same value in the pod.
func compare(pod *corev1.Pod, st webhook.Status, r *templates.Rendered) string {
	byName := map[string]corev1.Container{}
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			byName[c.Name] = c
		}
	}
	injected := append(slices.Clone(st.InitContainers), st.Containers...)
	for _, name := range slices.Sorted(maps.Keys(r.ContainerJSON)) {
		c, ok := byName[name]
		if !ok || !slices.Contains(injected, name) {
			return fmt.Sprintf("container %s is rendered now, the pod has none", name)
		}
		if d := subsetJSON(r.ContainerJSON[name], c, name); d != "" {
			return d
		}
	}
	for _, name := range injected {
		if _, ok := r.ContainerJSON[name]; !ok {
			return fmt.Sprintf("container %s of the pod is not rendered now", name)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	for _, name := range slices.Sorted(maps.Keys(r.VolumeJSON)) {
		v, ok := volumes[name]
		if !ok {
			return fmt.Sprintf("volume %s is rendered now, the pod has none", name)
		}
		if d := subsetJSON(r.VolumeJSON[name], v, "volume "+name); d != "" {
			return d
		}
	}
	// What the template adds to the app's containers (proxyless).
	sc := r.Sidecars
	for _, c := range pod.Spec.Containers {
		if slices.Contains(injected, c.Name) {
			continue
		}
		for _, want := range sc.AppEnv {
			i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == want.Name })
			if i < 0 {
				return fmt.Sprintf("container %s lacks env %s, rendered now", c.Name, want.Name)
			}
			if d := subset(toAny(want), toAny(c.Env[i]), c.Name+".env."+want.Name); d != "" {
				return d
			}
		}
	}
	return ""
}

// subsetJSON compares rendered JSON with an object of the pod.
func subsetJSON(rendered []byte, actual any, path string) string {
	var want any
	if err := json.Unmarshal(rendered, &want); err != nil {
		return fmt.Sprintf("%s: %v", path, err)
	}
	return subset(want, toAny(actual), path)
}

func toAny(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out
}

// subset returns "" when every field of want has its value in got (got
// may have more: the API server's defaults), else the first difference.
func subset(want, got any, path string) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: the pod has %s, rendered now %s", path, show(got), show(want))
		}
		for _, k := range slices.Sorted(maps.Keys(w)) {
			if d := subset(w[k], g[k], path+"."+k); d != "" {
				return d
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: the pod has %s, rendered now %s", path, show(got), show(want))
		}
		for i := range w {
			if d := subset(w[i], g[i], fmt.Sprintf("%s[%d]", path, i)); d != "" {
				return d
			}
		}
		return ""
	}
	if !reflect.DeepEqual(want, got) {
		return fmt.Sprintf("%s: the pod has %s, rendered now %s", path, show(got), show(want))
	}
	return ""
}

// show prints a value briefly: strings as they are, the rest as JSON.
func show(v any) string {
	switch s := v.(type) {
	case nil:
		return "nothing"
	case string:
		return s
	}
	b, _ := json.Marshal(v)
	if len(b) > 80 {
		return strings.TrimSpace(string(b[:77])) + "..."
	}
	return string(b)
}
