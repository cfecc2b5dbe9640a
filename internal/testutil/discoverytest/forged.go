package discoverytest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ForgedToken signs, with the test API server's own service-account key, a
// token the API server would issue to ns/sa for audience, expiring at
// expiry: the way to get an expired token (TokenRequest gives at least ten
// minutes) or one of a service account that does not exist. It writes the
// token into a file and returns its path.
func ForgedToken(t testing.TB, env *envtest.Environment, cfg *rest.Config, ns, sa, audience string, expiry time.Time) string {
	t.Helper()
	dir := env.ControlPlane.APIServer.CertDir
	b, err := os.ReadFile(filepath.Join(dir, "sa-signer.key"))
	if err != nil {
		t.Fatalf("the API server's service-account key: %v", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("sa-signer.key holds no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		if key, err = x509.ParseECPrivateKey(block.Bytes); err != nil {
			t.Fatalf("sa-signer.key: %v", err)
		}
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		t.Fatalf("sa-signer.key holds a %T, not a signing key", key)
	}
	der, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	var alg jose.SignatureAlgorithm
	switch key.(type) {
	case *ecdsa.PrivateKey:
		alg = jose.ES256
	case *rsa.PrivateKey:
		alg = jose.RS256
	default:
		t.Fatalf("sa-signer.key holds a %T key", key)
	}
	// The API server picks the verifying key by this ID.
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", base64.RawURLEncoding.EncodeToString(sum[:]))
	js, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
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
	token, err := jwt.Signed(js).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "forged-token")
	if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
