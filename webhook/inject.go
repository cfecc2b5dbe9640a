// Package webhook decides whether a pod gets Tandem's sidecars and adds them.
// One mutation serves both the admission webhook (Handler) and the offline
// `injector inject` command (Injector.Inject on decoded pods).
package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/bootstrap"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/templates"
)

// DefaultContainerAnnotation tells kubectl which container `kubectl logs`
// and `exec` pick; the injector sets it when its containers come first.
const DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// Config configures an Injector.
type Config struct {
	// Templates are the sidecar templates; nil means the built-in ones.
	Templates *templates.Set
	// Defaults are the settings annotations can override.
	Defaults Defaults
	// InjectorNamespace is never injected, so the injector cannot block its own pods.
	InjectorNamespace string
}

// Injector adds Tandem's sidecars to pods. It is safe for concurrent use.
type Injector struct {
	templates         *templates.Set
	defaults          settings
	injectorNamespace string
	envoyBootstrap    string
	grpcBootstrap     string
}

// New validates the configuration (errors name the flag at fault).
func New(c Config) (*Injector, error) {
	in := &Injector{templates: c.Templates, injectorNamespace: c.InjectorNamespace}
	if in.templates == nil {
		set, err := templates.Default()
		if err != nil {
			return nil, fmt.Errorf("built-in templates: %w", err)
		}
		in.templates = set
	}
	if in.injectorNamespace == "" {
		in.injectorNamespace = DefaultInjectorNamespace
	}
	// The node ID uses the pod's name, unknown to a pod template: the
	// kubelet expands $(VAR) in args and env values from the container's env.
	var err error
	in.envoyBootstrap, err = bootstrap.EnvoyJSON(bootstrap.EnvoyOptions{NodeID: "$(POD_NAME).$(POD_NAMESPACE)", Cluster: "$(POD_NAMESPACE)"})
	if err != nil {
		return nil, err
	}
	in.grpcBootstrap, err = bootstrap.GRPC(bootstrap.GRPCOptions{NodeID: "$(TANDEM_POD_NAME).$(TANDEM_POD_NAMESPACE)", Cluster: "$(TANDEM_POD_NAMESPACE)"})
	if err != nil {
		return nil, err
	}
	if in.defaults, err = in.fromDefaults(c.Defaults); err != nil {
		return nil, err
	}
	return in, nil
}

// Templates returns the template set the injector renders.
func (in *Injector) Templates() *templates.Set { return in.templates }

// Namespace is what the injector needs to know of a pod's namespace.
type Namespace struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

// Mode says what to do with a pod that is already injected.
type Mode int

const (
	// Admission leaves a pod carrying tandem.dev/status alone, as the
	// webhook must when it is invoked again for a pod it already mutated.
	Admission Mode = iota
	// Reinject strips what the status lists and injects again, so manifests
	// injected offline follow the current templates; re-injecting with the
	// same settings changes nothing.
	Reinject
)

// Result is the outcome of Inject.
type Result struct {
	// Injected is true when the pod was changed.
	Injected bool
	// Skipped explains why the pod was left as it was, when it was.
	Skipped string
	// Status is what the pod's tandem.dev/status now records, when injected.
	Status Status

	changed  changes
	rendered *templates.Rendered
}

// DeniedError is a pod the injector refuses: a bad annotation or label, or
// a name the injector would add that the pod already uses. Its message is
// meant for the user who created the pod.
type DeniedError struct{ msg string }

func (e *DeniedError) Error() string { return e.msg }

func denied(format string, args ...any) error { return &DeniedError{msg: fmt.Sprintf(format, args...)} }

// IsDenied reports whether err is a refusal of the pod rather than a failure of the injector.
func IsDenied(err error) bool {
	var d *DeniedError
	return errors.As(err, &d)
}

// Inject decides whether pod, in namespace ns, gets the sidecars and adds
// them in place. An error is either a DeniedError or a failure to render.
func (in *Injector) Inject(pod *corev1.Pod, ns Namespace, mode Mode) (Result, error) {
	return in.inject(pod, ns, mode, true, nil)
}

