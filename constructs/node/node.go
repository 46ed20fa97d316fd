// Package node is one EC2 instance of the cluster, as every role runs it:
// Debian 13, a fixed private IP, IMDSv2, encrypted gp3 root volume, the
// boot script as user data, SSM instead of SSH.
package node

import (
	"encoding/base64"
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/customresources"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/constructs/nag"
	"github.com/pgha/pgha/constructs/network"
	"github.com/pgha/pgha/render"
)

// Tag keys on every instance (and its volumes).
const (
	TagCluster = "pgha:cluster"
	TagRole    = "pgha:role"
)

// RootDevice is the root device name of Debian's AMIs.
const RootDevice = "/dev/xvda"

// DebianImageParameter is the SSM public parameter Debian publishes its
// latest Debian 13 (trixie) AMI under, for arch "arm64" or "amd64"
// (https://wiki.debian.org/Cloud/AmazonEC2Image).
func DebianImageParameter(arch string) string {
	return "/aws/service/debian/release/13/latest/" + arch
}

// NewRole returns an instance role shared by the nodes of one role: EC2 may
// assume it, and it carries AmazonSSMManagedInstanceCore so that operators
// reach the nodes with Session Manager (there are no key pairs and no SSH).
func NewRole(scope constructs.Construct, id string, role cluster.Role) awsiam.Role {
	return newRole(scope, id, fmt.Sprintf("pgha %s nodes", role))
}

func newRole(scope constructs.Construct, id, description string) awsiam.Role {
	r := awsiam.NewRole(scope, &id, &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("ec2.amazonaws.com"), nil),
		Description: jsii.String(description),
		ManagedPolicies: &[]awsiam.IManagedPolicy{
			awsiam.ManagedPolicy_FromAwsManagedPolicyName(jsii.String("AmazonSSMManagedInstanceCore")),
		},
	})
	nag.Suppress(r, "AwsSolutions-IAM4",
		"AmazonSSMManagedInstanceCore is AWS's maintained minimum for the SSM agent (Session Manager is the only way in: no SSH, no key pairs); "+
			"a copy would drift from what the agent needs.",
		"Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore")
	return r
}

// NodeProps configures a Node.
type NodeProps struct {
	// Plan is the cluster's plan. Required.
	Plan *cluster.Plan
	// Node is the node to create, from Plan. Required.
	Node cluster.Node
	// Network is the node's region's network; the node goes into its
	// subnet for Node.Subnet. Required.
	Network *network.Network
	// SecurityGroup is the node's role's security group. Required.
	SecurityGroup awsec2.ISecurityGroup
	// Role is the instance role, shared with the other nodes of the role in
	// the region. Default: a role of this node's own (construct ID "Role",
	// see NewRole), in an instance profile of its own (construct ID
	// "InstanceProfile"), for nodes that read a secret no other node may:
	// their TLS private key.
	Role awsiam.IRole
	// InstanceType is the EC2 instance type, e.g. "t4g.medium". Required.
	InstanceType string
	// TerminationProtection sets the instance's API termination protection:
	// for stateful nodes, whose loss costs a rebuild. Default: false.
	TerminationProtection bool
	// PublicIP gives the instance a public IPv4 address: nodes in public
	// subnets have no NAT and need one to reach the internet. Default: false.
	PublicIP bool
}

// Node is one EC2 instance.
type Node struct {
	constructs.Construct
	// Instance is the EC2 instance, construct ID "Instance".
	Instance awsec2.Instance
	// Role is the instance's role: NodeProps.Role, or the node's own.
	Role awsiam.IRole
	// Spec is the plan's node.
	Spec cluster.Node
	// UserData is the boot script, as rendered (render.BootScript); the
	// instance's user data is its compressed form (render.UserData).
	UserData string
}

