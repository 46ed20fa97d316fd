package pki

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
)

func plan(t *testing.T) *cluster.Plan {
	t.Helper()
	p, err := cluster.NewPlan(cluster.Default())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIdentities(t *testing.T) {
	p := plan(t)
	ids := Identities(p)
	if want := len(p.ByRole(cluster.RolePostgres)) + len(p.ByRole(cluster.RoleEtcd)); len(ids) != want {
		t.Fatalf("%d identities, want %d (PostgreSQL and etcd nodes)", len(ids), want)
	}
	for _, id := range ids {
		n, _ := p.Node(id.Name)
		if id.IPs[0] != n.IP || id.DNS[0] != n.Name {
			t.Errorf("%s: first IP %s and name %s, want the node's %s", id.Name, id.IPs[0], id.DNS[0], n.IP)
		}
		if n.Role == cluster.RolePostgres {
			for _, h := range p.ByRole(cluster.RoleHAProxy) {
				if !strings.Contains(strings.Join(addrs(id), ","), h.IP.String()) {
					t.Errorf("%s does not name HAProxy %s (%s), which passes TLS through", id.Name, h.Name, h.IP)
				}
			}
		}
	}
}

func addrs(id Identity) []string {
	var out []string
	for _, a := range id.IPs {
		out = append(out, a.String())
	}
	return out
}

// TestHandshake runs real TLS 1.3 handshakes with a node certificate, the
// client verifying the server by IP (as libpq's verify-full and HAProxy do)
// and the server requiring a client certificate (as etcd does).
func TestHandshake(t *testing.T) {
	p := plan(t)
	now := time.Now()
	ca, err := NewCA("pgha", now)
	if err != nil {
		t.Fatal(err)
	}
	ids := Identities(p)
	server, err := ca.Issue(ids[0], now)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue(ids[len(ids)-1], now)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewCA("pgha", now)
	stranger, _ := other.Issue(ids[1], now)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ca.CertPEM()))

	pair := func(s string) tls.Certificate {
		c, err := tls.X509KeyPair([]byte(s), []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{pair(server)}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			_, _ = c.Write([]byte("ok"))
			c.Close()
		}
	}()
	dial := func(cfg *tls.Config) error {
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 2)
		_, err = c.Read(buf)
		return err
	}
	// 127.0.0.1 is in every node's certificate.
	if err := dial(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair(client)}}); err != nil {
		t.Errorf("a node with its certificate: %v", err)
	}
	if err := dial(&tls.Config{RootCAs: pool}); err == nil {
		t.Error("a client without a certificate was accepted")
	}
	if err := dial(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair(stranger)}}); err == nil {
		t.Error("a certificate of another CA was accepted")
	}
	// The server's name as an IP the certificate does not hold.
	if err := dial(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair(client)}, ServerName: "10.99.0.1"}); err == nil {
		t.Error("verified the server against an address its certificate does not name")
	}
}

func TestRenew(t *testing.T) {
	p := plan(t)
	now := time.Now()
	ca, _ := NewCA("pgha", now)
	id := Identities(p)[0]
	good, _ := ca.Issue(id, now)
	if why := Renew(good, ca, id, now); why != "" {
		t.Errorf("a fresh certificate must not be renewed: %s", why)
	}
	other, _ := NewCA("pgha", now)
	moved := id
	moved.IPs = moved.IPs[:len(moved.IPs)-1]
	for name, tc := range map[string]struct {
		text string
		ca   *CA
		id   Identity
		at   time.Time
	}{
		"missing":          {"", ca, id, now},
		"garbage":          {"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n", ca, id, now},
		"another CA":       {good, other, id, now},
		"addresses":        {good, ca, moved, now},
		"expires soon":     {good, ca, id, now.Add(NodeValidity - RenewBefore + time.Hour)},
		"certificate only": {good[:strings.Index(good, "-----BEGIN PRIVATE KEY")], ca, id, now},
	} {
		if why := Renew(tc.text, tc.ca, tc.id, tc.at); why == "" {
			t.Errorf("%s: not renewed", name)
		}
	}
}

func TestCARoundTrip(t *testing.T) {
	ca, _ := NewCA("pgha", time.Now())
	text, err := ca.PEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseCA(text)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Cert.Equal(ca.Cert) || !back.Key.Equal(ca.Key) {
		t.Error("ParseCA(PEM()) differs")
	}
	if _, err := ParseCA(ca.CertPEM()); err == nil {
		t.Error("ParseCA accepted a CA without its key")
	}
}
