// Package webhook decides whether a pod gets Tandem's sidecars and adds them:
// a pod in, the pod injected out, and a Result saying what was added or why
// nothing was. One mutation serves both the admission webhook (package
// webhook/admit, its transport) and the offline `injector inject` command.
package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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

// Result is the outcome of Inject: what happened to the pod, and what the
// user who created it should be told.
type Result struct {
	// Injected is true when the pod now carries the sidecars.
	Injected bool
	// Uninjected is true when Reinject removed the sidecars of a pod that is
	// no longer to be injected (Skipped and Reason say why).
	Uninjected bool
	// Skipped explains why the pod was not injected, when it was not; Reason
	// is the same in one word.
	Skipped string
	Reason  Reason
	// Selected is true when the namespace's label or the pod's asks for
	// injection: a skip of a selected pod is news to its author.
	Selected bool
	// Status is what the pod's tandem.dev/status now records, when injected.
	Status Status
	// Changed names the parts of the pod the mutation replaced. Inject never
	// writes into the lists and maps it was given, so a shallow copy of the
	// pod taken before is the pod as it was.
	Changed Parts
	// Warnings are for the author of the pod: what the injection did that
	// they should know of.
	Warnings []string
}

// Parts names the parts of a pod a mutation may change.
type Parts struct {
	Annotations, InitContainers, Containers, Volumes bool
}

