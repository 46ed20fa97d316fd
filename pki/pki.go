// Package pki is the cluster's certificate authority: one CA per cluster,
// and one certificate per PostgreSQL and etcd node, whose names and
// addresses the plan fixes. It is pure (no AWS): package certs stores what
// it issues in Secrets Manager, on AWS (the deploy's custom resource) and
// locally (against the emulator) alike.
//
// Keys are ECDSA P-256, which OpenSSL (PostgreSQL, HAProxy), Python's ssl
// (Patroni) and Go (etcd, the app, the health checker) all accept. Every
// PEM text here is certificates first, then at most one "PRIVATE KEY"
// (PKCS #8), so `openssl x509` and `openssl pkey` split it.
package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pgha/pgha/cluster"
)

// CASecret holds the CA's certificate and key, in the primary region; only
// the issuer reads it.
func CASecret(c cluster.Config) string { return c.Name + "/tls/ca-key" }

// TrustSecret holds the CA certificates clients trust (PEM), in every
// region of the plan.
func TrustSecret(c cluster.Config) string { return c.Name + "/tls/ca" }

// NodeSecret holds node's certificate and key (PEM), in the node's region.
func NodeSecret(c cluster.Config, node string) string { return c.Name + "/tls/" + node }

// Validity periods. A node certificate is renewed (Renew) when less than
// RenewBefore of it is left; the issuer runs at every deploy and every day.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	NodeValidity = 365 * 24 * time.Hour
	RenewBefore  = 30 * 24 * time.Hour
)

// ErrNoKey means a PEM text holds no private key.
var ErrNoKey = errors.New("no PRIVATE KEY block")

// CA is the cluster's certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA creates a CA for cluster name, valid from now (less an hour of
// clock skew) for CAValidity.
func NewCA(name string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "pgha " + name + " CA", Organization: []string{"pgha"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// PEM is the CA's certificate and key, as its secret holds them.
func (ca *CA) PEM() (string, error) { return encode([]*x509.Certificate{ca.Cert}, ca.Key) }

// CertPEM is the CA's certificate alone: what clients trust.
func (ca *CA) CertPEM() string { s, _ := encode([]*x509.Certificate{ca.Cert}, nil); return s }

// ParseCA reads what PEM wrote.
func ParseCA(text string) (*CA, error) {
	certs, key, err := Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parse CA: %w", err)
	}
	if key == nil {
		return nil, fmt.Errorf("parse CA: %w", ErrNoKey)
	}
	if len(certs) != 1 || !certs[0].IsCA {
		return nil, errors.New("parse CA: want exactly one CA certificate")
	}
	if !key.PublicKey.Equal(certs[0].PublicKey) {
		return nil, errors.New("parse CA: the key is not the certificate's")
	}
	return &CA{Cert: certs[0], Key: key}, nil
}

// Identity is what one certificate names: the node (its common name and
// first DNS name) and every address a client may reach it at.
type Identity struct {
	Name string       // the node's name, e.g. "euw3-pg1"
	DNS  []string     // DNS names, Name first
	IPs  []netip.Addr // IP addresses
}

// Identities lists the certificate identities of plan p: its PostgreSQL
// and etcd nodes, in plan order. Each holds the node's private IP and
// 127.0.0.1 (patronictl, etcdctl and psql on the node). A PostgreSQL node
// also holds every HAProxy node's IP: HAProxy passes TLS through, so a
// client that asked HAProxy for verify-full checks the PostgreSQL node's
// certificate against HAProxy's address.
func Identities(p *cluster.Plan) []Identity {
	var haproxy []netip.Addr
	for _, h := range p.ByRole(cluster.RoleHAProxy) {
		haproxy = append(haproxy, h.IP)
	}
	var out []Identity
	for _, n := range p.Nodes {
		if n.Role != cluster.RolePostgres && n.Role != cluster.RoleEtcd {
			continue
		}
		id := Identity{Name: n.Name, DNS: []string{n.Name, "localhost"}, IPs: []netip.Addr{n.IP, netip.MustParseAddr("127.0.0.1")}}
		if n.Role == cluster.RolePostgres {
			id.IPs = append(id.IPs, haproxy...)
		}
		out = append(out, id)
	}
	return out
}

// Issue returns a certificate for id, signed by ca and valid from now for
// NodeValidity (never past the CA), with a fresh key, as PEM: the
// certificate, then the key. It serves TLS and authenticates as a client
// (Patroni to etcd, etcd to its peers).
func (ca *CA) Issue(id Identity, now time.Time) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("issue %s: %w", id.Name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial(),
		Subject:        pkix.Name{CommonName: id.Name, Organization: []string{"pgha"}},
		NotBefore:      now.Add(-time.Hour),
		NotAfter:       now.Add(NodeValidity),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:       id.DNS,
		AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	for _, a := range id.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(a.AsSlice()))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return "", fmt.Errorf("issue %s: %w", id.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", err
	}
	return encode([]*x509.Certificate{cert}, key)
}

