package nsmsim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// CA is the simulator's development certificate authority: a root that
// stands in for the AWS Nitro Enclaves root, and the regional, zonal and
// instance intermediates below it, all ECDSA P-384 with AWS's profile.
// Documents signed under it verify only against its root, never against
// AWS's.
type CA struct {
	root    *x509.Certificate
	rootKey *ecdsa.PrivateKey

	mu        sync.Mutex
	chain     []*x509.Certificate // regional, zonal, instance
	issuerKey *ecdsa.PrivateKey   // the instance CA's key, which signs leaves
}

// Files in a CA directory. root.pem is what verifiers are given; root.key
// is the development root's private key, which a development machine keeps
// so that documents stay verifiable across restarts. It is a test
// authority's key, trusted by nothing but explicitly configured verifiers.
const (
	RootCertFile = "root.pem"
	RootKeyFile  = "root.key"
)

// NewCA creates a CA in memory.
func NewCA(now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{"Amazon"}, OrganizationalUnit: []string{"AWS"}, CommonName: "dev.nitro-enclaves (enclave-signer simulator)"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(30, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create simulator root: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{root: root, rootKey: key}, nil
}

// LoadOrCreateCA loads the CA kept in dir, creating dir and a new CA on
// first use.
func LoadOrCreateCA(dir string, now time.Time) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, RootCertFile))
	if errors.Is(err, fs.ErrNotExist) {
		ca, err := NewCA(now)
		if err != nil {
			return nil, err
		}
		if err := ca.save(dir); err != nil {
			return nil, fmt.Errorf("save simulator CA in %s: %w", dir, err)
		}
		return ca, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load simulator CA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, RootKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load simulator CA: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || cb.Type != "CERTIFICATE" || kb == nil || kb.Type != "EC PRIVATE KEY" {
		return nil, fmt.Errorf("load simulator CA from %s: want a CERTIFICATE in %s and an EC PRIVATE KEY in %s", dir, RootCertFile, RootKeyFile)
	}
	root, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load simulator CA: %s: %w", RootCertFile, err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load simulator CA: %s: %w", RootKeyFile, err)
	}
	if !key.PublicKey.Equal(root.PublicKey) {
		return nil, fmt.Errorf("load simulator CA from %s: %s does not match %s", dir, RootKeyFile, RootCertFile)
	}
	return &CA{root: root, rootKey: key}, nil
}

func (ca *CA) save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(ca.rootKey)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, RootKeyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, RootCertFile), ca.RootPEM(), 0o644)
}

func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

// Root returns the root certificate.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// RootPEM returns the root certificate in PEM form.
func (ca *CA) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw})
}

// Roots returns a pool holding only this CA's root.
func (ca *CA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.root)
	return p
}

// issuer returns the intermediates (root first, then regional, zonal,
// instance) and the key that signs leaves, renewing the intermediates when
// the instance CA would expire before a leaf issued at now.
func (ca *CA) issuer(now time.Time, region, instanceID string) ([]*x509.Certificate, *ecdsa.PrivateKey, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if len(ca.chain) == 0 || now.Add(leafLifetime).After(ca.chain[2].NotAfter) || now.Before(ca.chain[2].NotBefore) {
		if err := ca.renew(now, region, instanceID); err != nil {
			return nil, nil, err
		}
	}
	return append([]*x509.Certificate{ca.root}, ca.chain...), ca.issuerKey, nil
}

// renew issues the three intermediates with AWS's lifetimes and path
// lengths (regional 20 days pathlen 2, zonal 6 days pathlen 1, instance
// 1 day pathlen 0, the last allowed to sign certificates only).
func (ca *CA) renew(now time.Time, region, instanceID string) error {
	parent, parentKey := ca.root, ca.rootKey
	levels := []struct {
		cn       string
		life     time.Duration
		pathLen  int
		keyUsage x509.KeyUsage
	}{
		{fmt.Sprintf("%x.%s.dev.nitro-enclaves", randomBytes(8), region), 20 * 24 * time.Hour, 2, x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign},
		{fmt.Sprintf("%x.zonal.%s.dev.nitro-enclaves", randomBytes(8), region), 6 * 24 * time.Hour, 1, x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign},
		{fmt.Sprintf("%s.%s.dev.nitro-enclaves", instanceID, region), 24 * time.Hour, 0, x509.KeyUsageCertSign},
	}
	var chain []*x509.Certificate
	for _, l := range levels {
		key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber:          randomSerial(),
			Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{"Amazon"}, OrganizationalUnit: []string{"AWS"}, CommonName: l.cn},
			NotBefore:             now.Add(-time.Minute),
			NotAfter:              now.Add(l.life),
			IsCA:                  true,
			BasicConstraintsValid: true,
			MaxPathLen:            l.pathLen,
			MaxPathLenZero:        l.pathLen == 0,
			KeyUsage:              l.keyUsage,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			return fmt.Errorf("issue simulator intermediate %s: %w", l.cn, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		chain = append(chain, cert)
		parent, parentKey = cert, key
	}
	ca.chain, ca.issuerKey = chain, parentKey
	return nil
}

func randomSerial() *big.Int {
	return new(big.Int).SetBytes(append([]byte{0x01}, randomBytes(15)...))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// IssueTLSCertificate issues a TLS server certificate for dnsNames under the
// development root, valid from now for 30 days. signer dev uses it for the
// KMS emulator's TLS front (kms.<region>.amazonaws.com), so that signerd
// reaches the emulator through its production TLS path with the root as
// its one extra trusted CA (--kms-ca).
func (ca *CA) IssueTLSCertificate(dnsNames []string, now time.Time) (tls.Certificate, error) {
	if len(dnsNames) == 0 {
		return tls.Certificate{}, errors.New("issue TLS certificate: no DNS names")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: dnsNames[0]},
		DNSNames:              dnsNames,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, &key.PublicKey, ca.rootKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue TLS certificate for %v: %w", dnsNames, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
