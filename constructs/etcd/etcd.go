// Package etcd holds a region's members of the dedicated etcd cluster
// Patroni uses as its DCS.
package etcd

import (
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/constructs-go/constructs/v10"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/constructs/network"
	"github.com/pgha/pgha/constructs/node"
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
}

// Etcd is the etcd members of one region. They read no secret. Instances
// have termination protection: a lost member must be removed from and
// re-added to the cluster by hand.
type Etcd struct {
	constructs.Construct
	// Role is the members' instance role.
	Role awsiam.Role
	// Nodes are the instances, in plan order (construct IDs: their region-local IDs, "etcd1", ...).
	Nodes []*node.Node
}

// NewEtcd creates the region's etcd members.
func NewEtcd(scope constructs.Construct, id string, props *EtcdProps) *Etcd {
	this := constructs.NewConstruct(scope, &id)
	e := &Etcd{Construct: this, Role: node.NewRole(this, "Role", cluster.RoleEtcd)}
	for _, n := range props.Plan.Select(props.Region, cluster.RoleEtcd) {
		e.Nodes = append(e.Nodes, node.NewNode(this, n.ID, &node.NodeProps{
			Plan:                  props.Plan,
			Node:                  n,
			Network:               props.Network,
			SecurityGroup:         props.SecurityGroup,
			Role:                  e.Role,
			InstanceType:          props.Plan.Config.Instances.Etcd,
			TerminationProtection: true,
		}))
	}
	return e
}