// Renew says why the node certificate in text must be issued again for id
// under ca at time now ("" when it need not): it is missing or unreadable,
// not signed by ca, names other addresses than id, or expires within
// RenewBefore.
func Renew(text string, ca *CA, id Identity, now time.Time) string {
	certs, key, err := Parse(text)
	switch {
	case err != nil:
		return err.Error()
	case len(certs) == 0 || key == nil:
		return "no certificate or no key"
	case !key.PublicKey.Equal(certs[0].PublicKey):
		return "the key is not the certificate's"
	}
	c := certs[0]
	if err := c.CheckSignatureFrom(ca.Cert); err != nil {
		return "not signed by the current CA"
	}
	if !slices.Equal(c.DNSNames, id.DNS) || !sameIPs(c.IPAddresses, id.IPs) {
		return "its names or addresses are not the plan's"
	}
	if left := c.NotAfter.Sub(now); left < RenewBefore {
		return fmt.Sprintf("expires %s", c.NotAfter.UTC().Format(time.RFC3339))
	}
	return ""
}

// Split cuts a PEM text as Issue writes it into its certificates and its
// key, for servers that take them as two files (ssl_cert_file and
// ssl_key_file, etcd's cert-file and key-file). key is "" when there is
// none.
func Split(text string) (certs, key string) {
	if i := strings.Index(text, "-----BEGIN PRIVATE KEY"); i >= 0 {
		return text[:i], text[i:]
	}
	return text, ""
}

// Parse reads the certificates and the private key (nil if none) of a PEM
// text.
func Parse(text string) ([]*x509.Certificate, *ecdsa.PrivateKey, error) {
	var certs []*x509.Certificate
	var key *ecdsa.PrivateKey
	rest := []byte(text)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("parse certificate: %w", err)
			}
			certs = append(certs, c)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("parse key: %w", err)
			}
			ec, ok := k.(*ecdsa.PrivateKey)
			if !ok || key != nil {
				return nil, nil, errors.New("want one ECDSA private key")
			}
			key = ec
		default:
			return nil, nil, fmt.Errorf("unexpected PEM block %q", b.Type)
		}
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, nil, errors.New("text after the last PEM block")
	}
	return certs, key, nil
}

func encode(certs []*x509.Certificate, key *ecdsa.PrivateKey) (string, error) {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	if key != nil {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return "", err
		}
		_ = pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	return buf.String(), nil
}

func sameIPs(have []net.IP, want []netip.Addr) bool {
	if len(have) != len(want) {
		return false
	}
	for i, ip := range have {
		a, ok := netip.AddrFromSlice(ip)
		if !ok || a.Unmap() != want[i] {
			return false
		}
	}
	return true
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n.Add(n, big.NewInt(1))
}

func keyID(pub *ecdsa.PublicKey) []byte {
	b, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(b)
	return sum[:20]
}
