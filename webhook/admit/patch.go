package admit

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/webhook"
)

// The admission patch turns the pod the API server sent into the injected
// one, and touches nothing else: FuzzInject applies it to the request's
// bytes, compares the result with the injected pod, and checks that the
// operations stay clear of the pod's own fields.
//
//   - Only the parts the injection changed (Result.Changed) are compared.
//   - Sidecars are inserted where they go ("add" at an index), so the pod's
//     own containers and volumes stay as they were written, unknown fields
//     included, instead of being shifted by a diff index by index.
//   - A container of the pod's own that the template changes (the proxyless
//     template's environment and mount) is compared with jsonpatch on its
//     own, which appends to its lists.

// shape is what the request's pod has at the top: a patch cannot add a
// member to an object that is absent.
type shape struct {
	metadata, spec bool
}

// patch returns the operations that turn before, the pod as decoded from
// the request, into after, which res describes.
func patch(sh shape, before, after *corev1.Pod, res *webhook.Result) ([]jsonpatch.Operation, error) {
	var ops []jsonpatch.Operation
	ch := res.Changed
	if ch.Annotations {
		if !sh.metadata {
			ops = append(ops, jsonpatch.NewOperation("add", "/metadata", map[string]any{}))
		}
		var err error
		if ops, err = diff(ops, "/metadata", annotationsDoc{before.Annotations}, annotationsDoc{after.Annotations}); err != nil {
			return nil, err
		}
	}
	if !sh.spec && (ch.InitContainers || ch.Containers || ch.Volumes) {
		ops = append(ops, jsonpatch.NewOperation("add", "/spec", map[string]any{}))
	}
	// The template's environment and mounts go to every container of the pod's own.
	app := len(res.Status.Env)+len(res.Status.VolumeMounts) > 0
	added := slices.Concat(res.Status.InitContainers, res.Status.Containers)
	var err error
	if ch.InitContainers {
		if ops, err = listOps(ops, "/spec/initContainers", before.Spec.InitContainers, after.Spec.InitContainers, containerName, added, app); err != nil {
			return nil, err
		}
	}
	if ch.Containers {
		if ops, err = listOps(ops, "/spec/containers", before.Spec.Containers, after.Spec.Containers, containerName, added, app); err != nil {
			return nil, err
		}
	}
	if ch.Volumes {
		if ops, err = listOps(ops, "/spec/volumes", before.Spec.Volumes, after.Spec.Volumes, volumeName, res.Status.Volumes, false); err != nil {
			return nil, err
		}
	}
	return ops, nil
}

type annotationsDoc struct {
	Annotations map[string]string `json:"annotations,omitempty"`
}

func containerName(c *corev1.Container) string { return c.Name }
func volumeName(v *corev1.Volume) string       { return v.Name }

// listOps appends the operations that turn the list before into after:
// after is before with the items named in added inserted, and, when
// changed, each of before's items changed in place.
func listOps[T any](ops []jsonpatch.Operation, path string, before, after []T, name func(*T) string, added []string, changed bool) ([]jsonpatch.Operation, error) {
	if len(before) == 0 {
		// "add" sets an absent, null or empty list alike.
		return append(ops, jsonpatch.NewOperation("add", path, after)), nil
	}
	j := 0
	for i := range after {
		item := &after[i]
		at := path + "/" + strconv.Itoa(i)
		if slices.Contains(added, name(item)) {
			ops = append(ops, jsonpatch.NewOperation("add", at, item))
			continue
		}
		if j == len(before) || name(&before[j]) != name(item) {
			return nil, fmt.Errorf("the injection reordered %s, which its patch cannot express", path)
		}
		if changed {
			var err error
			if ops, err = diff(ops, at, &before[j], item); err != nil {
				return nil, err
			}
		}
		j++
	}
	if j != len(before) {
		return nil, fmt.Errorf("the injection removed items of %s, which its patch cannot express", path)
	}
	return ops, nil
}

// diff appends jsonpatch's operations from a to b, both encoded as JSON, at path.
func diff(ops []jsonpatch.Operation, path string, a, b any) ([]jsonpatch.Operation, error) {
	aj, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	bj, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	d, err := jsonpatch.CreatePatch(aj, bj)
	if err != nil {
		return nil, fmt.Errorf("computing the patch of %s: %w", path, err)
	}
	for _, op := range d {
		op.Path = path + op.Path
		ops = append(ops, op)
	}
	return ops, nil
}
