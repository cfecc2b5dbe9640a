package discovery

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	kmetadata "k8s.io/client-go/metadata"

	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Tokens the real API server issues (and forged ones signed with its key)
// are decided without a TokenReview whenever the check can tell, and the
// answer is the API server's: the same admissions, the same refusals.
func TestTokensCheckedLocally(t *testing.T) {
	env, cfg := testenv.Start(t, testenv.Options{})
	kube := kubernetes.NewForConfigOrDie(cfg)
	md := kmetadata.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{wellknown.InjectLabel: wellknown.InjectLabelEnabled}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
	} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := kube.CoreV1().ServiceAccounts(ns.Name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	newPod := func(ns, name string, labels map[string]string) *corev1.Pod {
		t.Helper()
		p, err := kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	podToken := func(p *corev1.Pod, audience string) string {
		t.Helper()
		tr, err := kube.CoreV1().ServiceAccounts(p.Namespace).CreateToken(ctx, "app", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
			Audiences:      []string{audience},
			BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	shopPod := newPod("shop", "app", nil)
	opted := newPod("plain", "opted", map[string]string{wellknown.InjectLabel: "true"})
	notOpted := newPod("plain", "other", nil)

	var mu sync.Mutex
	var gone []types.UID
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	local, err := newLocalTokens(kube.CoreV1().RESTClient(), md, log, func(uid types.UID) { mu.Lock(); gone = append(gone, uid); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	go local.run(ctx)
	poll.Until(t, 30*time.Second, "the signing keys and the pods' metadata", func() bool {
		return local.keys.Load() != nil && local.pods.HasSynced() && local.accounts.HasSynced()
	})
	auth := newAuthenticator(Options{Kube: kube, Refused: []string{"tandem-system"}, Logger: log}, local, nil)
	check := func(token string) (identity, error) {
		return auth.check(metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token)))
	}
	// expect checks one token and how it was decided.
	expect := func(name, token string, code codes.Code, msg string, reviewed bool) identity {
		t.Helper()
		before := auth.reviews.Load()
		id, err := check(token)
		if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
			t.Errorf("%s: %v, want %v containing %q", name, err, code, msg)
		}
		if got := auth.reviews.Load() > before; got != reviewed {
			t.Errorf("%s: reviewed by the API server: %v, want %v", name, got, reviewed)
		}
		return id
	}

	id := expect("a pod's token in a labeled namespace", podToken(shopPod, Audience), codes.OK, "", false)
	if id.String() != "shop/app" || id.podUID != shopPod.UID {
		t.Errorf("identity %+v, want pod shop/app of UID %s", id, shopPod.UID)
	}
	expect("a pod that opted in", podToken(opted, Audience), codes.OK, "", false)
	expect("a pod that did not opt in", podToken(notOpted, Audience), codes.PermissionDenied, "does not have injection enabled", false)
	expect("another audience", podToken(shopPod, "api"), codes.Unauthenticated, "wanted audience tandem-discovery", false)

	// Forged with the API server's key: expired, and bound to a pod that
	// was replaced by another of the same name.
	claims := func(p *corev1.Pod, uid types.UID, expiry time.Time) map[string]any {
		acct, err := kube.CoreV1().ServiceAccounts(p.Namespace).Get(ctx, "app", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{
			"iss": local.keys.Load().issuer,
			"sub": "system:serviceaccount:" + p.Namespace + ":app",
			"aud": []string{Audience},
			"exp": jwt.NewNumericDate(expiry), "iat": jwt.NewNumericDate(expiry.Add(-time.Hour)), "nbf": jwt.NewNumericDate(expiry.Add(-time.Hour)),
			"kubernetes.io": map[string]any{
				"namespace":      p.Namespace,
				"serviceaccount": map[string]string{"name": "app", "uid": string(acct.UID)},
				"pod":            map[string]string{"name": p.Name, "uid": string(uid)},
			},
		}
	}
	expect("an expired token", testenv.SignToken(t, env, claims(shopPod, shopPod.UID, time.Now().Add(-time.Minute))), codes.Unauthenticated, "expired", false)
	valid := testenv.SignToken(t, env, claims(shopPod, shopPod.UID, time.Now().Add(time.Hour)))
	expect("a forged token the API server would accept", valid, codes.OK, "", false)

	// Not bound to a pod: only the API server can tell.
	tr, err := kube.CoreV1().ServiceAccounts("shop").CreateToken(ctx, "app", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{Audience}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	expect("a token bound to no pod", tr.Status.Token, codes.OK, "", true)

	// The pod replaced under the same name: refused without asking; its
	// deletion is reported, so its streams end.
	if err := kube.CoreV1().Pods("shop").Delete(ctx, "app", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the deletion of shop/app to be seen", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(gone) == 1 && gone[0] == shopPod.UID
	})
	// Gone: the API server is asked, and refuses.
	expect("the token of a deleted pod", valid, codes.Unauthenticated, "", true)
	newPod("shop", "app", nil)
	poll.Until(t, 10*time.Second, "the new shop/app to be seen", func() bool {
		_, ok := local.podLabels("shop", "app")
		return ok
	})
	expect("the token of a pod replaced by another of its name", valid, codes.Unauthenticated, "deleted since it was issued", false)
}
