package discovery

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// The API server's answers to token reviews are played by a fake here for
// the cases a real one cannot be made to give on demand (an expired token
// needs ten minutes; a namespace cannot vanish under a live service
// account without the namespace controller). The real API server's
// refusals are tested with the agent (internal/agent).
func TestAuthenticatorRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		token  string
		review authnv1.TokenReviewStatus
		code   codes.Code
		msg    string
	}{
		{"NoToken", "", authnv1.TokenReviewStatus{}, codes.Unauthenticated, "no bearer token"},
		{"Expired", "t", authnv1.TokenReviewStatus{Error: "[invalid bearer token, service account token has expired]"},
			codes.Unauthenticated, "service account token has expired"},
		{"OtherAudience", "t", authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"api"},
			User: authnv1.UserInfo{Username: "system:serviceaccount:shop:app"}}, codes.Unauthenticated, "not for audience tandem-discovery"},
		{"NotAServiceAccount", "t", authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{Audience},
			User: authnv1.UserInfo{Username: "alice"}}, codes.PermissionDenied, "alice is not a service account"},
		{"UnknownNamespace", "t", authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{Audience},
			User: authnv1.UserInfo{Username: "system:serviceaccount:gone:app"}}, codes.PermissionDenied, "namespace gone does not exist"},
		{"NotEnabled", "t", authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{Audience},
			User: authnv1.UserInfo{Username: "system:serviceaccount:plain:app"}}, codes.PermissionDenied, "does not have injection enabled"},
		{"Refused", "t", authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{Audience},
			User: authnv1.UserInfo{Username: "system:serviceaccount:tandem-system:app"}}, codes.PermissionDenied, "never injected"},
		{"Admitted", "t", authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{Audience},
			User: authnv1.UserInfo{Username: "system:serviceaccount:shop:app"}}, codes.OK, ""},
		{"PodOptedIn", "t", authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{Audience},
			User: authnv1.UserInfo{Username: "system:serviceaccount:plain:app", Extra: map[string]authnv1.ExtraValue{podNameKey: {"opted"}}}}, codes.OK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube := fake.NewClientset(
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}},
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tandem-system", Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}},
				&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "plain", Name: "opted", Labels: map[string]string{wellknown.InjectLabel: "true"}}},
			)
			var asked *authnv1.TokenReview
			kube.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
				asked = a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
				return true, &authnv1.TokenReview{Status: tc.review}, nil
			})
			var logs strings.Builder
			var counted []codes.Code
			auth := newAuthenticator(Options{Kube: kube, Refused: []string{"tandem-system"}, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, nil,
				func(c codes.Code) { counted = append(counted, c) })
			ctx := context.Background()
			if tc.token != "" {
				ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+tc.token))
			}
			_, err := auth.check(ctx)
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("check = %v, want %v containing %q", err, tc.code, tc.msg)
			}
			if tc.code != codes.OK && !strings.Contains(logs.String(), "stream refused") {
				t.Errorf("refusal not logged: %q", logs.String())
			}
			if want := []codes.Code{tc.code}; tc.code != codes.OK && !slices.Equal(counted, want) || tc.code == codes.OK && len(counted) > 0 {
				t.Errorf("refusals counted %v, want %v", counted, want)
			}
			if tc.token != "" && (asked == nil || asked.Spec.Token != tc.token || len(asked.Spec.Audiences) != 1 || asked.Spec.Audiences[0] != Audience) {
				t.Errorf("token review asked %+v, want the token for audience %s", asked, Audience)
			}
		})
	}
}
