package certs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/motoserver"
	"github.com/pgha/pgha/pki"
)

// emulator returns a Secrets Manager client per region against Debian 13's
// moto server, run from the node image.
func emulator(t *testing.T) func(region string) Client {
	t.Helper()
	root := os.Getenv("PGHA_ROOTFS")
	if root == "" {
		root = "/var/cache/pgha/rootfs/trixie"
	}
	_, err := os.Stat(filepath.Join(root, "usr/bin/moto_server"))
	if err == nil && os.Geteuid() != 0 {
		err = os.ErrPermission
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("moto server from %s (as root): %v", root, err)
		}
		t.Skipf("needs root and the node image's moto server in %s: %v", root, err)
	}
	endpoint := motoserver.Start(t, root)
	return func(region string) Client {
		return secretsmanager.NewFromConfig(aws.Config{
			Region: region, BaseEndpoint: aws.String(endpoint),
			Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		})
	}
}

func value(t *testing.T, sm Client, name string) string {
	t.Helper()
	v, ok, err := get(context.Background(), sm, name)
	if err != nil || !ok {
		t.Fatalf("secret %s: %v (exists %v)", name, err, ok)
	}
	return v
}

// TestEnsure runs Ensure against the emulator: it creates the CA, the
// trust secret in every region and each node's certificate in its own
// region; a second run writes nothing; a node whose addresses change, and
// all of them with Rotate, are issued again under the same CA.
func TestEnsure(t *testing.T) {
	ctx := context.Background()
	client := emulator(t)
	c := cluster.Default()
	c.Witness = &cluster.Witness{Name: "eu-central-1", CIDR: "10.13.0.0/16"}
	c.Regions[0].Etcd, c.Regions[1].Etcd = 1, 1
	p, err := cluster.NewPlan(c)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, id := range pki.Identities(p) {
		ids = append(ids, id.Name)
	}

	res, err := Ensure(ctx, p, client, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.CreatedCA || !slices.Equal(res.Issued, ids) {
		t.Fatalf("first run: %+v, want the CA created and %v issued", res, ids)
	}
	ca, err := pki.ParseCA(value(t, client(p.Primary().Name), pki.CASecret(c)))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Regions {
		if got := value(t, client(r.Name), pki.TrustSecret(c)); got != ca.CertPEM() {
			t.Errorf("%s: the trust secret is not the CA's certificate", r.Name)
		}
	}
	serials := map[string]string{}
	for _, id := range pki.Identities(p) {
		n, _ := p.Node(id.Name)
		text := value(t, client(n.Region), pki.NodeSecret(c, n.Name))
		if why := pki.Renew(text, ca, id, time.Now()); why != "" {
			t.Errorf("%s's certificate in %s: %s", n.Name, n.Region, why)
		}
		certs, _, _ := pki.Parse(text)
		serials[n.Name] = certs[0].SerialNumber.String()
		// Only in the node's own region.
		for _, r := range p.Regions {
			if r.Name == n.Region {
				continue
			}
			if _, ok, _ := get(ctx, client(r.Name), pki.NodeSecret(c, n.Name)); ok {
				t.Errorf("%s's certificate is also in %s", n.Name, r.Name)
			}
		}
	}

	if res, err := Ensure(ctx, p, client, Options{}); err != nil || res.CreatedCA || len(res.Issued) != 0 {
		t.Errorf("second run: %+v, %v; want nothing written", res, err)
	}

	// A third HAProxy node in eu-west-1: every PostgreSQL node's
	// certificate must name it, the etcd nodes' need not change.
	c.Regions[1].HAProxy = 2
	grown, err := cluster.NewPlan(c)
	if err != nil {
		t.Fatal(err)
	}
	res, err = Ensure(ctx, grown, client, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var pg []string
	for _, n := range grown.ByRole(cluster.RolePostgres) {
		pg = append(pg, n.Name)
	}
	if res.CreatedCA || !slices.Equal(res.Issued, pg) {
		t.Errorf("after adding an HAProxy node: %+v, want only the PostgreSQL nodes %v issued", res, pg)
	}

	res, err = Ensure(ctx, grown, client, Options{Rotate: true})
	if err != nil || res.CreatedCA || !slices.Equal(res.Issued, ids) {
		t.Fatalf("rotation: %+v, %v; want every node issued under the same CA", res, err)
	}
	for _, id := range pki.Identities(grown) {
		n, _ := grown.Node(id.Name)
		certs, _, _ := pki.Parse(value(t, client(n.Region), pki.NodeSecret(c, n.Name)))
		if certs[0].SerialNumber.String() == serials[n.Name] {
			t.Errorf("%s: the rotation kept its certificate", n.Name)
		}
		if err := certs[0].CheckSignatureFrom(ca.Cert); err != nil {
			t.Errorf("%s: the rotated certificate is not the CA's: %v", n.Name, err)
		}
	}
}
