package discoverytest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

// ForgedToken signs, with the test API server's own service-account key, a
// token the API server would issue to ns/sa for audience, expiring at
// expiry: the way to get an expired token (TokenRequest gives at least ten
// minutes) or one of a service account that does not exist. It writes the
// token into a file and returns its path.
func ForgedToken(t testing.TB, env *envtest.Environment, cfg *rest.Config, ns, sa, audience string, expiry time.Time) string {
	t.Helper()
	uid := "00000000-0000-0000-0000-000000000000"
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if acct, err := kube.CoreV1().ServiceAccounts(ns).Get(context.Background(), sa, metav1.GetOptions{}); err == nil {
		uid = string(acct.UID)
	} else if !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	issued := expiry.Add(-time.Hour)
	claims := map[string]any{
		"iss": strings.TrimSuffix(cfg.Host, "/") + "/", // as the API server names itself
		"sub": "system:serviceaccount:" + ns + ":" + sa,
		"aud": []string{audience},
		"exp": jwt.NewNumericDate(expiry),
		"iat": jwt.NewNumericDate(issued),
		"nbf": jwt.NewNumericDate(issued),
		"kubernetes.io": map[string]any{
			"namespace":      ns,
			"serviceaccount": map[string]string{"name": sa, "uid": uid},
		},
	}
	token := testenv.SignToken(t, env, claims)
	path := filepath.Join(t.TempDir(), "forged-token")
	if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
