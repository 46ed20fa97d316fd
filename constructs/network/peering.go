package network

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/customresources"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// PeeringProps configures a Peering.
type PeeringProps struct {
	// Local is the network of the stack the peering is created in: the
	// requester. Required.
	Local *Network
	// Peer is the other region's network, in another stack of the same
	// account. Its VPC and route table IDs reach this stack by cross-region
	// reference, so the peer's stack must deploy first. Required.
	Peer *Network
}

// Peering is a VPC peering connection between two regions of the same
// account, with a route to the other VPC's CIDR in every route table of both
// VPCs.
//
// Both sides' routes are created by the local stack: the local ones as
// AWS::EC2::Route, the peer's through an AwsCustomResource that calls EC2's
// CreateRoute in the peer region. Creating the peer's routes in the peer's
// own stack would need the peering ID there, and the two stacks would then
// depend on each other. So the requester deploys after its peer and owns
// the whole link. Same-account cross-region peering needs no accepter:
// CloudFormation accepts it.
type Peering struct {
	constructs.Construct
	// Connection is the VPC peering connection.
	Connection awsec2.CfnVPCPeeringConnection
}

// NewPeering peers props.Local with props.Peer.
func NewPeering(scope constructs.Construct, id string, props *PeeringProps) *Peering {
	this := constructs.NewConstruct(scope, &id)
	local, peer := props.Local, props.Peer
	conn := awsec2.NewCfnVPCPeeringConnection(this, jsii.String("Connection"), &awsec2.CfnVPCPeeringConnectionProps{
		VpcId:      local.Vpc.VpcId(),
		PeerVpcId:  peer.Vpc.VpcId(),
		PeerRegion: jsii.String(peer.Region.Name),
		Tags: &[]*awscdk.CfnTag{
			{Key: jsii.String("Name"), Value: jsii.String(fmt.Sprintf("%s-%s", local.Region.Name, peer.Region.Name))},
		},
	})

	for i, rtb := range local.RouteTableIDs() {
		awsec2.NewCfnRoute(this, jsii.String(fmt.Sprintf("LocalRoute%d", i)), &awsec2.CfnRouteProps{
			RouteTableId:           rtb,
			DestinationCidrBlock:   jsii.String(peer.Region.CIDR.String()),
			VpcPeeringConnectionId: conn.Ref(),
		})
	}

	stack := awscdk.Stack_Of(this)
	for i, rtb := range peer.RouteTableIDs() {
		params := map[string]any{
			"RouteTableId":           rtb,
			"DestinationCidrBlock":   local.Region.CIDR.String(),
			"VpcPeeringConnectionId": conn.Ref(),
		}
		call := func(action string) *customresources.AwsSdkCall {
			c := &customresources.AwsSdkCall{
				Service:            jsii.String("EC2"),
				Action:             jsii.String(action),
				Region:             jsii.String(peer.Region.Name),
				Parameters:         params,
				PhysicalResourceId: customresources.PhysicalResourceId_Of(awscdk.Fn_Join(jsii.String(":"), &[]*string{rtb, jsii.String(local.Region.CIDR.String())})),
			}
			if action == "deleteRoute" {
				c.Parameters = map[string]any{"RouteTableId": rtb, "DestinationCidrBlock": local.Region.CIDR.String()}
				// Already gone (the peer VPC was deleted first): nothing to do.
				c.IgnoreErrorCodesMatching = jsii.String("InvalidRoute.NotFound|InvalidRouteTableID.NotFound")
			}
			return c
		}
		awsec2ARN := func(resource string, name *string) *string {
			return stack.FormatArn(&awscdk.ArnComponents{
				Service:      jsii.String("ec2"),
				Region:       jsii.String(peer.Region.Name),
				Resource:     jsii.String(resource),
				ResourceName: name,
			})
		}
		customresources.NewAwsCustomResource(this, jsii.String(fmt.Sprintf("PeerRoute%d", i)), &customresources.AwsCustomResourceProps{
			ResourceType: jsii.String("Custom::PeerRoute"),
			OnCreate:     call("createRoute"),
			// A replaced peering connection keeps the route, with the new target.
			OnUpdate:            call("replaceRoute"),
			OnDelete:            call("deleteRoute"),
			InstallLatestAwsSdk: jsii.Bool(false),
			Policy: customresources.AwsCustomResourcePolicy_FromStatements(&[]awsiam.PolicyStatement{
				awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
					Actions: jsii.Strings("ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"),
					Resources: &[]*string{
						awsec2ARN("route-table", rtb),
						awsec2ARN("vpc-peering-connection", conn.Ref()),
					},
				}),
			}),
		})
	}
	// The AwsCustomResource calls above share one Lambda function per
	// stack: nag.SuppressAwsCustomResource covers it.
	return &Peering{Construct: this, Connection: conn}
}
