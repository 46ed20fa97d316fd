// Package firewall holds a region's security groups: one per node role,
// opening only the ports of DESIGN.md, and only to the roles that use them.
package firewall

import (
	"fmt"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgha/pgha/cluster"
)

// RoleHealthCheck stands for the health-checking Lambda, which runs in every
// data region (constructs/healthcheck owns its security group).
const RoleHealthCheck cluster.Role = "healthcheck"

// Flow is one kind of traffic between roles: From connects to To's Ports.
type Flow struct {
	From, To cluster.Role
	Ports    []int
	Why      string
	// Local flows stay within a region.
	Local bool
}

// Flows lists all the traffic between the cluster's nodes. Nothing else is
// opened between them. HAProxy's stats port (7000) is not among them: it
// is for operators, who reach it with SSM port forwarding, from the node
// itself. Nor is the replicas port (5001): the app writes, so it only
// connects to the leader port.
var Flows = []Flow{
	{cluster.RolePostgres, cluster.RolePostgres, []int{cluster.PortPostgres}, "replication", false},
	{cluster.RolePostgres, cluster.RolePostgres, []int{cluster.PortPatroni}, "Patroni member checks", false},
	{cluster.RolePostgres, cluster.RolePostgres, []int{cluster.PortPgBackRest}, "pgBackRest: a backup on a standby reaches the leader", false},
	{cluster.RolePostgres, cluster.RoleEtcd, []int{cluster.PortEtcdClient}, "Patroni DCS", false},
	{cluster.RoleEtcd, cluster.RoleEtcd, []int{cluster.PortEtcdPeer}, "etcd Raft", false},
	{cluster.RoleHAProxy, cluster.RolePostgres, []int{cluster.PortPostgres}, "client traffic", false},
	{cluster.RoleHAProxy, cluster.RolePostgres, []int{cluster.PortPatroni}, "health checks", false},
	{cluster.RoleApp, cluster.RoleHAProxy, []int{cluster.PortHAProxyWrite}, "database access through the leader", false},
	{RoleHealthCheck, cluster.RolePostgres, []int{cluster.PortPatroni}, "health check of every member", false},
	{RoleHealthCheck, cluster.RoleHAProxy, []int{cluster.PortHAProxyWrite}, "write check through every HAProxy", false},
	{RoleHealthCheck, cluster.RoleApp, []int{cluster.PortApp}, "readiness of the apps in the region", true},
}

// FirewallProps configures a Firewall.
type FirewallProps struct {
	// Vpc is the region's VPC. Required.
	Vpc awsec2.IVpc
	// Plan is the cluster's plan. Required.
	Plan *cluster.Plan
	// Region is the name of this region. Required.
	Region string
}

// Firewall holds one security group per role present in the region. Within
// the region, rules reference security groups; across regions (security
// groups cannot be referenced through an inter-region peering) they name
// the peer VPC's CIDR, and only for peers that run the source role.
//
// Egress is closed by default and opened to the cluster's flows and to
// HTTPS/HTTP (Debian's mirrors, SSM, Secrets Manager, ECR), so a node cannot
// reach other ports anywhere. No SSH, and no ingress from 0.0.0.0/0 except
// the app port from App.AllowedCIDRs.
type Firewall struct {
	constructs.Construct
	groups map[cluster.Role]awsec2.SecurityGroup
}

