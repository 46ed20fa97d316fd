package local

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/cluster"
)

// checkSecurity proves that every hop refuses what it must, from a node of
// another role (inside the VPC, as an intruder there would be) and from the
// root namespace, and that the right credentials get in (so a refusal is
// not an outage). It runs on a ready cluster and changes nothing.
func checkSecurity(ctx context.Context, t *testing.T, c *Cluster) {
	p := c.Plan()
	pg := p.ByRole(cluster.RolePostgres)[0]
	etcd := p.ByRole(cluster.RoleEtcd)[0]
	haproxy := p.ByRole(cluster.RoleHAProxy)[0]
	app := p.ByRole(cluster.RoleApp)[0]
	appPassword, err := c.Secret(cluster.SecretApp)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := c.caPool()
	if err != nil {
		t.Fatal(err)
	}
	// from dials from inside a node's namespace; "" is the root namespace.
	from := func(node string) func(ctx context.Context, network, addr string) (net.Conn, error) {
		if node == "" {
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext
		}
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			return DialInNode(ctx, node, network, addr)
		}
	}
	pgConnect := func(dial string, addr netip.AddrPort, tlsCfg *tls.Config) error {
		cfg, err := pgx.ParseConfig("sslmode=disable connect_timeout=5")
		if err != nil {
			return err
		}
		cfg.Host, cfg.Port = addr.Addr().String(), addr.Port()
		cfg.User, cfg.Password, cfg.Database = cluster.AppUser, appPassword, p.Config.App.Database
		cfg.TLSConfig, cfg.Fallbacks = tlsCfg, nil
		cfg.DialFunc = from(dial)
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		return conn.Ping(ctx)
	}
	verify := func(host string) *tls.Config { return &tls.Config{RootCAs: roots, ServerName: host} }
	tls12 := func(host string) *tls.Config {
		return &tls.Config{RootCAs: roots, ServerName: host, MaxVersion: tls.VersionTLS12}
	}
	pgAddr := netip.AddrPortFrom(pg.IP, cluster.PortPostgres)
	hpAddr := netip.AddrPortFrom(haproxy.IP, cluster.PortHAProxyWrite)

	t.Run("PostgreSQL: plaintext refused, TLS 1.3 with verify-full accepted", func(t *testing.T) {
		for _, tc := range []struct {
			name, from string
			addr       netip.AddrPort
		}{
			{"a PostgreSQL node, from an etcd node", etcd.Name, pgAddr},
			{"HAProxy, from the app node", app.Name, hpAddr},
			{"HAProxy, from the root namespace", "", hpAddr},
		} {
			if err := pgConnect(tc.from, tc.addr, nil); err == nil {
				t.Errorf("%s: a plaintext login was accepted", tc.name)
			} else if !strings.Contains(err.Error(), "no encryption") {
				t.Logf("%s, plaintext: %v", tc.name, err)
			}
			if err := pgConnect(tc.from, tc.addr, tls12(tc.addr.Addr().String())); err == nil {
				t.Errorf("%s: a TLS 1.2 login was accepted (ssl_min_protocol_version TLSv1.3)", tc.name)
			}
			if err := pgConnect(tc.from, tc.addr, verify(tc.addr.Addr().String())); err != nil {
				t.Errorf("%s: verify-full login refused: %v", tc.name, err)
			}
		}
	})

	httpClient := func(node string, cfg *tls.Config) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			Proxy: nil, DisableKeepAlives: true, DialContext: from(node), TLSClientConfig: cfg,
		}}
	}
	status := func(client *http.Client, method, url, user, password string, body ...string) (int, error) {
		payload := "{}"
		if len(body) > 0 {
			payload = body[0]
		}
		req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(payload))
		if err != nil {
			return 0, err
		}
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	patroni := fmt.Sprintf("https://%s", netip.AddrPortFrom(pg.IP, cluster.PortPatroni))

	t.Run("Patroni: unsafe endpoints need the password and an allowed address", func(t *testing.T) {
		apiPassword, err := c.Secret(cluster.SecretPatroniAPI)
		if err != nil {
			t.Fatal(err)
		}
		verified := &tls.Config{RootCAs: roots}
		if code, err := status(httpClient(haproxy.Name, verified), http.MethodGet, patroni+"/patroni", "", ""); err != nil || code != http.StatusOK {
			t.Errorf("GET /patroni over TLS from %s: %d, %v", haproxy.Name, code, err)
		}
		// Patroni's TLS listener cannot serve a plaintext request.
		if code, err := status(httpClient(haproxy.Name, nil), http.MethodGet, "http"+strings.TrimPrefix(patroni, "https")+"/patroni", "", ""); err == nil && code == http.StatusOK {
			t.Error("Patroni answers plain HTTP")
		}
		for _, tc := range []struct {
			name, from, method, path, user, password string
		}{
			{"PATCH /config without credentials, from HAProxy", haproxy.Name, http.MethodPatch, "/config", "", ""},
			{"POST /restart without credentials, from HAProxy", haproxy.Name, http.MethodPost, "/restart", "", ""},
			{"POST /restart without credentials, from the root namespace", "", http.MethodPost, "/restart", "", ""},
			{"PATCH /config with a wrong password, from a member", pg.Name, http.MethodPatch, "/config", cluster.PatroniAPIUser, "wrong"},
			{"PATCH /config with the password, from HAProxy (not allowlisted)", haproxy.Name, http.MethodPatch, "/config", cluster.PatroniAPIUser, apiPassword},
			{"POST /switchover with the password, from an etcd node (not allowlisted)", etcd.Name, http.MethodPost, "/switchover", cluster.PatroniAPIUser, apiPassword},
			{"POST /reinitialize with the password, from the root namespace (not allowlisted)", "", http.MethodPost, "/reinitialize", cluster.PatroniAPIUser, apiPassword},
		} {
			code, err := status(httpClient(tc.from, verified), tc.method, patroni+tc.path, tc.user, tc.password)
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			} else if code != http.StatusUnauthorized && code != http.StatusForbidden {
				t.Errorf("%s: %d, want 401 or 403", tc.name, code)
			}
		}
		// Setting loop_wait to what it is changes nothing: the right caller
		// gets through.
		same := fmt.Sprintf(`{"loop_wait": %d}`, p.Config.Patroni.LoopWait)
		if code, err := status(httpClient(pg.Name, verified), http.MethodPatch, patroni+"/config", cluster.PatroniAPIUser, apiPassword, same); err != nil || code != http.StatusOK {
			t.Errorf("PATCH /config with the password from a member: %d, %v", code, err)
		}
	})

	t.Run("etcd: a client certificate of the cluster CA is required", func(t *testing.T) {
		url := fmt.Sprintf("https://%s/health", netip.AddrPortFrom(etcd.IP, cluster.PortEtcdClient))
		if _, err := status(httpClient(haproxy.Name, &tls.Config{RootCAs: roots}), http.MethodGet, url, "", ""); err == nil {
			t.Errorf("etcd served %s without a client certificate", url)
		}
		if code, err := status(httpClient(haproxy.Name, nil), http.MethodGet, "http"+strings.TrimPrefix(url, "https"), "", ""); err == nil && code == http.StatusOK {
			t.Error("etcd answers plain HTTP")
		}
		op, err := c.HTTPClient(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if code, err := status(op, http.MethodGet, url, "", ""); err != nil || code != http.StatusOK {
			t.Errorf("etcd with the operator's certificate: %d, %v", code, err)
		}
		tls12, err := c.TLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		tls12.MaxVersion = tls.VersionTLS12
		if _, err := status(httpClient("", tls12), http.MethodGet, url, "", ""); err == nil {
			t.Error("etcd accepted TLS 1.2 (tls-min-version TLS1.3)")
		}
	})

	t.Run("HAProxy's stats page needs its password", func(t *testing.T) {
		url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(haproxy.IP, cluster.PortHAProxyStats))
		if code, err := status(httpClient("", nil), http.MethodGet, url, "", ""); err != nil || code != http.StatusUnauthorized {
			t.Errorf("stats without a password: %d, %v; want 401", code, err)
		}
		pw, err := c.Secret(cluster.SecretHAProxyStats)
		if err != nil {
			t.Fatal(err)
		}
		if code, err := status(httpClient("", nil), http.MethodGet, url, cluster.HAProxyStatsUser, pw); err != nil || code != http.StatusOK {
			t.Errorf("stats with the password: %d, %v; want 200", code, err)
		}
	})

	t.Run("no password in any process's environment", func(t *testing.T) {
		var secrets []string
		for _, s := range cluster.Secrets {
			v, err := c.Secret(s)
			if err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, v)
		}
		for _, n := range p.Nodes {
			// Every process's environment, NUL-separated, one file each.
			out, err := c.Exec(ctx, n.Name, "/bin/sh", "-c", `for f in /proc/[0-9]*/environ; do cat "$f" 2>/dev/null; echo; done`)
			if err != nil {
				t.Errorf("%s: %v", n.Name, err)
				continue
			}
			for i, s := range secrets {
				if strings.Contains(string(out), s) {
					t.Errorf("%s: the %s password is in a process's environment", n.Name, cluster.Secrets[i])
				}
			}
		}
	})
}