// inject is Inject; without copySidecars the pod shares the sidecars with
// the render cache, for a caller that only reads the pod and drops it.
// prepare, if set, sees the sidecars before the pod is checked against them.
func (in *Injector) inject(pod *corev1.Pod, ns Namespace, mode Mode, copySidecars bool, prepare func(*templates.Sidecars) error) (Result, error) {
	if reason, err := in.decide(pod, ns, mode); reason != "" || err != nil {
		return Result{Skipped: reason}, err
	}
	var ch changes
	if old, ok, err := ParseStatus(pod); err != nil {
		return Result{}, err
	} else if ok {
		ch = strip(pod, old)
	}
	s, err := in.settingsFor(pod, ns)
	if err != nil {
		return Result{}, err
	}

	r, err := in.templates.Render(s.template, s.values)
	if err != nil {
		return Result{}, fmt.Errorf("rendering the sidecars of pod %s: %w", podName(pod), err)
	}
	if err := podSecurityAllows(pod, ns, &r.Sidecars); err != nil {
		return Result{}, err
	}
	if prepare != nil {
		if err := prepare(&r.Sidecars); err != nil {
			return Result{}, err
		}
	}
	if err := clashes(pod, &r.Sidecars); err != nil {
		return Result{}, err
	}
	res := apply(pod, r, s.values.NativeSidecar, copySidecars)
	ch.merge(res.changed)
	res.changed, res.rendered = ch, r
	return res, nil
}

// apply adds the rendered sidecars to pod and records them in its status.
func apply(pod *corev1.Pod, r *templates.Rendered, native, copySidecars bool) Result {
	sc := &r.Sidecars
	st := Status{Template: r.Template, NativeSidecar: native, ConfigHash: r.Hash}
	var ch changes

	if len(sc.InitContainersFirst)+len(sc.InitContainersLast) > 0 {
		own := pod.Spec.InitContainers
		list := make([]corev1.Container, 0, len(own)+len(sc.InitContainersFirst)+len(sc.InitContainersLast))
		list = appendSidecars(list, sc.InitContainersFirst, copySidecars)
		list = append(list, own...)
		list = appendSidecars(list, sc.InitContainersLast, copySidecars)
		pod.Spec.InitContainers = list
		st.InitContainers = append(names(sc.InitContainersFirst), names(sc.InitContainersLast)...)
		ch.initContainers = true
	}

	own := pod.Spec.Containers
	if len(sc.AppEnv)+len(sc.AppVolumeMounts) > 0 {
		// A new list: the pod's own stays as it was, for the patch.
		own = slices.Clone(own)
		pod.Spec.Containers = own
		for i := range own {
			c := &own[i]
			for _, e := range sc.AppEnv {
				c.Env = append(c.Env, *e.DeepCopy())
			}
			for _, m := range sc.AppVolumeMounts {
				c.VolumeMounts = append(c.VolumeMounts, *m.DeepCopy())
			}
		}
		for _, e := range sc.AppEnv {
			st.Env = append(st.Env, e.Name)
		}
		for _, m := range sc.AppVolumeMounts {
			st.VolumeMounts = append(st.VolumeMounts, m.Name)
		}
		ch.containers = len(own) > 0
	}
	if len(sc.ContainersFirst) > 0 {
		list := make([]corev1.Container, 0, len(own)+len(sc.ContainersFirst))
		list = appendSidecars(list, sc.ContainersFirst, copySidecars)
		pod.Spec.Containers = append(list, own...)
		st.Containers = names(sc.ContainersFirst)
		ch.containers = true
		// kubectl picks the first container by default; keep it the app's.
		if _, set := pod.Annotations[DefaultContainerAnnotation]; !set && len(own) > 0 {
			setAnnotation(pod, DefaultContainerAnnotation, own[0].Name)
			st.Annotations = append(st.Annotations, DefaultContainerAnnotation)
		}
	}

	if len(sc.Volumes) > 0 {
		vols := make([]corev1.Volume, 0, len(pod.Spec.Volumes)+len(sc.Volumes))
		vols = append(vols, pod.Spec.Volumes...)
		for i := range sc.Volumes {
			if copySidecars {
				vols = append(vols, *sc.Volumes[i].DeepCopy())
			} else {
				vols = append(vols, sc.Volumes[i])
			}
			st.Volumes = append(st.Volumes, sc.Volumes[i].Name)
		}
		pod.Spec.Volumes = vols
		ch.volumes = true
	}

	// Marshalling a struct of strings and bools cannot fail.
	status, _ := json.Marshal(st)
	setAnnotation(pod, wellknown.StatusAnnotation, string(status))
	ch.annotations = true
	return Result{Injected: true, Status: st, changed: ch}
}

