package webhook

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/tandem-mesh/tandem/templates"
)

// The admission patch is the jsonpatch difference between two documents:
// the parts of the pod the injection touched, before and after. Three
// choices keep it small and cheap, and are checked by FuzzInject (the patch
// applies to the request's bytes and gives the injected pod):
//
//   - Only touched parts are compared. Paths in these partial documents are
//     paths in the whole pod, so the patch applies to the whole pod, and the
//     containers of a pod the injection does not touch (its bulk, for a pod
//     with thousands of env variables) are neither encoded nor compared.
//   - "Before" is the pod as decoded, not the request's bytes, so a field
//     the API server sent and the decoder does not know survives where the
//     injection did not have to move it.
//   - Each injected container and volume appears in "after" as a short
//     token, replaced in the finished patch by its JSON, encoded once per
//     rendering: the diff never walks the sidecars, which nothing in the
//     original can equal anyway.

// decodedPod is a pod as the webhook decodes it: with which top-level
// objects the JSON had, and its containers' env lists still as JSON.
type decodedPod struct {
	pod                  *corev1.Pod
	hasMetadata, hasSpec bool
	// env holds each container's undecoded env list. A pod can carry
	// thousands of variables that the injection never reads unless it
	// changes the container, so they are decoded only then (decodeEnv).
	env []jsontext.Value
}

// podDocument decodes like corev1.Pod and tells absent objects apart.
type podDocument struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        *metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec            *specDocument      `json:"spec,omitempty"`
	Status          *corev1.PodStatus  `json:"status,omitempty"`
}

// specDocument and containerDocument shadow the fields of the API types
// that are decoded differently (shallower fields win).
type specDocument struct {
	corev1.PodSpec
	Containers []containerDocument `json:"containers"`
}

type containerDocument struct {
	corev1.Container
	Env jsontext.Value `json:"env,omitempty"`
}

// decodePod reads a pod as the API server writes it: names match exactly
// and appear once, so what is decoded is what a JSON patch against the
// same bytes operates on.
func decodePod(raw []byte) (decodedPod, error) {
	if len(raw) == 0 {
		return decodedPod{}, fmt.Errorf("the request has no object")
	}
	var doc podDocument
	if err := jsonv2.Unmarshal(raw, &doc); err != nil {
		return decodedPod{}, fmt.Errorf("decoding the pod: %w", err)
	}
	return doc.decoded(), nil
}

func (doc *podDocument) decoded() decodedPod {
	d := decodedPod{pod: &corev1.Pod{TypeMeta: doc.TypeMeta}, hasMetadata: doc.Metadata != nil, hasSpec: doc.Spec != nil}
	if doc.Metadata != nil {
		d.pod.ObjectMeta = *doc.Metadata
	}
	if doc.Spec != nil {
		d.pod.Spec = doc.Spec.PodSpec
		d.pod.Spec.Containers = nil
		if doc.Spec.Containers != nil {
			d.pod.Spec.Containers = make([]corev1.Container, len(doc.Spec.Containers))
			d.env = make([]jsontext.Value, len(doc.Spec.Containers))
		}
		for i := range doc.Spec.Containers {
			d.pod.Spec.Containers[i] = doc.Spec.Containers[i].Container
			d.env[i] = doc.Spec.Containers[i].Env
		}
	}
	if doc.Status != nil {
		d.pod.Status = *doc.Status
	}
	return d
}

// decodeEnv decodes the containers' env lists into the pod.
func (d *decodedPod) decodeEnv() error {
	for i, raw := range d.env {
		if raw == nil {
			continue
		}
		if err := jsonv2.Unmarshal(raw, &d.pod.Spec.Containers[i].Env); err != nil {
			return fmt.Errorf("decoding the pod: env of container %q: %w", d.pod.Spec.Containers[i].Name, err)
		}
		d.env[i] = nil
	}
	return nil
}

