package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// authenticator admits a stream whose bearer token the API server accepts
// for the audience tandem-discovery, issued to a service account of a
// namespace with injection enabled (or to a pod that opted in). Tokens are
// checked locally where they can be (tokens.go), else by a TokenReview.
type authenticator struct {
	kube      kubernetes.Interface
	namespace func(ctx context.Context, name string) (*corev1.Namespace, error)
	local     *localTokens
	never     []string
	log       *slog.Logger
	refused   func(codes.Code) // counts a refusal
	// reviews counts TokenReviews sent, decidedLocally the tokens checked here.
	reviews, decidedLocally atomic.Int64
}

func newAuthenticator(o Options, local *localTokens, refused func(codes.Code)) *authenticator {
	if refused == nil {
		refused = func(codes.Code) {}
	}
	a := &authenticator{kube: o.Kube, namespace: o.Namespace, local: local, never: o.Refused, log: o.Logger, refused: refused}
	if a.namespace == nil {
		a.namespace = func(ctx context.Context, name string) (*corev1.Namespace, error) {
			return o.Kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		}
	}
	return a
}

// Extra fields of a TokenReview naming the pod a token is bound to.
const (
	podNameKey = "authentication.kubernetes.io/pod-name"
	podUIDKey  = "authentication.kubernetes.io/pod-uid"
)

// String is "namespace/pod", or "namespace/serviceaccount" without a pod.
func (id identity) String() string {
	if id.pod != "" {
		return id.namespace + "/" + id.pod
	}
	return id.namespace + "/" + id.serviceAccount
}

// check returns who the stream's token belongs to, or a gRPC status error
// (logged and counted) saying why it is refused.
func (a *authenticator) check(ctx context.Context) (identity, error) {
	id, err := a.admit(ctx)
	if err != nil {
		a.refused(status.Code(err))
	}
	return id, err
}

func (a *authenticator) admit(ctx context.Context) (identity, error) {
	from := ""
	if p, ok := peer.FromContext(ctx); ok {
		from = p.Addr.String()
	}
	refuse := func(code codes.Code, format string, args ...any) (identity, error) {
		msg := fmt.Sprintf(format, args...)
		a.log.Warn("stream refused", "peer", from, "code", code.String(), "reason", msg)
		return identity{}, status.Error(code, msg)
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
	id, err := a.local.verify(ctx, token, time.Now())
	switch {
	case err == nil:
		a.decidedLocally.Add(1)
	case errors.Is(err, errUndecided):
		var st *status.Status
		if id, st = a.review(ctx, token); st != nil {
			return refuse(st.Code(), "%s", st.Message())
		}
	default:
		a.decidedLocally.Add(1)
		return refuse(codes.Unauthenticated, "%v", err)
	}
	who := id.String()
	if slices.Contains(a.never, id.namespace) {
		return refuse(codes.PermissionDenied, "%s: namespace %s is never injected, so its pods are not served", who, id.namespace)
	}
	n, err := a.namespace(ctx, id.namespace)
	switch {
	case apierrors.IsNotFound(err):
		return refuse(codes.PermissionDenied, "%s: namespace %s does not exist", who, id.namespace)
	case err != nil:
		return refuse(codes.Unavailable, "%s: reading namespace %s: %v", who, id.namespace, err)
	}
	if n.Labels[wellknown.InjectLabel] == wellknown.InjectLabelEnabled {
		return id, nil
	}
	// A pod may opt in inside a namespace without the label.
	if id.pod != "" {
		labels := id.podLabels
		if labels == nil {
			if p, err := a.kube.CoreV1().Pods(id.namespace).Get(ctx, id.pod, metav1.GetOptions{}); err == nil {
				labels = p.Labels
			}
		}
		if labels[wellknown.InjectLabel] == "true" {
			return id, nil
		}
	}
	return refuse(codes.PermissionDenied, "%s: namespace %s does not have injection enabled (label %s=%s)",
		who, id.namespace, wellknown.InjectLabel, wellknown.InjectLabelEnabled)
}

// review asks the API server about a token it could not check locally.
func (a *authenticator) review(ctx context.Context, token string) (identity, *status.Status) {
	a.reviews.Add(1)
	tr, err := a.kube.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return identity{}, status.Newf(codes.Unavailable, "reviewing the token: %v", err)
	}
	st := tr.Status
	if !st.Authenticated {
		why := st.Error
		if why == "" {
			why = "not authenticated"
		}
		return identity{}, status.Newf(codes.Unauthenticated, "token refused (wanted audience %s, unexpired): %s", Audience, why)
	}
	if !slices.Contains(st.Audiences, Audience) {
		return identity{}, status.Newf(codes.Unauthenticated, "token is not for audience %s (its audiences: %v)", Audience, st.Audiences)
	}
	rest, ok := strings.CutPrefix(st.User.Username, "system:serviceaccount:")
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return identity{}, status.Newf(codes.PermissionDenied, "%s is not a service account; agents use their pod's service account", st.User.Username)
	}
	id := identity{namespace: ns, serviceAccount: sa}
	if pod := st.User.Extra[podNameKey]; len(pod) == 1 {
		id.pod = pod[0]
	}
	if uid := st.User.Extra[podUIDKey]; len(uid) == 1 {
		id.podUID = types.UID(uid[0])
	}
	return id, nil
}
