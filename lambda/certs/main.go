// Command certs is pgha's certificate issuer on AWS: a Lambda that keeps
// the cluster CA and every PostgreSQL and etcd node's certificate current
// in Secrets Manager (package certs does the work, package pki the
// cryptography). It is invoked two ways, and tells them apart by their keys
// (parseEvent):
//
//   - as a CloudFormation custom resource (certevent.ResourceType) in the
//     primary region's stack, at every deploy. Create and Update make the
//     secrets current; an Update whose Rotation property changed issues
//     every node certificate again (tls.rotation). Delete does nothing: the
//     TLS secrets are retained when the stack goes, like the passwords,
//     since the data volumes and the nodes that trust the CA may outlive it
//     (remove them by hand, see the README).
//   - by a daily EventBridge schedule whose input is certevent.Renew, which
//     renews each certificate that expires within pki.RenewBefore.
//
// The configuration comes with each event (certevent); the environment
// names the only cluster it accepts (certevent.EnvCluster). It is built
// with `-tags lambda.norpc` for the provided.al2023 runtime by
// constructs/tls.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgha/pgha/certs"
	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/certevent"
)

func main() {
	if err := run(context.Background(), os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "certs:", err)
		os.Exit(1)
	}
}

// run builds the handler from the environment and hands it to the Lambda
// runtime, which calls it once per event.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	name := getenv(certevent.EnvCluster)
	if name == "" {
		return fmt.Errorf("%s is not set", certevent.EnvCluster)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("load AWS config: %w", err)
	}
	h := newHandler(name, secretsManagerEnsure(awsCfg), slog.New(slog.NewJSONHandler(stdout, nil)))
	lambda.StartWithOptions(h.Handle, lambda.WithContext(ctx))
	return nil
}

// ensureFunc makes plan p's TLS secrets current (certs.Ensure).
type ensureFunc func(ctx context.Context, p *cluster.Plan, opts certs.Options) (certs.Result, error)

// secretsManagerEnsure is certs.Ensure with a Secrets Manager client per
// region of the plan, built once per call.
func secretsManagerEnsure(cfg aws.Config) ensureFunc {
	return func(ctx context.Context, p *cluster.Plan, opts certs.Options) (certs.Result, error) {
		clients := map[string]certs.Client{}
		return certs.Ensure(ctx, p, func(region string) certs.Client {
			c, ok := clients[region]
			if !ok {
				c = secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) { o.Region = region })
				clients[region] = c
			}
			return c
		}, opts)
	}
}

// handler holds what an invocation needs; the runtime reuses it across
// invocations of a warm Lambda.
type handler struct {
	cluster string // the only cluster this issuer serves
	ensure  ensureFunc
	log     *slog.Logger
	// customResource answers CloudFormation (cfn.LambdaWrap of
	// onCustomResource).
	customResource cfn.CustomResourceLambdaFunction
}

func newHandler(clusterName string, ensure ensureFunc, log *slog.Logger) *handler {
	h := &handler{cluster: clusterName, ensure: ensure, log: log}
	h.customResource = cfn.LambdaWrap(h.onCustomResource)
	return h
}

// Handle takes one event. A custom resource request is answered to
// CloudFormation (SUCCESS or FAILED, with the error as reason); Handle
// fails only when the answer could not be sent, so that Lambda retries the
// invocation. A renewal fails the invocation when it did not complete,
// which the issuer's error alarm watches.
func (h *handler) Handle(ctx context.Context, raw json.RawMessage) error {
	ev, err := parseEvent(raw)
	if err != nil {
		h.log.Error("unknown event", "error", err)
		return err
	}
	if ev.custom != nil {
		_, err := h.customResource(ctx, *ev.custom)
		return err
	}
	p, err := h.plan(ev.renew.Config)
	if err != nil {
		return err
	}
	return h.makeCurrent(ctx, p, false, "schedule")
}