// podParts are the parts of a pod an injection may change. The mutation
// replaces these lists rather than writing into them, so a copy of the
// slice headers keeps the pod as it was.
type podParts struct {
	annotations                map[string]string
	initContainers, containers []corev1.Container
	volumes                    []corev1.Volume
}

func partsOf(pod *corev1.Pod) podParts {
	return podParts{maps.Clone(pod.Annotations), pod.Spec.InitContainers, pod.Spec.Containers, pod.Spec.Volumes}
}

// partsDoc is one side of the comparison: a pod document holding only
// some parts; a nil part is absent, and so are metadata and spec unless set.
type partsDoc struct {
	metadata, spec                      bool
	annotations                         map[string]string
	initContainers, containers, volumes []byte
}

// encode writes the document as corev1.Pod would be written: annotations,
// initContainers and volumes are left out when empty, containers is not.
func (p *partsDoc) encode() ([]byte, error) {
	buf := make([]byte, 0, 64+len(p.initContainers)+len(p.containers)+len(p.volumes))
	buf = append(buf, '{')
	if p.metadata {
		buf = append(buf, `"metadata":{`...)
		if len(p.annotations) > 0 {
			a, err := json.Marshal(p.annotations)
			if err != nil {
				return nil, err
			}
			buf = append(append(buf, `"annotations":`...), a...)
		}
		buf = append(buf, '}')
	}
	if p.spec {
		if p.metadata {
			buf = append(buf, ',')
		}
		buf = append(buf, `"spec":{`...)
		sep := ""
		for _, part := range []struct {
			name string
			json []byte
		}{{"initContainers", p.initContainers}, {"containers", p.containers}, {"volumes", p.volumes}} {
			if part.json != nil {
				buf = append(append(append(append(buf, sep...), '"'), part.name...), `":`...)
				buf = append(buf, part.json...)
				sep = ","
			}
		}
		buf = append(buf, '}')
	}
	return append(buf, '}'), nil
}

// tokenPrefix starts the stand-ins of injected objects; no pod holds a
// string where a container or volume belongs, nor a NUL in a name.
const tokenPrefix = "\x00tandem/"

// patchResponse is the admission response that turns the pod of d, which
// was before, into d.pod, injected with r as res says.
func patchResponse(d decodedPod, before podParts, r *templates.Rendered, res Result) (admission.Response, error) {
	ch := res.changed
	after := partsOf(d.pod)
	injected := map[string]bool{}
	for _, n := range slices.Concat(res.Status.InitContainers, res.Status.Containers) {
		injected[n] = true
	}
	injectedVolumes := map[string]bool{}
	for _, n := range res.Status.Volumes {
		injectedVolumes[n] = true
	}

	containerName := func(c *corev1.Container) string { return c.Name }
	volumeName := func(v *corev1.Volume) string { return v.Name }
	spec := ch.initContainers || ch.containers || ch.volumes
	a := partsDoc{metadata: ch.annotations && d.hasMetadata, spec: spec && d.hasSpec, annotations: before.annotations}
	b := partsDoc{metadata: ch.annotations, spec: spec, annotations: after.annotations}
	if ch.initContainers {
		if len(before.initContainers) > 0 {
			a.initContainers = encodeList(before.initContainers, containerName, nil, "")
		}
		if len(after.initContainers) > 0 {
			b.initContainers = encodeList(after.initContainers, containerName, injected, "container/")
		}
	}
	if ch.containers {
		// A pod without containers is invalid, but the patch must still
		// apply: absent here makes the diff "add", right for absent and null.
		if before.containers != nil {
			a.containers = encodeList(before.containers, containerName, nil, "")
		}
		b.containers = encodeList(after.containers, containerName, injected, "container/")
	}
	if ch.volumes {
		if len(before.volumes) > 0 {
			a.volumes = encodeList(before.volumes, volumeName, nil, "")
		}
		if len(after.volumes) > 0 {
			b.volumes = encodeList(after.volumes, volumeName, injectedVolumes, "volume/")
		}
	}
	aj, err := a.encode()
	if err != nil {
		return admission.Response{}, err
	}
	bj, err := b.encode()
	if err != nil {
		return admission.Response{}, err
	}
	resp := admission.PatchResponseFromRaw(aj, bj)
	if !resp.Allowed {
		return admission.Response{}, fmt.Errorf("computing the patch: %s", resp.Result.Message)
	}
	for i := range resp.Patches {
		if resp.Patches[i].Value, err = expandTokens(resp.Patches[i].Value, r); err != nil {
			return admission.Response{}, err
		}
	}
	// Encoded here, once: encoding the operations the generic way would
	// compact every sidecar's JSON twice. Response.Complete leaves a
	// response with Patch set and no Patches as it is.
	if resp.Patch, err = encodePatch(resp.Patches); err != nil {
		return admission.Response{}, err
	}
	resp.Patches = nil
	return resp, nil
}

