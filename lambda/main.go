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
// (healthcheck.Settings), written by constructs/healthcheck.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/pgha/pgha/healthcheck"
)

func main() {
	if err := run(context.Background(), os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// run builds the handler from the environment and hands it to the Lambda
// runtime, which calls it once per scheduled event.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	settings, err := healthcheck.ParseSettings([]byte(getenv(healthcheck.EnvSettings)))
	if err != nil {
		return err
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("load AWS config: %w", err)
	}
	h := newHandler(settings, ssm.NewFromConfig(awsCfg), secretsmanager.NewFromConfig(awsCfg), stdout)
	lambda.StartWithOptions(h.Handle, lambda.WithContext(ctx))
	return nil
}

// handler holds the clients one invocation needs; the runtime reuses it
// across invocations of a warm Lambda.
type handler struct {
	settings healthcheck.Settings
	checker  *healthcheck.Checker
	stdout   io.Writer // EMF documents
	log      *slog.Logger
}

func newHandler(s healthcheck.Settings, ssmClient ssmAPI, sm secretsAPI, stdout io.Writer) *handler {
	writes := &healthcheck.PGWriteChecker{
		Addrs:    s.HAProxy,
		User:     s.User,
		Database: s.Database,
		Password: &secretPassword{client: sm, name: s.SecretName},
		Timeout:  s.WriteTimeout(),
	}
	restarter := &ssmRestarter{client: ssmClient}
	store := &parameterStore{client: ssmClient, path: s.ParameterPath}
	checker := healthcheck.NewChecker(s, writes, restarter, store)
	if s.BootStatusPath != "" {
		checker.Boots = &bootReader{client: ssmClient, path: s.BootStatusPath}
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
