// Package etcd holds a region's members of the dedicated etcd cluster
// Patroni uses as its DCS.
package etcd

import (
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/constructs-go/constructs/v10"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/constructs/network"
	"github.com/pgha/pgha/constructs/node"
	"github.com/pgha/pgha/constructs/secrets"
)

// EtcdProps configures Etcd.
type EtcdProps struct {
	// Plan is the cluster's plan. Required.
	Plan *cluster.Plan
	// Region is the region whose etcd members to create. Required.
	Region string
	// Network is the region's network. Required.
	Network *network.Network
	// SecurityGroup is the etcd members' security group. Required.
	SecurityGroup awsec2.ISecurityGroup
	// Secrets are the cluster's secrets; the members read the CA's
	// certificate and each its own certificate and key. Required.
	Secrets *secrets.Secrets
}

// Etcd is the etcd members of one region. They read no password. Each has
// an instance role of its own (Node.Role), so that only it may read its TLS
// private key. Instances have termination protection: a lost member must be
// removed from and re-added to the cluster by hand.
type Etcd struct {
	constructs.Construct
	// Nodes are the instances, in plan order (construct IDs: their
	// region-local IDs, "etcd1", ...; their roles' "Role" under them).
	Nodes []*node.Node
}

// NewEtcd creates the region's etcd members.
func NewEtcd(scope constructs.Construct, id string, props *EtcdProps) *Etcd {
	this := constructs.NewConstruct(scope, &id)
	e := &Etcd{Construct: this}
	for _, n := range props.Plan.Select(props.Region, cluster.RoleEtcd) {
		nd := node.NewNode(this, n.ID, &node.NodeProps{
			Plan:                  props.Plan,
			Node:                  n,
			Network:               props.Network,
			SecurityGroup:         props.SecurityGroup,
			InstanceType:          props.Plan.Config.Instances.Etcd,
			TerminationProtection: true,
		})
		props.Secrets.GrantReadTrust(nd.Role)
		props.Secrets.GrantReadCertificate(nd.Role, n)
		e.Nodes = append(e.Nodes, nd)
	}
	return e
}