// encodePatch writes operations as a JSON patch, like
// jsonpatch.Operation.MarshalJSON: "value" on every add and replace, even
// when null, and on no remove.
func encodePatch(ops []jsonpatch.Operation) ([]byte, error) {
	size := 2
	for _, op := range ops {
		size += 48 + len(op.Path)
		switch v := op.Value.(type) {
		case json.RawMessage:
			size += len(v)
		case string:
			size += len(v) + len(v)/4 // room for escapes
		}
	}
	buf := make([]byte, 0, size)
	buf = append(buf, '[')
	for i, op := range ops {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"op":`...)
		buf = appendJSONString(buf, op.Operation)
		buf = append(buf, `,"path":`...)
		buf = appendJSONString(buf, op.Path)
		if op.Value != nil || op.Operation == "add" || op.Operation == "replace" {
			buf = append(buf, `,"value":`...)
			switch v := op.Value.(type) {
			case json.RawMessage:
				buf = append(buf, v...)
			case string:
				buf = appendJSONString(buf, v)
			default:
				out, err := json.Marshal(v)
				if err != nil {
					return nil, err
				}
				buf = append(buf, out...)
			}
		}
		buf = append(buf, '}')
	}
	return append(buf, ']'), nil
}

// appendJSONString appends s as a JSON string, the way encoding/json writes it.
func appendJSONString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			out, _ := json.Marshal(s)
			return append(buf, out...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// encodeList writes a JSON array of items, with a token for each injected
// one; a nil list is written as null, as corev1.PodSpec writes containers.
func encodeList[T any](items []T, name func(*T) string, injected map[string]bool, kind string) []byte {
	if items == nil {
		return []byte("null")
	}
	buf := make([]byte, 0, 64*len(items))
	buf = append(buf, '[')
	for i := range items {
		if i > 0 {
			buf = append(buf, ',')
		}
		if n := name(&items[i]); injected[n] {
			buf = appendJSONString(buf, tokenPrefix+kind+n)
		} else {
			// Kubernetes API types always encode.
			item, _ := json.Marshal(&items[i])
			buf = append(buf, item...)
		}
	}
	return append(buf, ']')
}

// expandTokens replaces the tokens in a patch value by the JSON they stand for.
func expandTokens(v any, r *templates.Rendered) (any, error) {
	switch v := v.(type) {
	case string:
		rest, ok := strings.CutPrefix(v, tokenPrefix)
		if !ok {
			return v, nil
		}
		kind, name, _ := strings.Cut(rest, "/")
		var enc []byte
		switch kind {
		case "container":
			enc = r.ContainerJSON[name]
		case "volume":
			enc = r.VolumeJSON[name]
		}
		if enc == nil {
			return nil, fmt.Errorf("no rendered %s %q for the patch", kind, name)
		}
		return json.RawMessage(enc), nil
	case []any:
		for i := range v {
			var err error
			if v[i], err = expandTokens(v[i], r); err != nil {
				return nil, err
			}
		}
	case map[string]any:
		for k := range v {
			e, err := expandTokens(v[k], r)
			if err != nil {
				return nil, err
			}
			v[k] = e
		}
	}
	return v, nil
}
