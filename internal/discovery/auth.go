package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// authenticator admits a stream whose bearer token the API server accepts
// for the audience tandem-discovery, issued to a service account of a
// namespace with injection enabled (or to a pod that opted in).
type authenticator struct {
	kube      kubernetes.Interface
	namespace func(ctx context.Context, name string) (*corev1.Namespace, error)
	never     []string
	log       *slog.Logger
	refused   func(codes.Code) // counts a refusal
}

func newAuthenticator(o Options, refused func(codes.Code)) *authenticator {
	a := &authenticator{kube: o.Kube, namespace: o.Namespace, never: o.Refused, log: o.Logger, refused: refused}
	if a.namespace == nil {
		a.namespace = func(ctx context.Context, name string) (*corev1.Namespace, error) {
			return o.Kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		}
	}
	return a
}

// identity is who a stream belongs to, from its token.
type identity struct {
	namespace, serviceAccount string
	pod                       string // empty for a token bound to no pod
}

// String is "namespace/pod", or "namespace/serviceaccount" without a pod.
func (i identity) String() string {
	if i.pod != "" {
		return i.namespace + "/" + i.pod
	}
	return i.namespace + "/" + i.serviceAccount
}

// podNameKey is the extra field of a TokenReview naming the pod a token is
// bound to.
const podNameKey = "authentication.kubernetes.io/pod-name"

// check returns who the stream's token belongs to, or a gRPC status error
// (logged) saying why it is refused.
func (a *authenticator) check(ctx context.Context) (identity, error) {
	var who identity
	err := a.review(ctx, &who)
	if err != nil {
		a.refused(status.Code(err))
	}
	return who, err
}

func (a *authenticator) review(ctx context.Context, id *identity) error {
	from := ""
	if p, ok := peer.FromContext(ctx); ok {
		from = p.Addr.String()
	}
	refuse := func(code codes.Code, format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		a.log.Warn("stream refused", "peer", from, "code", code.String(), "reason", msg)
		return status.Error(code, msg)
	}
	token := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, v := range md.Get("authorization") {
			if t, ok := strings.CutPrefix(v, "Bearer "); ok {
				token = strings.TrimSpace(t)
			}
		}
	}
	if token == "" {
		return refuse(codes.Unauthenticated, "no bearer token: send a service-account token of audience %s", Audience)
	}
	tr, err := a.kube.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return refuse(codes.Unavailable, "reviewing the token: %v", err)
	}
	st := tr.Status
	if !st.Authenticated {
		why := st.Error
		if why == "" {
			why = "not authenticated"
		}
		return refuse(codes.Unauthenticated, "token refused (wanted audience %s, unexpired): %s", Audience, why)
	}
	if !slices.Contains(st.Audiences, Audience) {
		return refuse(codes.Unauthenticated, "token is not for audience %s (its audiences: %v)", Audience, st.Audiences)
	}
	rest, ok := strings.CutPrefix(st.User.Username, "system:serviceaccount:")
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return refuse(codes.PermissionDenied, "%s is not a service account; agents use their pod's service account", st.User.Username)
	}
	*id = identity{namespace: ns, serviceAccount: sa}
	if pod := st.User.Extra[podNameKey]; len(pod) == 1 {
		id.pod = pod[0]
	}
	who := id.String()
	if slices.Contains(a.never, ns) {
		return refuse(codes.PermissionDenied, "%s: namespace %s is never injected, so its pods are not served", who, ns)
	}
	n, err := a.namespace(ctx, ns)
	switch {
	case apierrors.IsNotFound(err):
		return refuse(codes.PermissionDenied, "%s: namespace %s does not exist", who, ns)
	case err != nil:
		return refuse(codes.Unavailable, "%s: reading namespace %s: %v", who, ns, err)
	}
	if n.Labels[wellknown.InjectLabel] == wellknown.InjectLabelEnabled {
		return nil
	}
	// A pod may opt in inside a namespace without the label.
	if pod := st.User.Extra[podNameKey]; len(pod) == 1 {
		p, err := a.kube.CoreV1().Pods(ns).Get(ctx, pod[0], metav1.GetOptions{})
		if err == nil && p.Labels[wellknown.InjectLabel] == "true" {
			return nil
		}
	}
	return refuse(codes.PermissionDenied, "%s: namespace %s does not have injection enabled (label %s=%s)",
		who, ns, wellknown.InjectLabel, wellknown.InjectLabelEnabled)
}
