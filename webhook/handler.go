package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/tandem-mesh/tandem/templates"
)

// Path is where the injector serves admission requests.
const Path = "/inject"

// maxRequestBytes bounds a request: two objects of at most 3 MiB (the API
// server's limit) and the review around them.
const maxRequestBytes = 7 << 20

// NamespaceGetter looks up a pod's namespace.
type NamespaceGetter interface {
	GetNamespace(ctx context.Context, name string) (Namespace, error)
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
func (c ClientNamespaces) GetNamespace(ctx context.Context, name string) (Namespace, error) {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	err := c.Reader.Get(ctx, client.ObjectKey{Name: name}, m)
	if apierrors.IsNotFound(err) && c.Live != nil {
		err = c.Live.Get(ctx, client.ObjectKey{Name: name}, m)
	}
	if err != nil {
		return Namespace{}, fmt.Errorf("reading namespace %q: %w", name, err)
	}
	return Namespace{Name: name, Labels: m.Labels, Annotations: m.Annotations}, nil
}

// Handler answers admission requests for pods with a JSON patch that adds
// the sidecars. It is an admission.Handler and also serves HTTP itself.
type Handler struct {
	Injector   *Injector
	Namespaces NamespaceGetter
	// Log receives one line per denial or error; the zero value discards.
	Log logr.Logger
}

var _ admission.Handler = (*Handler)(nil)

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	resp, _ := h.handle(ctx, req)
	return resp
}

func (h *Handler) handle(ctx context.Context, req admission.Request) (admission.Response, string) {
	if resp, result, skip := notPodCreation(&req.AdmissionRequest); skip {
		return resp, result
	}
	d, err := decodePod(req.Object.Raw)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err), ResultError
	}
	return h.handlePod(ctx, &req.AdmissionRequest, d)
}

// notPodCreation answers requests about anything but creating a pod.
func notPodCreation(req *admissionv1.AdmissionRequest) (admission.Response, string, bool) {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return admission.Allowed("not a Pod: nothing to inject"), ResultSkipped, true
	}
	if req.Operation != admissionv1.Create {
		return admission.Allowed("only pod creation is injected"), ResultSkipped, true
	}
	return admission.Response{}, "", false
}

func (h *Handler) handlePod(ctx context.Context, req *admissionv1.AdmissionRequest, d decodedPod) (admission.Response, string) {
	pod := d.pod
	name := req.Namespace
	if name == "" {
		name = pod.Namespace
	}
	ns, err := h.Namespaces.GetNamespace(ctx, name)
	if err != nil {
		h.Log.Error(err, "namespace lookup failed", "namespace", name, "uid", req.UID)
		return admission.Errored(http.StatusInternalServerError, err), ResultError
	}
	before := partsOf(pod)
	// Env lists are decoded only for containers the sidecars change; the
	// pod itself only feeds the patch, so it may share the rendered sidecars.
	var badPod error
	res, err := h.Injector.inject(pod, ns, Admission, false, func(sc *templates.Sidecars) error {
		if touchesContainers(sc) {
			badPod = d.decodeEnv()
		}
		return badPod
	})
	switch {
	case badPod != nil:
		return admission.Errored(http.StatusBadRequest, badPod), ResultError
	case IsDenied(err):
		h.Log.Info("denied", "namespace", name, "pod", podName(pod), "reason", err.Error())
		return admission.Denied(err.Error()), ResultDenied
	case err != nil:
		h.Log.Error(err, "injection failed", "namespace", name, "pod", podName(pod))
		return admission.Errored(http.StatusInternalServerError, err), ResultError
	case !res.Injected:
		return admission.Allowed(res.Skipped), ResultSkipped
	}
	resp, err := patchResponse(d, before, res.rendered, res)
	if err != nil {
		h.Log.Error(err, "building the patch failed", "namespace", name, "pod", podName(pod))
		return admission.Errored(http.StatusInternalServerError, err), ResultError
	}
	return resp, ResultInjected
}

// ServeHTTP reads an admission.k8s.io/v1 AdmissionReview and answers with
// one. A body that is not such a review gets HTTP 400 and a message (HTTP
// 405, 413 or 415 for the wrong method, size or media type): unlike
// controller-runtime's generic webhook, which answers 200 with the error
// inside a review, so a misrouted caller sees the failure plainly.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, code, err := readBody(r)
	if err != nil {
		http.Error(w, err.Error(), code)
		observe(ResultError, start)
		return
	}
	var (
		req    *admissionv1.AdmissionRequest
		resp   admission.Response
		result string
	)
	// The pod is decoded with the review, in one pass over the bytes; any
	// other request, or one that fails so, takes the general path, which
	// also names what is wrong.
	var pr podReview
	if jsonv2.Unmarshal(body, &pr) == nil && pr.GroupVersionKind() == reviewGVK && pr.Request != nil {
		req = &pr.Request.AdmissionRequest
		var skip bool
		if resp, result, skip = notPodCreation(req); !skip {
			resp, result = h.handlePod(r.Context(), req, pr.Request.Object.decoded())
		}
	} else {
		review, code, err := decodeReview(body)
		if err != nil {
			http.Error(w, err.Error(), code)
			observe(ResultError, start)
			return
		}
		req = review.Request
		resp, result = h.handle(r.Context(), admission.Request{AdmissionRequest: *req})
	}
	if err := writeReview(w, req, resp); err != nil {
		h.Log.Error(err, "writing the admission response failed", "uid", req.UID)
		result = ResultError
	}
	observe(result, start)
}

var reviewGVK = admissionv1.SchemeGroupVersion.WithKind("AdmissionReview")

// podReview is an AdmissionReview whose object is decoded as a pod
// directly; the outer Object field shadows AdmissionRequest's.
type podReview struct {
	metav1.TypeMeta `json:",inline"`
	Request         *struct {
		admissionv1.AdmissionRequest
		Object podDocument `json:"object"`
	} `json:"request,omitempty"`
}

// readReview decodes the AdmissionReview of an HTTP request; on failure it
// returns the HTTP status to answer with.
func readReview(r *http.Request) (*admissionv1.AdmissionReview, int, error) {
	body, code, err := readBody(r)
	if err != nil {
		return nil, code, err
	}
	return decodeReview(body)
}

func readBody(r *http.Request) ([]byte, int, error) {
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
	return body, http.StatusOK, nil
}

func decodeReview(body []byte) (*admissionv1.AdmissionReview, int, error) {
	review := &admissionv1.AdmissionReview{}
	if err := jsonv2.Unmarshal(body, review); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("malformed AdmissionReview: %w", err)
	}
	if review.GroupVersionKind() != reviewGVK {
		return nil, http.StatusBadRequest, fmt.Errorf("got apiVersion %q kind %q; accepted: apiVersion admission.k8s.io/v1, kind AdmissionReview", review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return nil, http.StatusBadRequest, errors.New("the AdmissionReview has no request")
	}
	return review, http.StatusOK, nil
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
