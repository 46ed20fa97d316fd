// Package app holds a region's app instances: the hello API container,
// built from app/Dockerfile, run by systemd on port 5000.
package app

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsecrassets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsssm"
	"github.com/aws/aws-cdk-go/awscdk/v2/customresources"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/constructs/nag"
	"github.com/pgha/pgha/constructs/network"
	"github.com/pgha/pgha/constructs/node"
	"github.com/pgha/pgha/constructs/secrets"
	"github.com/pgha/pgha/render"
)

// Dockerfile is the app's Dockerfile, relative to the build context.
const Dockerfile = "app/Dockerfile"

// BuildContext lists what the image build may see of the build context:
// everything else (cdk.out, .git, the local cluster's data, node_modules,
// the CDK CLI) is neither copied into cdk.out nor hashed.
var BuildContext = []string{"go.mod", "go.sum", "app", "internal"}

// AppProps configures App.
type AppProps struct {
	// Plan is the cluster's plan. Required.
	Plan *cluster.Plan
	// Region is the region whose app instances to create. Required.
	Region string
	// Network is the region's network. Required.
	Network *network.Network
	// SecurityGroup is the app instances' security group. Required.
	SecurityGroup awsec2.ISecurityGroup
	// Secrets are the cluster's secrets; the instances read the passwords
	// cluster.SecretsFor(RoleApp) lists and the CA's certificate.
	// Required.
	Secrets *secrets.Secrets
	// SourceDir is the Docker build context: the repository root.
	// Default: the current directory.
	SourceDir string
}

// App is the app instances of one region, in public subnets, with a public
// IP for egress (public subnets have no NAT). The image is a Docker image
// asset, built and pushed to the CDK's ECR repository by `cdk deploy`;
// synth only stages the build context. The instances may pull from that
// repository only.
type App struct {
	constructs.Construct
	// Image is the app's image asset (construct ID "Image").
	Image awsecrassets.DockerImageAsset
	// Role is the instances' role.
	Role awsiam.Role
	// Nodes are the instances, in plan order (construct IDs: their region-local IDs, "app1", ...).
	Nodes []*node.Node
	// ImageParameter holds the image URI (construct ID "ImageParameter").
	ImageParameter awsssm.StringParameter
	// Restart restarts the apps when the image changes (construct ID
	// "RestartOnNewImage"); nil without app instances.
	Restart customresources.AwsCustomResource
}

// NewApp creates the region's app instances and the image asset they run.
func NewApp(scope constructs.Construct, id string, props *AppProps) *App {
	this := constructs.NewConstruct(scope, &id)
	dir := props.SourceDir
	if dir == "" {
		dir = "."
	}
	cfg := props.Plan.Config
	platform := awsecrassets.Platform_LINUX_ARM64()
	if cfg.Instances.Architecture == "x86_64" {
		platform = awsecrassets.Platform_LINUX_AMD64()
	}
	exclude := []string{"*"}
	for _, keep := range BuildContext {
		exclude = append(exclude, "!"+keep)
	}
	image := awsecrassets.NewDockerImageAsset(this, jsii.String("Image"), &awsecrassets.DockerImageAssetProps{
		Directory:  jsii.String(dir),
		File:       jsii.String(Dockerfile),
		Platform:   platform,
		IgnoreMode: awscdk.IgnoreMode_DOCKER,
		Exclude:    jsii.Strings(exclude...),
	})
	a := &App{Construct: this, Image: image, Role: node.NewRole(this, "Role", cluster.RoleApp)}
	image.Repository().GrantPull(a.Role)
	nag.Suppress(a.Role, "AwsSolutions-IAM5",
		"ecr:GetAuthorizationToken has no resource-level permissions and must be granted on *; "+
			"the pull actions themselves are limited to the CDK's asset repository.",
		"Resource::*")
	props.Secrets.GrantRead(a.Role, cluster.SecretsFor(cluster.RoleApp)...)
	props.Secrets.GrantReadTrust(a.Role)
	// The image is a parameter the app's unit reads at every start, not
	// part of the user data: a new image restarts the app, not the node.
	a.ImageParameter = awsssm.NewStringParameter(this, jsii.String("ImageParameter"), &awsssm.StringParameterProps{
		ParameterName: jsii.String(render.AppImageParameter(cfg)),
		StringValue:   image.ImageUri(),
		Description:   jsii.String("pgha " + cfg.Name + ": the app's container image, read by pgha-app.service at every start"),
	})
	a.ImageParameter.GrantRead(a.Role)
	for _, n := range props.Plan.Select(props.Region, cluster.RoleApp) {
		nd := node.NewNode(this, n.ID, &node.NodeProps{
			Plan:          props.Plan,
			Node:          n,
			Network:       props.Network,
			SecurityGroup: props.SecurityGroup,
			Role:          a.Role,
			InstanceType:  cfg.Instances.App,
			PublicIP:      true,
		})
		nag.Suppress(nd.Instance, "AwsSolutions-EC29",
			"App instances are stateless (the data lives in PostgreSQL) and are meant to be replaced; "+
				"termination protection would only block that.")
		a.Nodes = append(a.Nodes, nd)
	}
	if len(a.Nodes) > 0 {
		a.restartOnNewImage(cfg, image)
	}
	return a
}