// NewNode creates the instance of props.Node. It panics when the boot
// script cannot be rendered: the plan was validated, so that is a bug.
func NewNode(scope constructs.Construct, id string, props *NodeProps) *Node {
	this := constructs.NewConstruct(scope, &id)
	n, cfg := props.Node, props.Plan.Config
	script, err := render.BootScript(props.Plan, n)
	if err != nil {
		panic(err)
	}
	userData, err := render.UserData(props.Plan, n)
	if err != nil {
		panic(err)
	}
	if len(userData) > render.MaxUserData {
		awscdk.Annotations_Of(this).AddError(jsii.String(fmt.Sprintf(
			"the user data of %s is %d bytes compressed, over EC2's %d-byte limit", n.Name, len(userData), render.MaxUserData)))
	}
	arch := "arm64"
	if cfg.Instances.Architecture == "x86_64" {
		arch = "amd64"
	}
	ami, ok := cfg.Instances.Images[n.Region]
	if !ok {
		ami = *debianImage(this, arch)
	}
	image := awsec2.MachineImage_GenericLinux(&map[string]*string{n.Region: jsii.String(ami)}, nil)
	role, shared := props.Role, props.Role
	var profile awsiam.IInstanceProfile
	if role == nil {
		own := newRole(this, "Role", fmt.Sprintf("pgha %s node %s", n.Role, n.Name))
		// A profile of its own, not the one the CDK makes under the
		// instance for a shared role ("InstanceInstanceProfile"): a role
		// swapped inside an existing profile reaches a running instance
		// only eventually, and may not until the profile is associated
		// again or the instance restarted
		// (https://docs.aws.amazon.com/IAM/latest/APIReference/API_AddRoleToInstanceProfile.html).
		// Changing the instance's IamInstanceProfile instead is an update
		// without interruption ("Update requires: No interruption": EC2
		// replaces the running instance's profile association), so a node
		// that had the shared role keeps its instance, IP and volume
		// (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-ec2-instance.html#cfn-ec2-instance-iaminstanceprofile).
		profile = awsiam.NewInstanceProfile(this, jsii.String("InstanceProfile"), &awsiam.InstanceProfileProps{Role: own})
		role = own
	}
	instance := awsec2.NewInstance(this, jsii.String("Instance"), &awsec2.InstanceProps{
		Vpc:             props.Network.Vpc,
		VpcSubnets:      &awsec2.SubnetSelection{Subnets: &[]awsec2.ISubnet{props.Network.Subnet(n)}},
		InstanceType:    awsec2.NewInstanceType(jsii.String(props.InstanceType)),
		MachineImage:    image,
		SecurityGroup:   props.SecurityGroup,
		Role:            shared,
		InstanceProfile: profile,
		// A fixed IP cannot move to a replacement instance while the old one
		// holds it, so changing the boot script must not replace the node.
		UserDataCausesReplacement: jsii.Bool(false),
		PrivateIpAddress:          jsii.String(n.IP.String()),
		AssociatePublicIpAddress:  jsii.Bool(props.PublicIP),
		InstanceName:              jsii.String(cfg.Name + "-" + n.Name),
		HttpTokens:                awsec2.HttpTokens_REQUIRED,
		HttpEndpoint:              jsii.Bool(true),
		HttpPutResponseHopLimit:   jsii.Number(hopLimit(n.Role)),
		DetailedMonitoring:        jsii.Bool(true),
		DisableApiTermination:     jsii.Bool(props.TerminationProtection),
		EbsOptimized:              jsii.Bool(true),
		BlockDevices: &[]*awsec2.BlockDevice{{
			DeviceName: jsii.String(RootDevice),
			Volume: awsec2.BlockDeviceVolume_Ebs(jsii.Number(float64(cfg.Instances.RootVolumeGiB)), &awsec2.EbsDeviceOptions{
				VolumeType:          awsec2.EbsDeviceVolumeType_GP3,
				Encrypted:           jsii.Bool(true),
				DeleteOnTermination: jsii.Bool(true),
			}),
		}},
		PropagateTagsToVolumeOnCreation: jsii.Bool(true),
	})
	// The user data is binary (gzip), which a template's string cannot
	// hold: the property takes it base64-encoded, as EC2's API does, in
	// place of the CDK's Fn::Base64 of a text.
	// https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-ec2-instance.html#cfn-ec2-instance-userdata
	instance.Node().DefaultChild().(awsec2.CfnInstance).AddPropertyOverride(
		jsii.String("UserData"), jsii.String(base64.StdEncoding.EncodeToString(userData)))
	Tag(instance, cfg.Name, n.Role)
	grantBootStatus(this, props.Plan, n, role)
	return &Node{Construct: this, Instance: instance, Role: role, Spec: n, UserData: script}
}

