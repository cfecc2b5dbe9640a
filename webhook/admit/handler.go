// Package admit serves the injection as a mutating admission webhook: it
// reads an AdmissionReview, asks the injector (package webhook) what to do
// with the pod, and answers with a JSON patch, a denial or leave to go on,
// with the warnings kubectl shows to whoever created the pod.
package admit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/tandem-mesh/tandem/webhook"
)

// Path is where the injector serves admission requests.
const Path = "/inject"

// maxRequestBytes bounds a request: two objects of at most 3 MiB (the API
// server's limit) and the review around them.
const maxRequestBytes = 7 << 20

// WarningPrefix starts every warning, so the user knows who speaks.
const WarningPrefix = "tandem: "

// NamespaceGetter looks up a pod's namespace.
type NamespaceGetter interface {
	GetNamespace(ctx context.Context, name string) (webhook.Namespace, error)
}

// ClientNamespaces reads namespaces' metadata with controller-runtime clients.
type ClientNamespaces struct {
	// Reader is usually the manager's cached client.
	Reader client.Reader
	// Live, when set, is asked when Reader does not know a namespace, which
	// happens to a namespace created an instant before its first pod.
	Live client.Reader
}

// GetNamespace implements NamespaceGetter.
func (c ClientNamespaces) GetNamespace(ctx context.Context, name string) (webhook.Namespace, error) {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	err := c.Reader.Get(ctx, client.ObjectKey{Name: name}, m)
	if apierrors.IsNotFound(err) && c.Live != nil {
		err = c.Live.Get(ctx, client.ObjectKey{Name: name}, m)
	}
	if err != nil {
		return webhook.Namespace{}, fmt.Errorf("reading namespace %q: %w", name, err)
	}
	return webhook.Namespace{Name: name, Labels: m.Labels, Annotations: m.Annotations}, nil
}

// Handler answers admission requests for pods with a JSON patch that adds
// the sidecars.
type Handler struct {
	Injector   *webhook.Injector
	Namespaces NamespaceGetter
	// Log receives one line per denial or error; the zero value discards.
	Log logr.Logger
}

// ServeHTTP reads an admission.k8s.io/v1 AdmissionReview and answers with
// one. A body that is not such a review gets HTTP 400 and a message (HTTP
// 405, 413 or 415 for the wrong method, size or media type): unlike
// controller-runtime's generic webhook, which answers 200 with the error
// inside a review, so a misrouted caller sees the failure plainly.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req, code, err := readReview(r)
	if err != nil {
		http.Error(w, err.Error(), code)
		observe(outcome{result: ResultError}, start)
		return
	}
	resp, o := h.admit(r.Context(), req)
	if err := writeReview(w, &req.AdmissionRequest, resp); err != nil {
		h.Log.Error(err, "writing the admission response failed", "uid", req.UID)
		o = outcome{result: ResultError}
	}
	observe(o, start)
}

// request is an AdmissionRequest whose object is decoded as a pod in the
// same pass as the review; the outer Object field shadows AdmissionRequest's.
type request struct {
	admissionv1.AdmissionRequest
	Object podObject `json:"object"`
}

// podObject is the object of a request decoded as a pod. Whether it is one
// is known only from the request's kind, so a failure to decode it is kept
// for later rather than failing the review.
type podObject struct {
	pod   *corev1.Pod
	shape shape
	// env holds each container's env list as JSON, decoded only when needed
	// (see admit).
	env []jsontext.Value
	err error
}

// UnmarshalJSONFrom decodes the object in place, without copying its JSON.
func (o *podObject) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	raw, err := dec.ReadValue()
	if err != nil {
		return err
	}
	o.pod, o.shape, o.env, o.err = decodePod(raw)
	return nil
}