func (p *Parts) merge(o Parts) {
	p.Annotations = p.Annotations || o.Annotations
	p.InitContainers = p.InitContainers || o.InitContainers
	p.Containers = p.Containers || o.Containers
	p.Volumes = p.Volumes || o.Volumes
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
// them. It replaces the pod's fields rather than writing into them (see
// Result.Changed). An error is either a DeniedError or a failure to render.
func (in *Injector) Inject(pod *corev1.Pod, ns Namespace, mode Mode) (Result, error) {
	sk, err := in.decide(pod, ns, mode)
	if err != nil {
		return Result{}, err
	}
	// Re-injection starts from the pod as it was before the last injection.
	var stripped Parts
	if mode == Reinject {
		old, ok, err := ParseStatus(pod)
		if err != nil {
			return Result{}, err
		}
		if ok {
			stripped = strip(pod, old)
		}
	}
	if sk.reason == "" {
		sk = coexistence(pod)
	}
	if sk.reason != "" {
		res := sk.result()
		// A manifest injected before and opted out since loses its sidecars.
		res.Uninjected, res.Changed = stripped != (Parts{}), stripped
		return res, nil
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
	if err := clashes(pod, &r.Sidecars, stripped != (Parts{})); err != nil {
		return Result{}, err
	}
	added := apply(pod, r, s.values.NativeSidecar)
	added.Changed.merge(stripped)
	added.Selected = true
	return added, nil
}

// Render returns what the injector renders for pod in namespace ns now:
// its template and settings (annotations over the defaults), with the hash
// the status records. An invalid annotation is a DeniedError.
func (in *Injector) Render(pod *corev1.Pod, ns Namespace) (*templates.Rendered, error) {
	s, err := in.settingsFor(pod, ns)
	if err != nil {
		return nil, err
	}
	return in.templates.Render(s.template, s.values)
}

// apply adds the rendered sidecars to pod and records them in its status.
func apply(pod *corev1.Pod, r *templates.Rendered, native bool) Result {
	sc := &r.Sidecars
	st := Status{Template: r.Template, NativeSidecar: native, ConfigHash: r.Hash}
	res := Result{Injected: true}
	ch := &res.Changed

	own := pod.Spec.InitContainers
	if len(sc.AppEnv)+len(sc.AppVolumeMounts) > 0 {
		// Every container of the pod's own gets them, init containers and
		// native sidecars included: they may dial gRPC services too.
		own = withApp(own, sc)
		pod.Spec.InitContainers = own
		ch.InitContainers = len(own) > 0
	}
	if len(sc.InitContainersFirst)+len(sc.InitContainersLast) > 0 {
		list := make([]corev1.Container, 0, len(own)+len(sc.InitContainersFirst)+len(sc.InitContainersLast))
		list = appendSidecars(list, sc.InitContainersFirst)
		list = append(list, own...)
		list = appendSidecars(list, sc.InitContainersLast)
		pod.Spec.InitContainers = list
		st.InitContainers = append(names(sc.InitContainersFirst), names(sc.InitContainersLast)...)
		ch.InitContainers = true
	}

	own = pod.Spec.Containers
	if len(sc.AppEnv)+len(sc.AppVolumeMounts) > 0 {
		own = withApp(own, sc)
		pod.Spec.Containers = own
		for _, e := range sc.AppEnv {
			st.Env = append(st.Env, e.Name)
		}
		for _, m := range sc.AppVolumeMounts {
			st.VolumeMounts = append(st.VolumeMounts, m.Name)
		}
		ch.Containers = len(own) > 0
	}
	if len(sc.ContainersFirst) > 0 {
		list := make([]corev1.Container, 0, len(own)+len(sc.ContainersFirst))
		list = appendSidecars(list, sc.ContainersFirst)
		pod.Spec.Containers = append(list, own...)
		st.Containers = names(sc.ContainersFirst)
		ch.Containers = true
		// kubectl picks the first container by default; keep it the app's.
		if _, set := pod.Annotations[DefaultContainerAnnotation]; !set && len(own) > 0 {
			setAnnotation(pod, DefaultContainerAnnotation, own[0].Name)
			st.Annotations = append(st.Annotations, DefaultContainerAnnotation)
		}
		if p := pod.Spec.RestartPolicy; p == corev1.RestartPolicyNever || p == corev1.RestartPolicyOnFailure {
			res.Warnings = append(res.Warnings, fmt.Sprintf("pod %s has restartPolicy %s but gets Tandem's sidecars as regular containers, which never exit: the pod never completes (a Job never finishes); use native sidecars (annotation %s=true, Kubernetes 1.29 or newer)",
				podName(pod), p, wellknown.AnnotationNativeSidecar))
		}
	}

	if len(sc.Volumes) > 0 {
		vols := make([]corev1.Volume, 0, len(pod.Spec.Volumes)+len(sc.Volumes))
		vols = append(vols, pod.Spec.Volumes...)
		for i := range sc.Volumes {
			vols = append(vols, *sc.Volumes[i].DeepCopy())
			st.Volumes = append(st.Volumes, sc.Volumes[i].Name)
		}
		pod.Spec.Volumes = vols
		ch.Volumes = true
	}

	// Marshalling a struct of strings and bools cannot fail.
	status, _ := json.Marshal(st)
	setAnnotation(pod, wellknown.StatusAnnotation, string(status))
	ch.Annotations = true
	res.Status = st
	return res
}

// withApp returns a copy of the pod's own containers cs, each given the
// template's environment and mounts after its own.
func withApp(cs []corev1.Container, sc *templates.Sidecars) []corev1.Container {
	if len(cs) == 0 {
		return cs
	}
	cs = slices.Clone(cs)
	for i := range cs {
		c := &cs[i]
		if len(sc.AppEnv) > 0 {
			c.Env = extended(c.Env, sc.AppEnv)
		}
		if len(sc.AppVolumeMounts) > 0 {
			c.VolumeMounts = extended(c.VolumeMounts, sc.AppVolumeMounts)
		}
	}
	return cs
}

// extended returns a new list: own, then copies of the shared items add.
func extended[T any, PT interface {
	*T
	DeepCopy() *T
}](own, add []T) []T {
	out := make([]T, 0, len(own)+len(add))
	out = append(out, own...)
	for i := range add {
		out = append(out, *PT(&add[i]).DeepCopy())
	}
	return out
}

// appendSidecars appends copies: the rendered sidecars are shared.
func appendSidecars(dst, src []corev1.Container) []corev1.Container {
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

// setAnnotation sets an annotation on a copy of the pod's map.
func setAnnotation(pod *corev1.Pod, k, v string) {
	a := make(map[string]string, len(pod.Annotations)+1)
	maps.Copy(a, pod.Annotations)
	a[k] = v
	pod.Annotations = a
}

// reserved are the names injection uses in any template; a pod that already
// uses one without a status annotation is refused rather than half-injected.
var reservedContainers = []string{wellknown.InitContainerName, wellknown.ValidateContainerName, wellknown.AgentContainerName, wellknown.ProxyContainerName}
var reservedVolumes = []string{wellknown.RunVolumeName, wellknown.TokenVolumeName}

// clashes refuses a pod that already has something the sidecars would add;
// hadStatus says the pod had a status annotation, which did not list it.
func clashes(pod *corev1.Pod, sc *templates.Sidecars, hadStatus bool) error {
	containers := slices.Concat(reservedContainers, names(sc.InitContainersFirst), names(sc.InitContainersLast), names(sc.ContainersFirst))
	volumes := slices.Clone(reservedVolumes)
	for _, v := range sc.Volumes {
		volumes = append(volumes, v.Name)
	}
	const fix = "these names are reserved for Tandem's sidecars: rename it, or opt the pod out with the label " + wellknown.InjectLabel + "=false"
	status := "but no " + wellknown.StatusAnnotation + " annotation"
	if hadStatus {
		status = "that its " + wellknown.StatusAnnotation + " annotation does not list"
	}
	for _, list := range []struct {
		kind string
		cs   []corev1.Container
	}{{"an init container", pod.Spec.InitContainers}, {"a container", pod.Spec.Containers}, {"an ephemeral container", ephemeral(pod)}} {
		for _, c := range list.cs {
			if slices.Contains(containers, c.Name) {
				return denied("pod %s already has %s named %q %s; %s", podName(pod), list.kind, c.Name, status, fix)
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		if slices.Contains(volumes, v.Name) {
			return denied("pod %s already has a volume named %q %s; %s", podName(pod), v.Name, status, fix)
		}
	}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
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
