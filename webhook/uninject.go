package webhook

import corev1 "k8s.io/api/core/v1"

// Uninject removes from pod everything its tandem.dev/status annotation
// lists, and the annotation: the pod as it was before injection. removed
// is false when the pod carries no status.
func (in *Injector) Uninject(pod *corev1.Pod) (removed bool, err error) {
	st, ok, err := ParseStatus(pod)
	if err != nil || !ok {
		return false, err
	}
	strip(pod, st)
	return true, nil
}
