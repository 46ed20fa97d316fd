// Package certs keeps the cluster's TLS material in Secrets Manager: the
// CA (package pki) in the primary region, the CA's certificate in every
// region, and each node's certificate and key in the node's own region,
// where only that node's role may read it. The deploy's custom resource
// (lambda/certs) and the local cluster (against the emulator) both call
// Ensure, so the local cluster proves what AWS runs.
package certs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/pki"
)

// Client is the part of the Secrets Manager API Ensure uses
// (*secretsmanager.Client).
type Client interface {
	GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	CreateSecret(context.Context, *secretsmanager.CreateSecretInput, ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error)
	PutSecretValue(context.Context, *secretsmanager.PutSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
}

// Options configure Ensure.
type Options struct {
	// Rotate issues every node certificate again, with a new key, even
	// when the current one is good. Default: false (renew only what Renew
	// says must be).
	Rotate bool
	// Now is the time certificates are issued at. Default: time.Now().
	Now time.Time
	// Log gets one line per secret written. Default: slog.Default().
	Log *slog.Logger
}

// Result says what Ensure wrote.
type Result struct {
	CreatedCA bool
	Issued    []string // nodes whose certificate was issued, in plan order
}

// Ensure makes the plan's TLS secrets current: it creates the CA if there
// is none, writes the CA's certificate to every region, and issues each
// node's certificate that is missing, no longer matches the plan, expires
// within pki.RenewBefore, or (Rotate) all of them. It is idempotent: a
// second run writes nothing. client returns the Secrets Manager client of
// a region.
func Ensure(ctx context.Context, p *cluster.Plan, client func(region string) Client, opts Options) (Result, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	var res Result
	c := p.Config
	primary := client(p.Primary().Name)
	ca, created, err := ensureCA(ctx, primary, c, opts.Now)
	if err != nil {
		return res, err
	}
	res.CreatedCA = created
	if created {
		opts.Log.Info("created the cluster CA", "secret", pki.CASecret(c), "region", p.Primary().Name)
	}
	trust := ca.CertPEM()
	for _, r := range p.Regions {
		sm := client(r.Name)
		have, _, err := get(ctx, sm, pki.TrustSecret(c))
		if err != nil {
			return res, err
		}
		if have == trust {
			continue
		}
		if err := put(ctx, sm, c, pki.TrustSecret(c), trust, fmt.Sprintf("pgha %s: the cluster CA's certificate, which every node and client trusts", c.Name), ""); err != nil {
			return res, err
		}
		opts.Log.Info("wrote the CA certificate", "secret", pki.TrustSecret(c), "region", r.Name)
	}
	byName := map[string]cluster.Node{}
	for _, n := range p.Nodes {
		byName[n.Name] = n
	}
	for _, id := range pki.Identities(p) {
		n := byName[id.Name]
		sm := client(n.Region)
		name := pki.NodeSecret(c, n.Name)
		have, _, err := get(ctx, sm, name)
		if err != nil {
			return res, err
		}
		why := pki.Renew(have, ca, id, opts.Now)
		if have == "" {
			why = "none yet"
		} else if why == "" && opts.Rotate {
			why = "rotation"
		}
		if why == "" {
			continue
		}
		pemText, err := ca.Issue(id, opts.Now)
		if err != nil {
			return res, err
		}
		if err := put(ctx, sm, c, name, pemText, fmt.Sprintf("pgha %s: TLS certificate and key of node %s", c.Name, n.Name), n.Name); err != nil {
			return res, err
		}
		opts.Log.Info("issued a node certificate", "node", n.Name, "secret", name, "region", n.Region, "why", why)
		res.Issued = append(res.Issued, n.Name)
	}
	return res, nil
}

// ensureCA reads the CA, creating it if there is none. Two issuers racing
// both read the one that won.
func ensureCA(ctx context.Context, sm Client, c cluster.Config, now time.Time) (*pki.CA, bool, error) {
	text, _, err := get(ctx, sm, pki.CASecret(c))
	if err != nil {
		return nil, false, err
	}
	if text != "" {
		ca, err := pki.ParseCA(text)
		if err != nil {
			return nil, false, fmt.Errorf("secret %s: %w", pki.CASecret(c), err)
		}
		return ca, false, nil
	}
	ca, err := pki.NewCA(c.Name, now)
	if err != nil {
		return nil, false, err
	}
	pemText, err := ca.PEM()
	if err != nil {
		return nil, false, err
	}
	_, err = sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name:         aws.String(pki.CASecret(c)),
		Description:  aws.String(fmt.Sprintf("pgha %s: the cluster CA's certificate and private key; only the certificate issuer reads it", c.Name)),
		SecretString: aws.String(pemText),
		Tags:         tags(c, ""),
	})
	var exists *smtypes.ResourceExistsException
	if errors.As(err, &exists) {
		return ensureCA(ctx, sm, c, now)
	}
	if err != nil {
		return nil, false, fmt.Errorf("create secret %s: %w", pki.CASecret(c), err)
	}
	return ca, true, nil
}

// get returns a secret's value, or "" and false when there is no such
// secret.
func get(ctx context.Context, sm Client, name string) (string, bool, error) {
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
	var missing *smtypes.ResourceNotFoundException
	if errors.As(err, &missing) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read secret %s: %w", name, err)
	}
	return aws.ToString(out.SecretString), true, nil
}

// put creates the secret, or sets a new value of the existing one.
func put(ctx context.Context, sm Client, c cluster.Config, name, value, description, node string) error {
	_, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String(name), Description: aws.String(description), SecretString: aws.String(value), Tags: tags(c, node),
	})
	var exists *smtypes.ResourceExistsException
	if errors.As(err, &exists) {
		_, err = sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(value)})
	}
	if err != nil {
		return fmt.Errorf("write secret %s: %w", name, err)
	}
	return nil
}

func tags(c cluster.Config, node string) []smtypes.Tag {
	t := []smtypes.Tag{{Key: aws.String("pgha:cluster"), Value: aws.String(c.Name)}}
	if node != "" {
		t = append(t, smtypes.Tag{Key: aws.String("pgha:node"), Value: aws.String(node)})
	}
	return t
}
