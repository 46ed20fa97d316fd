// Command lambda is pgha's health checker on AWS: run every minute by a
// schedule, it checks the cluster through Patroni's REST API and HAProxy,
// restarts the app of its region through SSM Run Command when the cluster
// is ready and the app is not, and emits metrics in CloudWatch Embedded
// Metric Format. The logic lives in package healthcheck; this command wires
// it to AWS (SSM, Parameter Store, Secrets Manager) and to the Lambda
// runtime.
//
// It is built with `-tags lambda.norpc` for the provided.al2023 runtime; its
// configuration is the JSON in the PGHA_HEALTHCHECK environment variable
// (healthcheck.Settings), written by constructs/healthcheck. It verifies
// Patroni's REST API and PostgreSQL against the cluster CA, and
// authenticates Patroni's unsafe requests, with the CA certificate and the
// API password it reads from Secrets Manager when it starts.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/pgha/pgha/healthcheck"
	"github.com/pgha/pgha/internal/s3objects"
)

func main() {
	if err := run(context.Background(), os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// run hands the runtime a handler, which it calls once per scheduled
// event. The cluster CA and Patroni's API password are read at the first
// invocation, and again at the next one when that failed: a failure is
// then an invocation error (the Errors metric), not a crash at start-up,
// and the start-up stays free of network calls.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	settings, err := healthcheck.ParseSettings([]byte(getenv(healthcheck.EnvSettings)))
	if err != nil {
		return err
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("load AWS config: %w", err)
	}
	sm := secretsmanager.NewFromConfig(awsCfg)
	var h *handler // the runtime calls one invocation at a time
	handle := func(ctx context.Context, ev events.EventBridgeEvent) error {
		if h == nil {
			roots, err := readTrust(ctx, sm, settings.TrustSecretName)
			if err != nil {
				return err
			}
			apiPassword, err := (&secretPassword{client: sm, name: settings.APISecretName}).Password(ctx)
			if err != nil {
				return fmt.Errorf("read the Patroni API password: %w", err)
			}
			h = newHandler(settings, roots, apiPassword, ssm.NewFromConfig(awsCfg), sm, s3.NewFromConfig(awsCfg), stdout)
		}
		return h.Handle(ctx, ev)
	}
	lambda.StartWithOptions(handle, lambda.WithContext(ctx))
	return nil
}

// readTrust reads the cluster CA's certificates (PEM) from the secret name.
func readTrust(ctx context.Context, sm secretsAPI, name string) (*x509.CertPool, error) {
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
	if err != nil {
		return nil, fmt.Errorf("secretsmanager GetSecretValue %s: %w", name, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(aws.ToString(out.SecretString))) {
		return nil, fmt.Errorf("secret %s holds no PEM certificate", name)
	}
	return pool, nil
}

// handler holds the clients one invocation needs; the runtime reuses it
// across invocations of a warm Lambda.
type handler struct {
	settings healthcheck.Settings
	checker  *healthcheck.Checker
	stdout   io.Writer // EMF documents
	log      *slog.Logger
}

// newHandler builds the handler; roots are the cluster CA's certificates,
// which Patroni's REST API and PostgreSQL (verify-full, through HAProxy)
// are verified against, and apiPassword is Patroni's API user's.
func newHandler(s healthcheck.Settings, roots *x509.CertPool, apiPassword string, ssmClient ssmAPI, sm secretsAPI, s3Client *s3.Client, stdout io.Writer) *handler {
	writes := &healthcheck.PGWriteChecker{
		Addrs:    s.HAProxy,
		User:     s.User,
		Database: s.Database,
		Password: &secretPassword{client: sm, name: s.SecretName},
		Timeout:  s.WriteTimeout(),
		TLS:      &tls.Config{RootCAs: roots},
	}
	restarter := &ssmRestarter{client: ssmClient}
	store := &parameterStore{client: ssmClient, path: s.ParameterPath}
	checker := healthcheck.NewChecker(s, writes, restarter, store)
	checker.Patroni = healthcheck.NewPatroniClient(roots, s.APIUser, apiPassword, s.NodeTimeout())
	if s.BootStatusPath != "" {
		checker.Boots = &bootReader{client: ssmClient, path: s.BootStatusPath}
	}
	if s.VolumeStatusPath != "" {
		checker.Volumes = volumeReader{&bootReader{client: ssmClient, path: s.VolumeStatusPath}}
	}
	checker.Archive = writes
	if s.BackupBucket != "" && s3Client != nil {
		checker.Backups = healthcheck.RepositoryReader{
			Objects: s3objects.Bucket{Client: s3Client, Name: s.BackupBucket}, Prefix: s.BackupPrefix, Stanza: s.Stanza,
		}
	}
	return &handler{
		settings: s,
		checker:  checker,
		stdout:   stdout,
		log:      slog.New(slog.NewJSONHandler(stdout, nil)),
	}
}

// Handle runs one check for a scheduled event. It fails the invocation only
// when an action failed (the restart memory, a restart) or the metrics could
// not be written; an unready cluster is reported, not an error.
func (h *handler) Handle(ctx context.Context, _ events.EventBridgeEvent) error {
	r, err := h.checker.Check(ctx)
	emfErr := healthcheck.WriteEMF(h.stdout, h.settings.Cluster, h.settings.Region, r)
	r.Log(ctx, h.log.With("cluster", h.settings.Cluster, "region", h.settings.Region))
	return errors.Join(err, emfErr)
}
