package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// SignToken signs claims with the test API server's own service-account
// key, as the API server signs the tokens it issues: the way to make tokens
// it would not issue on demand (expired, for a service account that does
// not exist, bound to a pod that is gone).
func SignToken(t testing.TB, env *envtest.Environment, claims map[string]any) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.ControlPlane.APIServer.CertDir, "sa-signer.key"))
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
	token, err := jwt.Signed(js).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}
