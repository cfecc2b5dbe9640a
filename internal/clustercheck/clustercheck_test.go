package clustercheck

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

func cert(t *testing.T, cn string, ca bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: ca, BasicConstraintsValid: true}
	if ca {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// TestSignedBy: a leaf is recognised as issued by a root directly or
// through an intermediate it was served with, and not by another root.
func TestSignedBy(t *testing.T) {
	root, rootKey := cert(t, "root", true, nil, nil)
	other, _ := cert(t, "other", true, nil, nil)
	inter, interKey := cert(t, "intermediate", true, root, rootKey)
	direct, _ := cert(t, "direct", false, root, rootKey)
	chained, _ := cert(t, "chained", false, inter, interKey)
	for _, tc := range []struct {
		name          string
		leaf          *x509.Certificate
		intermediates []*x509.Certificate
		roots         []*x509.Certificate
		want          bool
	}{
		{"direct", direct, nil, []*x509.Certificate{root}, true},
		{"among several roots", direct, nil, []*x509.Certificate{other, root}, true},
		{"another root", direct, nil, []*x509.Certificate{other}, false},
		{"through an intermediate", chained, []*x509.Certificate{inter}, []*x509.Certificate{root}, true},
		{"intermediate not served", chained, nil, []*x509.Certificate{root}, false},
	} {
		if got := signedBy(tc.leaf, tc.intermediates, tc.roots); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	bundle := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Raw}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})...)
	if got := parseCerts(append([]byte("junk\n"), bundle...)); len(got) != 2 || got[1].Subject.CommonName != "root" {
		t.Errorf("parseCerts of a bundle of two: %d certificates", len(got))
	}
}
