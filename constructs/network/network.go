// Package network holds a region's VPC and the VPC peering between regions.
package network

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgha/pgha/cluster"
)

// SubnetMask is the size of every subnet: the plan cuts each VPC into /24s.
const SubnetMask = 24

// The VPC's subnet groups. Checker holds only the health-checking Lambda
// (cluster.RegionPlan.CheckerSubnets), so that Patroni's allowlist can
// name it without naming any node.
const (
	GroupPublic  = "Public"
	GroupPrivate = "Private"
	GroupChecker = "Checker"
)

// NetworkProps configures a Network.
type NetworkProps struct {
	// Region is the region's plan: its CIDR and the three zones the VPC
	// spans. The zones are given explicitly so that a region-only stack
	// gets all three without an availability-zones lookup. Required.
	Region cluster.RegionPlan
	// NatGateways is the number of NAT gateways. Nodes need the internet
	// only for packages, SSM and Secrets Manager, not for cluster traffic
	// (which crosses the peering), so one is enough for the default size.
	// Default: 1.
	NatGateways int
	// FlowLogRetention is how long the VPC flow logs are kept.
	// Default: awslogs.RetentionDays_THREE_MONTHS.
	FlowLogRetention awslogs.RetentionDays
}

// Network is a VPC over three availability zones: a public /24 (NAT
// gateway, app instances) and a private /24 (every other node) per zone,
// with flow logs to CloudWatch Logs. Subnets are allocated public first,
// then private, which is the order the plan assumes.
type Network struct {
	constructs.Construct
	// Vpc is the VPC.
	Vpc awsec2.Vpc
	// Region is the plan of the VPC's region.
	Region cluster.RegionPlan
}

// NewNetwork creates the VPC of one region. It panics when the synthesized
// subnets do not match the plan, since every fixed IP depends on them.
func NewNetwork(scope constructs.Construct, id string, props *NetworkProps) *Network {
	this := constructs.NewConstruct(scope, &id)
	nat := props.NatGateways
	if nat == 0 {
		nat = 1
	}
	retention := props.FlowLogRetention
	if retention == "" {
		retention = awslogs.RetentionDays_THREE_MONTHS
	}
	subnetConfig := []*awsec2.SubnetConfiguration{
		{Name: jsii.String(GroupPublic), SubnetType: awsec2.SubnetType_PUBLIC, CidrMask: jsii.Number(SubnetMask)},
		{Name: jsii.String(GroupPrivate), SubnetType: awsec2.SubnetType_PRIVATE_WITH_EGRESS, CidrMask: jsii.Number(SubnetMask)},
	}
	if len(props.Region.CheckerSubnets) > 0 {
		// Last, so that the CDK allocates them after the /24s and the
		// existing subnets keep their CIDRs and IDs.
		subnetConfig = append(subnetConfig, &awsec2.SubnetConfiguration{
			Name: jsii.String(GroupChecker), SubnetType: awsec2.SubnetType_PRIVATE_WITH_EGRESS, CidrMask: jsii.Number(cluster.CheckerSubnetBits),
		})
	}
	vpc := awsec2.NewVpc(this, jsii.String("Vpc"), &awsec2.VpcProps{
		IpAddresses:                  awsec2.IpAddresses_Cidr(jsii.String(props.Region.CIDR.String())),
		AvailabilityZones:            jsii.Strings(props.Region.AZs...),
		NatGateways:                  jsii.Number(float64(nat)),
		SubnetConfiguration:          &subnetConfig,
		EnableDnsHostnames:           jsii.Bool(true),
		EnableDnsSupport:             jsii.Bool(true),
		RestrictDefaultSecurityGroup: jsii.Bool(true),
	})
	logs := awslogs.NewLogGroup(this, jsii.String("FlowLogs"), &awslogs.LogGroupProps{
		Retention:     retention,
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	role := awsiam.NewRole(this, jsii.String("FlowLogRole"), &awsiam.RoleProps{
		AssumedBy: awsiam.NewServicePrincipal(jsii.String("vpc-flow-logs.amazonaws.com"), nil),
	})
	vpc.AddFlowLog(jsii.String("FlowLog"), &awsec2.FlowLogOptions{
		Destination: awsec2.FlowLogDestination_ToCloudWatchLogs(logs, role),
		TrafficType: awsec2.FlowLogTrafficType_ALL,
	})
	n := &Network{Construct: this, Vpc: vpc, Region: props.Region}
	if err := n.checkSubnets(); err != nil {
		panic(err)
	}
	return n
}

// checkSubnets compares the subnets the CDK allocated with the plan's.
func (n *Network) checkSubnets() error {
	for _, s := range []struct {
		kind    string
		subnets *[]awsec2.ISubnet
		want    []netip.Prefix
	}{
		{"public", n.group(GroupPublic), n.Region.PublicSubnets},
		{"private", n.group(GroupPrivate), n.Region.PrivateSubnets},
		{"checker", n.group(GroupChecker), n.Region.CheckerSubnets},
	} {
		var got []string
		for _, sn := range *s.subnets {
			got = append(got, *sn.Ipv4CidrBlock())
		}
		var want []string
		for _, p := range s.want {
			want = append(want, p.String())
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("network %s: %s subnets %v do not match the plan's %v", n.Region.Name, s.kind, got, want)
		}
	}
	return nil
}

// Subnet returns the subnet a node sits in: the public or private subnet of
// its availability zone.
func (n *Network) Subnet(node cluster.Node) awsec2.ISubnet {
	subnets := n.group(GroupPrivate)
	if node.Public {
		subnets = n.group(GroupPublic)
	}
	return (*subnets)[node.AZIndex]
}

// group returns the subnets of one subnet group, in zone order (none for
// a group the VPC does not have).
func (n *Network) group(name string) *[]awsec2.ISubnet {
	if name == GroupChecker && len(n.Region.CheckerSubnets) == 0 {
		return &[]awsec2.ISubnet{}
	}
	return n.Vpc.SelectSubnets(&awsec2.SubnetSelection{SubnetGroupName: jsii.String(name)}).Subnets
}

// RouteTableIDs returns the IDs of every route table of the VPC, public
// subnets' first, then private, then checker subnets', in zone order: each
// needs a route to every peer region (the checker calls every region's
// Patroni). The order keeps the existing routes' construct IDs.
func (n *Network) RouteTableIDs() []*string {
	var ids []*string
	for _, subnets := range []*[]awsec2.ISubnet{n.group(GroupPublic), n.group(GroupPrivate), n.group(GroupChecker)} {
		for _, s := range *subnets {
			ids = append(ids, s.RouteTable().RouteTableId())
		}
	}
	return ids
}
