package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ServingCerts writes what cert-manager writes into a certificate
// directory, a CA (ca.crt) and a serving certificate it signed for hosts
// (tls.crt, tls.key), and returns the CA's PEM.
func ServingCerts(t testing.TB, dir string, hosts ...string) []byte {
	t.Helper()
	ca, err := WriteServingCerts(dir, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// WriteServingCerts is ServingCerts for programs.
func WriteServingCerts(dir string, hosts ...string) ([]byte, error) {
	ca, err := NewCA()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return ca.PEM, ca.Issue(dir, now.Add(-time.Hour), now.Add(24*time.Hour), hosts...)
}

// CA signs serving certificates.
type CA struct {
	PEM  []byte
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a CA valid from an hour ago for ten years.
func NewCA() (*CA, error) {
	now := time.Now()
	key, pemBytes, cert, err := newCert(&x509.Certificate{
		Subject: pkix.Name{CommonName: "tandem-test-ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:  x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
	}, nil, nil)
	if err != nil {
		return nil, err
	}
	return &CA{PEM: pemBytes, cert: cert, key: key}, nil
}

// Issue writes what cert-manager writes into a certificate directory: the
// CA (ca.crt) and a serving certificate it signed for hosts, valid from
// notBefore to notAfter (tls.crt, tls.key).
func (ca *CA) Issue(dir string, notBefore, notAfter time.Time, hosts ...string) error {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore:   notBefore, NotAfter: notAfter,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	key, certPEM, _, err := newCert(tmpl, ca.cert, ca.key)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{
		"ca.crt":  ca.PEM,
		"tls.crt": certPEM,
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// newCert signs tmpl with parent (itself when nil).
func newCert(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, big.NewInt(1<<62)); err != nil {
		return nil, nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert, nil
}
