package webhook

import (
	"slices"

	"github.com/tandem-mesh/tandem/templates"
)

// What the admission-policy compiler (internal/policy) reads of the
// injector: the same defaults, annotations and names, so the two ways of
// injecting cannot drift apart.

// AnnotationSetting is one annotation a pod or namespace can set, with the
// flag that gives its default (empty when none) and the accepted values as
// a denial quotes them.
type AnnotationSetting struct {
	Annotation, Flag, Accepted string
}

// AnnotationSettings lists the annotations in the order the injector checks them.
func (in *Injector) AnnotationSettings() []AnnotationSetting {
	out := make([]AnnotationSetting, len(options))
	for i, o := range options {
		out[i] = AnnotationSetting{Annotation: o.annotation, Flag: o.flag, Accepted: in.accepted(o)}
	}
	return out
}

// DefaultSettings returns the template and values a pod renders with when
// neither it nor its namespace has an annotation: the flags, validated and
// in canonical form.
func (in *Injector) DefaultSettings() (template string, values templates.Values) {
	return in.defaults.template, in.defaults.values
}

// InjectorNamespace is the namespace the injector never injects.
func (in *Injector) InjectorNamespace() string { return in.injectorNamespace }

// SystemNamespaces are never injected.
func SystemNamespaces() []string { return slices.Clone(systemNamespaces) }

// ReservedNames are the container and volume names a pod may not use
// without a status annotation, whatever the template.
func ReservedNames() (containers, volumes []string) {
	return slices.Clone(reservedContainers), slices.Clone(reservedVolumes)
}

// Mesh is another service mesh, as the injector recognises the pods it
// injected: by an annotation, a container name, or a container name prefix.
type Mesh struct {
	Name                              string
	Annotations, Containers, Prefixes []string
}

// OtherMeshes are the meshes whose pods are never injected.
func OtherMeshes() []Mesh {
	out := make([]Mesh, len(meshes))
	for i, m := range meshes {
		out[i] = Mesh{Name: m.name, Annotations: slices.Clone(m.annotations), Containers: slices.Clone(m.containers), Prefixes: slices.Clone(m.prefixes)}
	}
	return out
}

// TandemPorts are the ports no container of an injected pod may declare.
func TandemPorts() []int32 { return slices.Clone(tandemPorts) }

// OSLabels are the node labels that name a node's operating system.
func OSLabels() []string { return slices.Clone(osLabels) }