// touchesContainers reports whether sidecars change the pod's own containers.
func touchesContainers(sc *templates.Sidecars) bool {
	return len(sc.ContainersFirst)+len(sc.AppEnv)+len(sc.AppVolumeMounts) > 0
}

func appendSidecars(dst, src []corev1.Container, deep bool) []corev1.Container {
	if !deep {
		return append(dst, src...)
	}
	for i := range src {
		dst = append(dst, *src[i].DeepCopy())
	}
	return dst
}

func names(cs []corev1.Container) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

func setAnnotation(pod *corev1.Pod, k, v string) {
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[k] = v
}

// reserved are the names injection uses in any template; a pod that already
// uses one without a status annotation is refused rather than half-injected.
var reservedContainers = []string{wellknown.InitContainerName, wellknown.ValidateContainerName, wellknown.AgentContainerName, wellknown.ProxyContainerName}
var reservedVolumes = []string{wellknown.RunVolumeName, wellknown.TokenVolumeName}

// clashes refuses a pod that already has something the sidecars would add.
func clashes(pod *corev1.Pod, sc *templates.Sidecars) error {
	containers := slices.Concat(reservedContainers, names(sc.InitContainersFirst), names(sc.InitContainersLast), names(sc.ContainersFirst))
	volumes := slices.Clone(reservedVolumes)
	for _, v := range sc.Volumes {
		volumes = append(volumes, v.Name)
	}
	const fix = "these names are reserved for Tandem's sidecars: rename it, or opt the pod out with the label " + wellknown.InjectLabel + "=false"
	for _, list := range []struct {
		kind string
		cs   []corev1.Container
	}{{"an init container", pod.Spec.InitContainers}, {"a container", pod.Spec.Containers}, {"an ephemeral container", ephemeral(pod)}} {
		for _, c := range list.cs {
			if slices.Contains(containers, c.Name) {
				return denied("pod %s already has %s named %q but no %s annotation; %s", podName(pod), list.kind, c.Name, wellknown.StatusAnnotation, fix)
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		if slices.Contains(volumes, v.Name) {
			return denied("pod %s already has a volume named %q but no %s annotation; %s", podName(pod), v.Name, wellknown.StatusAnnotation, fix)
		}
	}
	for _, c := range pod.Spec.Containers {
		for _, e := range sc.AppEnv {
			if slices.ContainsFunc(c.Env, func(x corev1.EnvVar) bool { return x.Name == e.Name }) {
				return denied("container %q of pod %s already sets the environment variable %s, which the injection sets; remove it, or choose another template with the annotation %s",
					c.Name, podName(pod), e.Name, wellknown.AnnotationTemplate)
			}
		}
		for _, m := range sc.AppVolumeMounts {
			if slices.ContainsFunc(c.VolumeMounts, func(x corev1.VolumeMount) bool { return x.MountPath == m.MountPath }) {
				return denied("container %q of pod %s already mounts something at %s, where the injection mounts the volume %s; move it, or choose another template with the annotation %s",
					c.Name, podName(pod), m.MountPath, m.Name, wellknown.AnnotationTemplate)
			}
		}
	}
	return nil
}

func ephemeral(pod *corev1.Pod) []corev1.Container {
	out := make([]corev1.Container, len(pod.Spec.EphemeralContainers))
	for i, e := range pod.Spec.EphemeralContainers {
		out[i].Name = e.Name
	}
	return out
}

// podName names a pod in messages; pods created by controllers have only a generateName.
func podName(pod *corev1.Pod) string {
	switch {
	case pod.Name != "":
		return fmt.Sprintf("%q", pod.Name)
	case pod.GenerateName != "":
		return fmt.Sprintf("%q", pod.GenerateName+"<generated>")
	default:
		return "(unnamed)"
	}
}