// NewFirewall creates the security groups and their rules.
func NewFirewall(scope constructs.Construct, id string, props *FirewallProps) *Firewall {
	this := constructs.NewConstruct(scope, &id)
	f := &Firewall{Construct: this, groups: map[cluster.Role]awsec2.SecurityGroup{}}
	p := props.Plan
	local := rolesIn(p, props.Region)
	count := map[cluster.Role]int{}
	for _, n := range p.InRegion(props.Region) {
		count[n.Role]++
	}
	for _, role := range cluster.Roles {
		if !local[role] {
			continue
		}
		sg := awsec2.NewSecurityGroup(this, jsii.String(groupID(role)), &awsec2.SecurityGroupProps{
			Vpc:              props.Vpc,
			Description:      jsii.String(fmt.Sprintf("pgha %s nodes (%s)", role, p.Config.Name)),
			AllowAllOutbound: jsii.Bool(false),
		})
		for _, port := range []int{443, 80} {
			what := map[int]string{443: "HTTPS to AWS APIs, ECR and Debian mirrors", 80: "HTTP to Debian mirrors (signed packages)"}[port]
			sg.AddEgressRule(awsec2.Peer_AnyIpv4(), awsec2.Port_Tcp(jsii.Number(float64(port))), jsii.String(what), nil)
		}
		f.groups[role] = sg
	}

	for _, fl := range Flows {
		for _, port := range fl.Ports {
			tcp := awsec2.Port_Tcp(jsii.Number(float64(port)))
			desc := fmt.Sprintf("%s from %s: %s", fl.To, fl.From, fl.Why)
			switch {
			case fl.From == RoleHealthCheck:
				// In the region: AllowHealthCheck, given the Lambda.
			case !local[fl.From] || !local[fl.To]:
			case fl.From == fl.To && count[fl.From] < 2:
				// A single node does not talk to itself over the network.
			case fl.From == fl.To:
				// AllowTo(itself) adds nothing: a self-reference needs this.
				f.groups[fl.From].Connections().AllowInternally(tcp, jsii.String(desc))
			default:
				f.groups[fl.From].Connections().AllowTo(f.groups[fl.To], tcp, jsii.String(desc))
			}
			for _, r := range p.Regions {
				if r.Name == props.Region || fl.Local {
					continue
				}
				peer := awsec2.Peer_Ipv4(jsii.String(r.CIDR.String()))
				remote := rolesIn(p, r.Name)
				if local[fl.To] && remote[fl.From] {
					f.groups[fl.To].AddIngressRule(peer, tcp, jsii.String(fmt.Sprintf("%s in %s", desc, r.Name)), nil)
				}
				if f.groups[fl.From] != nil && remote[fl.To] {
					f.groups[fl.From].AddEgressRule(peer, tcp, jsii.String(fmt.Sprintf("%s in %s from %s: %s", fl.To, r.Name, fl.From, fl.Why)), nil)
				}
			}
		}
	}

	if sg, ok := f.groups[cluster.RoleApp]; ok {
		for _, cidr := range p.Config.App.AllowedCIDRs {
			peer := awsec2.Peer_Ipv4(jsii.String(cidr))
			if strings.Contains(cidr, ":") {
				peer = awsec2.Peer_Ipv6(jsii.String(cidr))
			}
			sg.AddIngressRule(peer, awsec2.Port_Tcp(jsii.Number(cluster.PortApp)), jsii.String("app API from app.allowedCidrs"), nil)
		}
	}
	return f
}

// SecurityGroup returns the security group of a role, or nil when the
// region runs no node of that role.
func (f *Firewall) SecurityGroup(role cluster.Role) awsec2.SecurityGroup {
	return f.groups[role]
}

// AllowHealthCheck opens this region's nodes to the region's health-check
// Lambda, on the ports of the RoleHealthCheck flows. Only ingress is added:
// the Lambda's own security group holds its egress.
func (f *Firewall) AllowHealthCheck(checker awsec2.IConnectable) {
	source := (*checker.Connections().SecurityGroups())[0]
	for _, fl := range Flows {
		sg, ok := f.groups[fl.To]
		if fl.From != RoleHealthCheck || !ok {
			continue
		}
		for _, port := range fl.Ports {
			sg.AddIngressRule(source, awsec2.Port_Tcp(jsii.Number(float64(port))),
				jsii.String(fmt.Sprintf("%s from %s: %s", fl.To, fl.From, fl.Why)), nil)
		}
	}
}

func groupID(role cluster.Role) string {
	switch role {
	case cluster.RoleHAProxy:
		return "HAProxy"
	case cluster.RoleEtcd:
		return "Etcd"
	case cluster.RolePostgres:
		return "Postgres"
	default:
		return "App"
	}
}

func rolesIn(p *cluster.Plan, region string) map[cluster.Role]bool {
	out := map[cluster.Role]bool{}
	if r, ok := p.Region(region); ok && !r.Witness {
		out[RoleHealthCheck] = true
	}
	for _, n := range p.InRegion(region) {
		out[n.Role] = true
	}
	return out
}
