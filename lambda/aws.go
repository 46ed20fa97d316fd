package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/pgha/pgha/healthcheck"
	"github.com/pgha/pgha/render"
)

// The SSM Run Command that restarts the app.
const (
	restartDocument = "AWS-RunShellScript"
	restartCommand  = render.AppRestartCommand
)

// awsCallTimeout bounds each AWS API call (the SDK sets none), so one hung
// call cannot use up the whole invocation.
const awsCallTimeout = 10 * time.Second

// ssmAPI is the part of the SSM client the handler uses.
type ssmAPI interface {
	SendCommand(context.Context, *ssm.SendCommandInput, ...func(*ssm.Options)) (*ssm.SendCommandOutput, error)
	GetParameter(context.Context, *ssm.GetParameterInput, ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
	PutParameter(context.Context, *ssm.PutParameterInput, ...func(*ssm.Options)) (*ssm.PutParameterOutput, error)
	GetParametersByPath(context.Context, *ssm.GetParametersByPathInput, ...func(*ssm.Options)) (*ssm.GetParametersByPathOutput, error)
}

// volumeReader reads the data volumes' reports under its path, as
// bootReader reads the boot reports (render.VolumeStatusParameter).
type volumeReader struct{ *bootReader }

// VolumeStatuses implements healthcheck.VolumeReader.
func (v volumeReader) VolumeStatuses(ctx context.Context) (map[string]string, error) {
	return v.BootStatuses(ctx)
}

// bootReader reads the nodes' boot statuses under path (one String
// parameter per node, render.BootStatusParameter).
type bootReader struct {
	client ssmAPI
	path   string
}

// BootStatuses implements healthcheck.BootReader.
func (b *bootReader) BootStatuses(ctx context.Context) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	out := map[string]string{}
	in := &ssm.GetParametersByPathInput{Path: aws.String(b.path)}
	for {
		page, err := b.client.GetParametersByPath(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("ssm GetParametersByPath %s: %w", b.path, err)
		}
		for _, p := range page.Parameters {
			name := aws.ToString(p.Name)
			out[name[strings.LastIndex(name, "/")+1:]] = aws.ToString(p.Value)
		}
		if aws.ToString(page.NextToken) == "" {
			return out, nil
		}
		in.NextToken = page.NextToken
	}
}

// secretsAPI is the part of the Secrets Manager client the handler uses.
type secretsAPI interface {
	GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// ssmRestarter restarts the app service through SSM Run Command.
type ssmRestarter struct{ client ssmAPI }

// Restart implements healthcheck.Restarter. It returns once SSM accepted
// the command; the command runs on the instance asynchronously, and the
// next check sees whether the app came up.
func (r *ssmRestarter) Restart(ctx context.Context, app healthcheck.App) error {
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	out, err := r.client.SendCommand(ctx, &ssm.SendCommandInput{
		DocumentName:   aws.String(restartDocument),
		InstanceIds:    []string{app.InstanceID},
		Parameters:     map[string][]string{"commands": {restartCommand}},
		Comment:        aws.String("pgha: restart " + app.Name + ", the cluster is ready"),
		TimeoutSeconds: aws.Int32(60),
	})
	if err != nil {
		return fmt.Errorf("ssm SendCommand to %s: %w", app.InstanceID, err)
	}
	if out.Command == nil || aws.ToString(out.Command.CommandId) == "" {
		return fmt.Errorf("ssm SendCommand to %s: no command id in the answer", app.InstanceID)
	}
	return nil
}

// parameterStore keeps each app's last restart in SSM Parameter Store,
// one String parameter per instance under path.
type parameterStore struct {
	client ssmAPI
	path   string
}

// LastRestart implements healthcheck.Store.
func (s *parameterStore) LastRestart(ctx context.Context, app healthcheck.App) (time.Time, error) {
	name := healthcheck.RestartParameterName(s.path, app)
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	out, err := s.client.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name)})
	var notFound *ssmtypes.ParameterNotFound
	if errors.As(err, &notFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("ssm GetParameter %s: %w", name, err)
	}
	if out.Parameter == nil {
		return time.Time{}, fmt.Errorf("ssm GetParameter %s: no parameter in the answer", name)
	}
	return healthcheck.ParseRestartTime(aws.ToString(out.Parameter.Value))
}

// RecordRestart implements healthcheck.Store.
func (s *parameterStore) RecordRestart(ctx context.Context, app healthcheck.App, t time.Time) error {
	name := healthcheck.RestartParameterName(s.path, app)
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	_, err := s.client.PutParameter(ctx, &ssm.PutParameterInput{
		Name:        aws.String(name),
		Value:       aws.String(healthcheck.FormatRestartTime(t)),
		Type:        ssmtypes.ParameterTypeString,
		Overwrite:   aws.Bool(true),
		Description: aws.String("last restart of " + app.Name + " by the pgha health checker"),
	})
	if err != nil {
		return fmt.Errorf("ssm PutParameter %s: %w", name, err)
	}
	return nil
}

// secretPassword reads the health-check role's password from Secrets
// Manager on every call, so a rotated password is picked up at the next
// check. The secret is either the bare password or a JSON object with a
// "password" key (what Secrets Manager's generated secrets hold).
type secretPassword struct {
	client secretsAPI
	name   string
}

// Password implements healthcheck.PasswordSource.
func (p *secretPassword) Password(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	out, err := p.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(p.name)})
	if err != nil {
		return "", fmt.Errorf("secretsmanager GetSecretValue %s: %w", p.name, err)
	}
	return passwordFromSecret(aws.ToString(out.SecretString))
}

func passwordFromSecret(s string) (string, error) {
	if strings.HasPrefix(strings.TrimSpace(s), "{") {
		var v struct {
			Password string `json:"password"`
		}
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return "", fmt.Errorf("secret is JSON but not an object with a password: %w", err)
		}
		if v.Password == "" {
			return "", errors.New(`secret is a JSON object without a "password" key`)
		}
		return v.Password, nil
	}
	if s == "" {
		return "", errors.New("secret is empty")
	}
	return s, nil
}
