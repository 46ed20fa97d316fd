package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/healthcheck"
	"github.com/pgha/pgha/pki"
)

func TestSSMRestarter(t *testing.T) {
	f := newFakeAWS(t)
	r := &ssmRestarter{client: f.ssmClient()}
	if err := r.Restart(context.Background(), healthcheck.App{Name: "app1", InstanceID: "i-0123456789abcdef0"}); err != nil {
		t.Fatal(err)
	}
	calls := f.callsTo("AmazonSSM.SendCommand")
	if len(calls) != 1 {
		t.Fatalf("%d SendCommand calls, want 1", len(calls))
	}
	b := calls[0].Body
	if b["DocumentName"] != "AWS-RunShellScript" ||
		fmt.Sprint(b["InstanceIds"]) != "[i-0123456789abcdef0]" ||
		fmt.Sprint(b["Parameters"]) != "map[commands:[systemctl restart pgha-app.service]]" {
		t.Errorf("SendCommand %v", b)
	}
	if !signedBy(calls[0], "AKIDEXAMPLE") {
		t.Errorf("not signed with the static credentials: %q", calls[0].Auth)
	}
}

func TestParameterStore(t *testing.T) {
	f := newFakeAWS(t)
	s := &parameterStore{client: f.ssmClient(), path: "/pgha/pgha/restarts"}
	app := healthcheck.App{Name: "app1", InstanceID: "i-1"}
	ctx := context.Background()
	got, err := s.LastRestart(ctx, app)
	if err != nil || !got.IsZero() {
		t.Fatalf("never restarted: %v, %v; want zero time, nil", got, err)
	}
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	if err := s.RecordRestart(ctx, app, at); err != nil {
		t.Fatal(err)
	}
	put := f.callsTo("AmazonSSM.PutParameter")
	if len(put) != 1 || put[0].Body["Name"] != "/pgha/pgha/restarts/i-1" || put[0].Body["Overwrite"] != true || put[0].Body["Type"] != "String" {
		t.Errorf("PutParameter %v", put)
	}
	got, err = s.LastRestart(ctx, app)
	if err != nil || !got.Equal(at) {
		t.Errorf("LastRestart %v, %v; want %v", got, err, at)
	}
}

func TestSecretPassword(t *testing.T) {
	f := newFakeAWS(t)
	f.secrets["pgha/health"] = "s3cretPassw0rd"
	f.secrets["json"] = `{"username":"pgha_health","password":"fromJSON"}`
	for name, want := range map[string]string{"pgha/health": "s3cretPassw0rd", "json": "fromJSON"} {
		p := &secretPassword{client: f.secretsClient(), name: name}
		got, err := p.Password(context.Background())
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := (&secretPassword{client: f.secretsClient(), name: "missing"}).Password(context.Background()); err == nil {
		t.Error("missing secret: no error")
	}
}

func TestBootReader(t *testing.T) {
	f := newFakeAWS(t)
	f.params["/pgha/pgha/boot/euw3-pg1"] = "ok 2026-12-02T07:00:00Z"
	f.params["/pgha/pgha/boot/euw3-etcd1"] = "degraded: no SSM agent 2026-12-02T07:00:00Z"
	f.params["/pgha/pgha/restarts/i-1"] = "2026-12-02T07:00:00Z"
	r := &bootReader{client: f.ssmClient(), path: "/pgha/pgha/boot"}
	st, err := r.BootStatuses(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := healthcheck.BootsNotOK([]string{"euw3-pg1", "euw3-etcd1", "euw3-haproxy1"}, st)
	want := []string{"euw3-etcd1: degraded: no SSM agent 2026-12-02T07:00:00Z", "euw3-haproxy1: none"}
	if !slices.Equal(got, want) {
		t.Errorf("BootsNotOK = %q, want %q", got, want)
	}
}

func TestReadTrust(t *testing.T) {
	ca, err := pki.NewCA("pgha", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeAWS(t)
	f.secrets["pgha/tls/ca"] = ca.CertPEM()
	f.secrets["not-pem"] = "s3cretPassw0rd"
	pool, err := readTrust(context.Background(), f.secretsClient(), "pgha/tls/ca")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Cert.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Errorf("the pool does not trust the CA: %v", err)
	}
	for _, name := range []string{"not-pem", "missing"} {
		if _, err := readTrust(context.Background(), f.secretsClient(), name); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestNewHandlerTLS: the checker verifies Patroni and PostgreSQL against
// the cluster CA and authenticates as Patroni's API user.
func TestNewHandlerTLS(t *testing.T) {
	plan, err := cluster.NewPlan(cluster.Default())
	if err != nil {
		t.Fatal(err)
	}
	s, err := healthcheck.SettingsFromPlan(plan, "eu-west-3", nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeAWS(t)
	pool := x509.NewCertPool()
	h := newHandler(s, pool, "apiPassw0rd", f.ssmClient(), f.secretsClient(), nil, io.Discard)
	if p := h.checker.Patroni; p.User != cluster.PatroniAPIUser || p.Password != "apiPassw0rd" || p.Timeout != s.NodeTimeout() {
		t.Errorf("Patroni client %+v", p)
	} else if tr, ok := p.HTTP.Transport.(*http.Transport); !ok || tr.TLSClientConfig.RootCAs != pool {
		t.Errorf("Patroni client does not verify against the cluster CA: %+v", p.HTTP.Transport)
	}
	if w := h.checker.Writes.(*healthcheck.PGWriteChecker); w.TLS == nil || w.TLS.RootCAs != pool {
		t.Errorf("write check TLS %+v, want the cluster CA", w.TLS)
	}
}
