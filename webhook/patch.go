package webhook

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"
)

// The patch is computed over the parts of the pod the injection touched,
// taken from the request's own bytes on one side and the mutated pod on the
// other. Paths in those partial documents are the paths in the whole pod, so
// the patch applies to the original object; and the containers of a pod the
// injection did not touch (its bulk, for a pod with thousands of env
// variables) are neither encoded again nor compared.

type rawSections struct {
	Metadata *struct {
		Annotations json.RawMessage `json:"annotations,omitempty"`
	} `json:"metadata,omitempty"`
	Spec *struct {
		InitContainers json.RawMessage `json:"initContainers,omitempty"`
		Containers     json.RawMessage `json:"containers,omitempty"`
		Volumes        json.RawMessage `json:"volumes,omitempty"`
	} `json:"spec,omitempty"`
}

// patchResponse is the admission response that turns raw into pod.
func patchResponse(raw []byte, pod *corev1.Pod, ch changes) (admission.Response, error) {
	var orig rawSections
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &orig); err != nil {
		return admission.Response{}, fmt.Errorf("reading the pod's metadata and spec: %w", err)
	}
	cur := rawSections{}
	// Keep in each document only the touched parts; the same shape on both
	// sides, so an absent part means "absent in the pod".
	if orig.Metadata != nil && !ch.annotations {
		orig.Metadata = nil
	}
	if orig.Spec != nil {
		if !ch.initContainers {
			orig.Spec.InitContainers = nil
		}
		if !ch.containers {
			orig.Spec.Containers = nil
		}
		if !ch.volumes {
			orig.Spec.Volumes = nil
		}
	}
	var err error
	if ch.annotations {
		cur.Metadata = &struct {
			Annotations json.RawMessage `json:"annotations,omitempty"`
		}{}
		if len(pod.Annotations) > 0 {
			if cur.Metadata.Annotations, err = json.Marshal(pod.Annotations); err != nil {
				return admission.Response{}, err
			}
		}
	}
	cur.Spec = &struct {
		InitContainers json.RawMessage `json:"initContainers,omitempty"`
		Containers     json.RawMessage `json:"containers,omitempty"`
		Volumes        json.RawMessage `json:"volumes,omitempty"`
	}{}
	// The omitempty rules of corev1.PodSpec: initContainers and volumes are
	// left out when empty, containers is always written.
	if ch.initContainers && len(pod.Spec.InitContainers) > 0 {
		if cur.Spec.InitContainers, err = json.Marshal(pod.Spec.InitContainers); err != nil {
			return admission.Response{}, err
		}
	}
	if ch.containers {
		if cur.Spec.Containers, err = json.Marshal(pod.Spec.Containers); err != nil {
			return admission.Response{}, err
		}
	}
	if ch.volumes && len(pod.Spec.Volumes) > 0 {
		if cur.Spec.Volumes, err = json.Marshal(pod.Spec.Volumes); err != nil {
			return admission.Response{}, err
		}
	}
	if orig.Spec == nil && !ch.initContainers && !ch.containers && !ch.volumes {
		cur.Spec = nil
	}
	a, err := json.Marshal(orig)
	if err != nil {
		return admission.Response{}, err
	}
	b, err := json.Marshal(cur)
	if err != nil {
		return admission.Response{}, err
	}
	resp := admission.PatchResponseFromRaw(a, b)
	if !resp.Allowed {
		return admission.Response{}, fmt.Errorf("computing the patch: %s", resp.Result.Message)
	}
	return resp, nil
}