// restartOnNewImage restarts the app on every app instance of the cluster
// in this region when the image changes, with the command the health
// checker sends (render.AppRestartCommand), through SSM Run Command. It
// runs on stack updates only (an instance that boots reads the parameter
// anyway); instances whose SSM agent is not registered get nothing and
// start the new image at their next restart. The image's asset hash in the
// command's comment is what changes the resource.
func (a *App) restartOnNewImage(cfg cluster.Config, image awsecrassets.DockerImageAsset) {
	stack := awscdk.Stack_Of(a.Construct)
	hash := *image.AssetHash()
	call := &customresources.AwsSdkCall{
		Service: jsii.String("SSM"),
		Action:  jsii.String("sendCommand"),
		Parameters: map[string]any{
			"DocumentName": "AWS-RunShellScript",
			"Targets": []any{
				map[string]any{"Key": "tag:" + node.TagCluster, "Values": []string{cfg.Name}},
				map[string]any{"Key": "tag:" + node.TagRole, "Values": []string{string(cluster.RoleApp)}},
			},
			"Parameters": map[string]any{"commands": []string{render.AppRestartCommand}},
			"Comment":    "pgha: start image " + hash[:min(len(hash), 16)],
		},
		PhysicalResourceId: customresources.PhysicalResourceId_Of(jsii.String("app-restart")),
	}
	a.Restart = customresources.NewAwsCustomResource(a.Construct, jsii.String("RestartOnNewImage"), &customresources.AwsCustomResourceProps{
		ResourceType:        jsii.String("Custom::AppRestart"),
		OnUpdate:            call,
		InstallLatestAwsSdk: jsii.Bool(false),
		Policy: customresources.AwsCustomResourcePolicy_FromStatements(&[]awsiam.PolicyStatement{
			awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
				Actions: jsii.Strings("ssm:SendCommand"),
				Resources: jsii.Strings(*stack.FormatArn(&awscdk.ArnComponents{
					Service: jsii.String("ssm"), Account: jsii.String(""), Resource: jsii.String("document"), ResourceName: jsii.String("AWS-RunShellScript"),
				})),
			}),
			awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
				Actions: jsii.Strings("ssm:SendCommand"),
				Resources: jsii.Strings(*stack.FormatArn(&awscdk.ArnComponents{
					Service: jsii.String("ec2"), Resource: jsii.String("instance"), ResourceName: jsii.String("*"),
				})),
				Conditions: &map[string]any{"StringEquals": map[string]any{
					"ssm:resourceTag/" + node.TagRole:    string(cluster.RoleApp),
					"ssm:resourceTag/" + node.TagCluster: cfg.Name,
				}},
			}),
		}),
	})
	a.Restart.Node().AddDependency(a.ImageParameter)
	nag.Suppress(a.Restart, "AwsSolutions-IAM5",
		"ssm:SendCommand on instance/* is limited by ssm:resourceTag conditions to this cluster's app instances.",
		nag.Resource(stack, "ec2", "instance/*"))
}
