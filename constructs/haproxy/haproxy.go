// Package haproxy holds a region's HAProxy nodes, which route clients to
// the PostgreSQL leader (port 5000) and replicas (5001).
package haproxy

import (
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/constructs-go/constructs/v10"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/constructs/nag"
	"github.com/pgha/pgha/constructs/network"
	"github.com/pgha/pgha/constructs/node"
	"github.com/pgha/pgha/constructs/secrets"
)

// HAProxyProps configures HAProxy.
type HAProxyProps struct {
	// Plan is the cluster's plan. Required.
	Plan *cluster.Plan
	// Region is the region whose HAProxy nodes to create. Required.
	Region string
	// Network is the region's network. Required.
	Network *network.Network
	// SecurityGroup is the HAProxy nodes' security group. Required.
	SecurityGroup awsec2.ISecurityGroup
	// Secrets are the cluster's secrets; the nodes read the passwords
	// cluster.SecretsFor(RoleHAProxy) lists and the CA's certificate.
	// Required.
	Secrets *secrets.Secrets
}

// HAProxy is the HAProxy nodes of one region. They are stateless (their
// configuration comes from the plan, their stats password from Secrets
// Manager), share one role, and have no termination protection.
type HAProxy struct {
	constructs.Construct
	// Role is the nodes' instance role.
	Role awsiam.Role
	// Nodes are the instances, in plan order (construct IDs: their region-local IDs, "haproxy1", ...).
	Nodes []*node.Node
}

// NewHAProxy creates the region's HAProxy nodes.
func NewHAProxy(scope constructs.Construct, id string, props *HAProxyProps) *HAProxy {
	this := constructs.NewConstruct(scope, &id)
	h := &HAProxy{Construct: this, Role: node.NewRole(this, "Role", cluster.RoleHAProxy)}
	props.Secrets.GrantRead(h.Role, cluster.SecretsFor(cluster.RoleHAProxy)...)
	props.Secrets.GrantReadTrust(h.Role)
	for _, n := range props.Plan.Select(props.Region, cluster.RoleHAProxy) {
		nd := node.NewNode(this, n.ID, &node.NodeProps{
			Plan:          props.Plan,
			Node:          n,
			Network:       props.Network,
			SecurityGroup: props.SecurityGroup,
			Role:          h.Role,
			InstanceType:  props.Plan.Config.Instances.HAProxy,
		})
		nag.Suppress(nd.Instance, "AwsSolutions-EC29",
			"HAProxy nodes are stateless (their configuration is rendered from the plan) and are meant to be replaced; "+
				"termination protection would only block that. The stateful PostgreSQL and etcd nodes have it.")
		h.Nodes = append(h.Nodes, nd)
	}
	return h
}
