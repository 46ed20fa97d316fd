package local

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgha/pgha/certs"
	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/pki"
	"github.com/pgha/pgha/render"
)

// The operator's TLS files, in Dir/tls: the cluster CA's certificate and a
// certificate of the CA for the root namespace (pgha-local, the drills and
// the tests), which etcd requires of every client. On AWS an operator uses
// a node's own files, in a Session Manager shell on it.
func (c *Cluster) tlsDir() string { return filepath.Join(c.dir, "tls") }

// CAFile is the cluster CA's certificate, for clients of the local
// cluster: psql "sslmode=verify-full sslrootcert=$(CAFile)".
func (c *Cluster) CAFile() string { return filepath.Join(c.tlsDir(), "ca.crt") }

func (c *Cluster) operatorPEM() string { return filepath.Join(c.tlsDir(), "operator.pem") }

// ensureCerts issues the cluster's certificates into the emulator's
// Secrets Manager with certs.Ensure, as the deploy's custom resource does
// on AWS, then the operator's certificate.
func (c *Cluster) ensureCerts(ctx context.Context) error {
	if _, err := c.issue(ctx, false); err != nil {
		return err
	}
	return c.writeOperatorTLS(ctx)
}

// issue runs certs.Ensure against the emulator, rotating every node
// certificate if rotate.
func (c *Cluster) issue(ctx context.Context, rotate bool) (certs.Result, error) {
	var cfgErr error
	client := func(region string) certs.Client {
		cfg, err := c.awsConfig(region)
		cfgErr = errors.Join(cfgErr, err)
		return secretsmanager.NewFromConfig(cfg)
	}
	log := slog.New(slog.NewTextHandler(c.log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := certs.Ensure(ctx, c.plan, client, certs.Options{Rotate: rotate, Log: log})
	if err = errors.Join(err, cfgErr); err != nil {
		return res, fmt.Errorf("issue the cluster's certificates: %w", err)
	}
	return res, nil
}

// writeOperatorTLS writes CAFile and the operator's certificate, issued by
// the CA the emulator holds.
func (c *Cluster) writeOperatorTLS(ctx context.Context) error {
	cfg, err := c.awsConfig(c.plan.Primary().Name)
	if err != nil {
		return err
	}
	out, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(pki.CASecret(c.plan.Config))})
	if err != nil {
		return fmt.Errorf("read the cluster CA: %w", err)
	}
	ca, err := pki.ParseCA(aws.ToString(out.SecretString))
	if err != nil {
		return err
	}
	rootAddr, _ := linkAddrs(c.st.LinkNet, 0)
	op, err := ca.Issue(pki.Identity{Name: "operator", DNS: []string{"operator"}, IPs: []netip.Addr{rootAddr.Addr()}}, time.Now())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.tlsDir(), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(c.CAFile(), []byte(ca.CertPEM()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(c.operatorPEM(), []byte(op), 0o600)
}

// TLSConfig verifies the cluster's servers against its CA and presents the
// operator's certificate (etcd asks for one).
func (c *Cluster) TLSConfig() (*tls.Config, error) {
	ca, err := os.ReadFile(c.CAFile())
	if err != nil {
		return nil, fmt.Errorf("the cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in %s", c.CAFile())
	}
	op, err := os.ReadFile(c.operatorPEM())
	if err != nil {
		return nil, fmt.Errorf("the operator's certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(op, op)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.operatorPEM(), err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// HTTPClient is a client of the cluster's HTTPS endpoints (Patroni, etcd)
// with TLSConfig, without pooled connections.
func (c *Cluster) HTTPClient(timeout time.Duration) (*http.Client, error) {
	cfg, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: cfg}}, nil
}

// caPool is the cluster CA as a pool.
func (c *Cluster) caPool() (*x509.CertPool, error) {
	cfg, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	return cfg.RootCAs, nil
}

// RotateCerts rotates every node certificate, as raising tls.rotation and
// deploying does on AWS: certs.Ensure issues each again with a new key,
// then each node runs its tls-refresh script (on AWS: SSM Run Command, or
// the daily timer), one node at a time, and must then serve its new
// certificate on every TLS port. It returns the nodes rotated.
func (c *Cluster) RotateCerts(ctx context.Context) ([]string, error) {
	res, err := c.issue(ctx, true)
	if err != nil {
		return nil, err
	}
	cfg, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	for _, name := range res.Issued {
		n, _ := c.plan.Node(name)
		before, err := servedSerials(ctx, cfg, n)
		if err != nil {
			return nil, fmt.Errorf("%s before the rotation: %w", name, err)
		}
		if out, err := c.Exec(ctx, name, render.TLSRefreshScript); err != nil {
			return nil, fmt.Errorf("%s: %s: %w\n%s", name, render.TLSRefreshScript, err, out)
		}
		// Patroni reloads its REST API's certificate in its next loop.
		deadline := time.Now().Add(30 * time.Second)
		for {
			after, err := servedSerials(ctx, cfg, n)
			if err == nil && !sharesAny(before, after) {
				c.logf("%s serves its new certificate", name)
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s still serves an old certificate 30 s after %s (%v): before %v, after %v", name, render.TLSRefreshScript, err, before, after)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	return res.Issued, nil
}

// servedSerials returns the serial numbers of the certificates node n
// serves: etcd's client port, or Patroni's REST API and PostgreSQL.
func servedSerials(ctx context.Context, cfg *tls.Config, n cluster.Node) (map[string]string, error) {
	out := map[string]string{}
	serial := func(port int, starttls bool) error {
		addr := netip.AddrPortFrom(n.IP, uint16(port)).String()
		d := &net.Dialer{Timeout: 5 * time.Second}
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
		if starttls {
			// PostgreSQL's SSLRequest: length 8, code 80877103; 'S' = yes.
			if _, err := raw.Write([]byte{0, 0, 0, 8, 4, 210, 22, 47}); err != nil {
				return err
			}
			b := make([]byte, 1)
			if _, err := io.ReadFull(raw, b); err != nil || b[0] != 'S' {
				return fmt.Errorf("%s refused TLS (%q, %v)", addr, b, err)
			}
		}
		c := cfg.Clone()
		c.ServerName = n.IP.String()
		conn := tls.Client(raw, c)
		if err := conn.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("%s: %w", addr, err)
		}
		out[fmt.Sprint(port)] = conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
		return nil
	}
	var err error
	switch n.Role {
	case cluster.RoleEtcd:
		err = serial(cluster.PortEtcdClient, false)
	case cluster.RolePostgres:
		err = errors.Join(serial(cluster.PortPatroni, false), serial(cluster.PortPostgres, true))
	}
	return out, err
}

func sharesAny(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] == v {
			return true
		}
	}
	return false
}