// admit decides the answer to one request.
func (h *Handler) admit(ctx context.Context, req *request) (admission.Response, outcome) {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return admission.Allowed("not a Pod: nothing to inject"), outcome{ResultSkipped, ReasonNotPod}
	}
	if req.Operation != admissionv1.Create {
		return admission.Allowed("only pod creation is injected"), outcome{ResultSkipped, ReasonNotCreate}
	}
	pod, sh := req.Object.pod, req.Object.shape
	if err := req.Object.err; err != nil {
		return admission.Errored(http.StatusBadRequest, err), outcome{result: ResultError}
	}
	if pod == nil {
		return admission.Errored(http.StatusBadRequest, errors.New("the request has no object")), outcome{result: ResultError}
	}
	name := req.Namespace
	if name == "" {
		name = pod.Namespace
	}
	ns, err := h.Namespaces.GetNamespace(ctx, name)
	if err != nil {
		h.Log.Error(err, "namespace lookup failed", "namespace", name, "uid", req.UID)
		return admission.Errored(http.StatusInternalServerError, err), outcome{result: ResultError}
	}
	// Inject replaces what it changes, so this copy keeps the pod as sent.
	before := *pod
	res, err := h.Injector.Inject(pod, ns, webhook.Admission)
	// The containers' environment is still JSON: a pod can carry thousands
	// of variables, which only a template that extends the pod's containers
	// reads, or the check that refuses a pod. Then decode it and ask again.
	if req.Object.env != nil && (webhook.IsDenied(err) || res.Injected && len(res.Status.Env)+len(res.Status.VolumeMounts) > 0) {
		if err := decodeEnv(&before, req.Object.env); err != nil {
			return admission.Errored(http.StatusBadRequest, err), outcome{result: ResultError}
		}
		full := before
		pod = &full
		res, err = h.Injector.Inject(pod, ns, webhook.Admission)
	}
	switch {
	case webhook.IsDenied(err):
		h.Log.Info("denied", "namespace", name, "pod", pod.Name, "generateName", pod.GenerateName, "reason", err.Error())
		return admission.Denied(err.Error()), outcome{result: ResultDenied}
	case err != nil:
		h.Log.Error(err, "injection failed", "namespace", name, "pod", pod.Name, "generateName", pod.GenerateName)
		return admission.Errored(http.StatusInternalServerError, err), outcome{result: ResultError}
	case !res.Injected:
		resp := admission.Allowed(res.Skipped)
		// A pod its namespace or its label asked to inject, left alone:
		// its author hears why. A pod injected already (a second pass after
		// another webhook) is not news.
		if res.Selected && res.Reason != webhook.ReasonAlreadyInjected {
			resp.Warnings = []string{WarningPrefix + "pod not injected: " + res.Skipped}
		}
		return resp, outcome{ResultSkipped, string(res.Reason)}
	}
	ops, err := patch(sh, &before, pod, &res)
	if err != nil {
		h.Log.Error(err, "building the patch failed", "namespace", name, "pod", pod.Name, "generateName", pod.GenerateName)
		return admission.Errored(http.StatusInternalServerError, err), outcome{result: ResultError}
	}
	resp := admission.Patched("", ops...)
	for _, w := range res.Warnings {
		resp.Warnings = append(resp.Warnings, WarningPrefix+w)
	}
	return resp, outcome{result: ResultInjected}
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
// same bytes operates on. The containers' env lists are returned as JSON,
// nil when no container has one.
func decodePod(raw jsontext.Value) (*corev1.Pod, shape, []jsontext.Value, error) {
	if raw.Kind() == 'n' {
		return nil, shape{}, nil, errors.New("the request has no object")
	}
	var doc podDocument
	if err := jsonv2.Unmarshal(raw, &doc); err != nil {
		return nil, shape{}, nil, fmt.Errorf("decoding the pod: %w", err)
	}
	pod := &corev1.Pod{TypeMeta: doc.TypeMeta}
	if doc.Metadata != nil {
		pod.ObjectMeta = *doc.Metadata
	}
	var env []jsontext.Value
	if doc.Spec != nil {
		pod.Spec = doc.Spec.PodSpec
		pod.Spec.Containers = nil
		if doc.Spec.Containers != nil {
			pod.Spec.Containers = make([]corev1.Container, len(doc.Spec.Containers))
		}
		for i := range doc.Spec.Containers {
			pod.Spec.Containers[i] = doc.Spec.Containers[i].Container
			if e := doc.Spec.Containers[i].Env; e != nil {
				if env == nil {
					env = make([]jsontext.Value, len(doc.Spec.Containers))
				}
				env[i] = e
			}
		}
	}
	if doc.Status != nil {
		pod.Status = *doc.Status
	}
	return pod, shape{metadata: doc.Metadata != nil, spec: doc.Spec != nil}, env, nil
}

// decodeEnv decodes the containers' env lists into a copy of pod's containers.
func decodeEnv(pod *corev1.Pod, env []jsontext.Value) error {
	cs := slices.Clone(pod.Spec.Containers)
	for i, raw := range env {
		if raw == nil {
			continue
		}
		if err := jsonv2.Unmarshal(raw, &cs[i].Env); err != nil {
			return fmt.Errorf("decoding the pod: env of container %q: %w", cs[i].Name, err)
		}
	}
	pod.Spec.Containers = cs
	return nil
}

// readReview reads and decodes the AdmissionReview of an HTTP request; on
// failure it returns the HTTP status to answer with.
func readReview(r *http.Request) (*request, int, error) {
	if r.Method != http.MethodPost {
		return nil, http.StatusMethodNotAllowed, fmt.Errorf("method %s: an AdmissionReview must be POSTed", r.Method)
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("content type %q: an AdmissionReview must be application/json", r.Header.Get("Content-Type"))
	}
	if r.Body == nil {
		return nil, http.StatusBadRequest, errors.New("empty body: expected an admission.k8s.io/v1 AdmissionReview")
	}
	var body []byte
	var err error
	if n := r.ContentLength; n > 0 && n <= maxRequestBytes {
		// The API server says how long its reviews are: one allocation.
		body = make([]byte, n)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(io.LimitReader(r.Body, maxRequestBytes+1))
	}
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("reading the body: %w", err)
	}
	if len(body) > maxRequestBytes {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body larger than %d bytes", maxRequestBytes)
	}
	if len(body) == 0 {
		return nil, http.StatusBadRequest, errors.New("empty body: expected an admission.k8s.io/v1 AdmissionReview")
	}
	var review struct {
		metav1.TypeMeta `json:",inline"`
		Request         *request `json:"request,omitempty"`
	}
	if err := jsonv2.Unmarshal(body, &review); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("malformed AdmissionReview: %w", err)
	}
	if review.GroupVersionKind() != admissionv1.SchemeGroupVersion.WithKind("AdmissionReview") {
		return nil, http.StatusBadRequest, fmt.Errorf("got apiVersion %q kind %q; accepted: apiVersion admission.k8s.io/v1, kind AdmissionReview", review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return nil, http.StatusBadRequest, errors.New("the AdmissionReview has no request")
	}
	return review.Request, http.StatusOK, nil
}

// writeReview answers req with resp in an admission.k8s.io/v1 AdmissionReview.
func writeReview(w http.ResponseWriter, req *admissionv1.AdmissionRequest, resp admission.Response) error {
	if err := resp.Complete(admission.Request{AdmissionRequest: *req}); err != nil {
		resp = admission.Errored(http.StatusInternalServerError, err)
		resp.UID = req.UID
	}
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: &resp.AdmissionResponse,
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(&out)
}
