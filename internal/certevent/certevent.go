// Package certevent is the contract between the certificate issuer's CDK
// construct (constructs/tls) and its Lambda (lambda/certs): the function's
// environment, its custom resource's properties, and the schedule's input.
// It imports neither the CDK nor the AWS SDK, so that both sides share it.
package certevent

import (
	"encoding/json"

	"github.com/pgha/pgha/cluster"
)

// EnvCluster names the cluster the function issues certificates for; it
// refuses an event whose configuration names another.
const EnvCluster = "PGHA_CERTS_CLUSTER"

// ResourceType is the custom resource's type.
const ResourceType = "Custom::PghaCertificates"

// The custom resource's properties. CloudFormation hands every property
// value to the function as a string, so Config is JSON in a string.
const (
	// PropConfig is the cluster's configuration (cluster.Config as JSON).
	PropConfig = "Config"
	// PropRotation is Config.TLS.Rotation: an update that changes it
	// issues every node certificate again.
	PropRotation = "Rotation"
)

// ActionRenew is Renew.Action.
const ActionRenew = "renew"

// Renew is the schedule's input: the rule's target passes it to the
// function in place of EventBridge's own event.
type Renew struct {
	// Action is ActionRenew.
	Action string `json:"action"`
	// Config is the cluster's configuration (cluster.Config).
	Config json.RawMessage `json:"config"`
}

// Config is c as the issuer is given it.
func Config(c cluster.Config) ([]byte, error) { return json.Marshal(c) }

// RenewInput is the schedule's input for c.
func RenewInput(c cluster.Config) ([]byte, error) {
	cfg, err := Config(c)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Renew{Action: ActionRenew, Config: cfg})
}

// PhysicalID is the custom resource's physical ID: stable, so an update is
// never a replacement.
func PhysicalID(c cluster.Config) string { return c.Name + "-tls" }