// debianImage returns the AMI of the stack's Debian image: Debian's latest
// at the stack's first deploy, read once from Debian's SSM public parameter
// by a custom resource that has no update call, and kept from then on. A
// template parameter of type AWS::SSM::Parameter::Value would be resolved
// again at every deploy, and a new Debian release would then make
// CloudFormation replace every instance, which their fixed IPs refuse.
// https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.custom_resources.AwsCustomResourceProps.html
// (onUpdate: "Default: no call").
func debianImage(scope constructs.Construct, arch string) *string {
	stack := awscdk.Stack_Of(scope)
	id := "DebianImage-" + arch
	cr, ok := stack.Node().TryFindChild(jsii.String(id)).(customresources.AwsCustomResource)
	if !ok {
		param := DebianImageParameter(arch)
		cr = customresources.NewAwsCustomResource(stack, jsii.String(id), &customresources.AwsCustomResourceProps{
			ResourceType: jsii.String("Custom::DebianImage"),
			OnCreate: &customresources.AwsSdkCall{
				Service:            jsii.String("SSM"),
				Action:             jsii.String("getParameter"),
				Parameters:         map[string]any{"Name": param},
				PhysicalResourceId: customresources.PhysicalResourceId_FromResponse(jsii.String("Parameter.Value")),
			},
			InstallLatestAwsSdk: jsii.Bool(false),
			Policy: customresources.AwsCustomResourcePolicy_FromStatements(&[]awsiam.PolicyStatement{
				awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
					Actions: jsii.Strings("ssm:GetParameter"),
					// Public parameters have no account in their ARN.
					Resources: jsii.Strings(*stack.FormatArn(&awscdk.ArnComponents{
						Service: jsii.String("ssm"), Account: jsii.String(""),
						Resource: jsii.String("parameter"), ResourceName: jsii.String(param[1:]),
					})),
				}),
			}),
		})
	}
	return cr.GetResponseField(jsii.String("Parameter.Value"))
}

// grantBootStatus lets node n's role write n's boot status parameter and,
// on a PostgreSQL node, its data volume's report.
func grantBootStatus(scope constructs.Construct, p *cluster.Plan, n cluster.Node, role awsiam.IRole) {
	stack := awscdk.Stack_Of(scope)
	params := []string{render.BootStatusParameter(p.Config, n)}
	if n.Role == cluster.RolePostgres {
		params = append(params, render.VolumeStatusParameter(p.Config, n))
	}
	var arns []*string
	for _, name := range params {
		arns = append(arns, stack.FormatArn(&awscdk.ArnComponents{
			Service: jsii.String("ssm"), Region: jsii.String(render.BootStatusRegion(p, n)),
			Resource: jsii.String("parameter"), ResourceName: jsii.String(name[1:]),
		}))
	}
	awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee:      role,
		Actions:      jsii.Strings("ssm:PutParameter"),
		ResourceArns: &arns,
	})
}

// Tag puts the pgha:cluster and pgha:role tags on scope and everything in it.
func Tag(scope constructs.IConstruct, cluster string, role cluster.Role) {
	awscdk.Tags_Of(scope).Add(jsii.String(TagCluster), jsii.String(cluster), nil)
	awscdk.Tags_Of(scope).Add(jsii.String(TagRole), jsii.String(string(role)), nil)
}

// hopLimit is IMDS's response hop limit: 2 on app nodes, whose container
// sits one network hop behind the host, 1 elsewhere.
func hopLimit(role cluster.Role) float64 {
	if role == cluster.RoleApp {
		return 2
	}
	return 1
}