// onCustomResource handles a CloudFormation request; cfn.LambdaWrap sends
// the answer.
func (h *handler) onCustomResource(ctx context.Context, e cfn.Event) (string, map[string]any, error) {
	if e.RequestType == cfn.RequestDelete {
		h.log.Info("custom resource deleted: the TLS secrets are kept", "physicalResourceId", e.PhysicalResourceID)
		return e.PhysicalResourceID, nil, nil
	}
	text, ok := e.ResourceProperties[certevent.PropConfig].(string)
	if !ok {
		return "", nil, fmt.Errorf("resource property %s is %T, want the configuration as a JSON string", certevent.PropConfig, e.ResourceProperties[certevent.PropConfig])
	}
	p, err := h.plan([]byte(text))
	if err != nil {
		return "", nil, err
	}
	rotate := e.RequestType == cfn.RequestUpdate && rotation(e.ResourceProperties) != rotation(e.OldResourceProperties)
	return certevent.PhysicalID(p.Config), nil, h.makeCurrent(ctx, p, rotate, string(e.RequestType))
}

// rotation is the Rotation property as CloudFormation passes it (a
// string); a resource without it has never rotated.
func rotation(props map[string]any) string {
	v, ok := props[certevent.PropRotation]
	if !ok || v == nil {
		return "0"
	}
	return fmt.Sprint(v)
}

// plan parses and plans an event's configuration, which must be this
// issuer's cluster's.
func (h *handler) plan(data []byte) (*cluster.Plan, error) {
	// cluster.Parse takes nothing for the defaults: an event must say
	// which cluster it means.
	if d := bytes.TrimSpace(data); len(d) == 0 || string(d) == "null" {
		return nil, errors.New("the event has no configuration")
	}
	c, err := cluster.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("the event's configuration: %w", err)
	}
	if c.Name != h.cluster {
		return nil, fmt.Errorf("the event's configuration is cluster %q's; this issuer serves %q", c.Name, h.cluster)
	}
	return cluster.NewPlan(c)
}

// makeCurrent runs Ensure and logs what it wrote.
func (h *handler) makeCurrent(ctx context.Context, p *cluster.Plan, rotate bool, trigger string) error {
	log := h.log.With("cluster", p.Config.Name, "trigger", trigger, "rotate", rotate)
	res, err := h.ensure(ctx, p, certs.Options{Rotate: rotate, Log: log})
	if err != nil {
		log.Error("the TLS secrets are not current", "error", err)
		return fmt.Errorf("make the TLS secrets of %s current: %w", p.Config.Name, err)
	}
	log.Info("the TLS secrets are current", "createdCA", res.CreatedCA, "issued", res.Issued)
	return nil
}

// errUnknownEvent means an event is neither a custom resource request nor
// the schedule's input.
var errUnknownEvent = errors.New("neither a CloudFormation custom resource request nor the schedule's renew input")

// event is one invocation's event: exactly one field is set.
type event struct {
	custom *cfn.Event
	renew  *certevent.Renew
}

// parseEvent tells the two events apart by their top-level keys, matched
// exactly (encoding/json alone matches keys regardless of case): a custom
// resource request has RequestType, ResponseURL and StackId, the schedule's
// input an "action". An event with both, or neither, is refused, as is an
// unknown request type or action.
func parseEvent(raw []byte) (event, error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return event{}, fmt.Errorf("%w: not a JSON object: %v", errUnknownEvent, err)
	}
	has := func(k string) bool { _, ok := keys[k]; return ok }
	custom := has("RequestType") && has("ResponseURL") && has("StackId")
	renew := has("action")
	switch {
	case custom && renew:
		return event{}, fmt.Errorf("%w: it has the keys of both", errUnknownEvent)
	case custom:
		var e cfn.Event
		if err := json.Unmarshal(raw, &e); err != nil {
			return event{}, fmt.Errorf("custom resource request: %w", err)
		}
		switch e.RequestType {
		case cfn.RequestCreate, cfn.RequestUpdate, cfn.RequestDelete:
		default:
			return event{}, fmt.Errorf("custom resource request: unknown RequestType %q", e.RequestType)
		}
		if e.ResponseURL == "" {
			return event{}, errors.New("custom resource request: empty ResponseURL")
		}
		return event{custom: &e}, nil
	case renew:
		var r certevent.Renew
		if err := json.Unmarshal(raw, &r); err != nil {
			return event{}, fmt.Errorf("renew input: %w", err)
		}
		if r.Action != certevent.ActionRenew {
			return event{}, fmt.Errorf("renew input: unknown action %q", r.Action)
		}
		if len(r.Config) == 0 {
			return event{}, errors.New("renew input: no config")
		}
		return event{renew: &r}, nil
	}
	return event{}, errUnknownEvent
}
