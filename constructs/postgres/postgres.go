// Package postgres holds a region's PostgreSQL + Patroni nodes, each with
// its data directory on its own EBS volume.
package postgres

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsssm"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/constructs/backup"
	"github.com/pgha/pgha/constructs/network"
	"github.com/pgha/pgha/constructs/node"
	"github.com/pgha/pgha/constructs/secrets"
	"github.com/pgha/pgha/render"
)

// DataDevice is the device name the data volume is attached as. On Nitro
// instances it shows up as an NVMe disk whatever the name; the boot script
// finds it as the disk that is not the root disk.
const DataDevice = "/dev/sdf"

// PostgresProps configures Postgres.
type PostgresProps struct {
	// Plan is the cluster's plan. Required.
	Plan *cluster.Plan
	// Region is the region whose PostgreSQL nodes to create. Required.
	Region string
	// Network is the region's network. Required.
	Network *network.Network
	// SecurityGroup is the PostgreSQL nodes' security group. Required.
	SecurityGroup awsec2.ISecurityGroup
	// Secrets are the cluster's secrets; the nodes read the passwords
	// cluster.SecretsFor(RolePostgres) lists, the CA's certificate, and
	// each its own certificate and key. Required.
	Secrets *secrets.Secrets
}

// Postgres is the PostgreSQL nodes of one region. Each node's data volume
// is a separate encrypted gp3 volume (retained when the stack is deleted),
// so the instance can be replaced without losing the data. Instances have
// termination protection. Each node has an instance role of its own
// (Node.Role), so that only it may read its TLS private key.
type Postgres struct {
	constructs.Construct
	// Nodes are the instances, in plan order; each node's construct ID is
	// its region-local ID ("pg1"), its instance's "Instance", its role's
	// "Role".
	Nodes []*node.Node
	// Volumes are the data volumes, in plan order (construct ID "Data"
	// under the node's).
	Volumes []awsec2.Volume
}

// NewPostgres creates the region's PostgreSQL nodes.
func NewPostgres(scope constructs.Construct, id string, props *PostgresProps) *Postgres {
	this := constructs.NewConstruct(scope, &id)
	p := &Postgres{Construct: this}
	cfg := props.Plan.Config
	params := map[string]awsssm.StringParameter{}
	for _, n := range props.Plan.Select(props.Region, cluster.RolePostgres) {
		fetched, err := render.Fetched(props.Plan, n)
		if err != nil {
			panic(err)
		}
		// What the boot fetches instead of carrying: the dynamic
		// configuration, which changes with the tunable settings.
		for _, f := range fetched {
			if _, ok := params[f.Parameter]; ok {
				continue
			}
			params[f.Parameter] = awsssm.NewStringParameter(this, jsii.String("DynamicConfig"), &awsssm.StringParameterProps{
				ParameterName: jsii.String(f.Parameter),
				StringValue:   jsii.String(f.Value()),
				Description:   jsii.String("pgha " + cfg.Name + ": Patroni's bootstrap.dcs, read by the PostgreSQL nodes at boot"),
				// Over 4 KB (many parameters) becomes an advanced parameter.
				Tier: awsssm.ParameterTier_INTELLIGENT_TIERING,
			})
		}
		nd := node.NewNode(this, n.ID, &node.NodeProps{
			Plan:                  props.Plan,
			Node:                  n,
			Network:               props.Network,
			SecurityGroup:         props.SecurityGroup,
			InstanceType:          cfg.Instances.Postgres,
			TerminationProtection: true,
		})
		props.Secrets.GrantRead(nd.Role, cluster.SecretsFor(cluster.RolePostgres)...)
		props.Secrets.GrantReadTrust(nd.Role)
		props.Secrets.GrantReadCertificate(nd.Role, n)
		backup.GrantRepository(nd.Role, props.Plan)
		for _, f := range fetched {
			params[f.Parameter].GrantRead(nd.Role)
		}
		vol := awsec2.NewVolume(nd.Construct, jsii.String("Data"), &awsec2.VolumeProps{
			AvailabilityZone: jsii.String(n.AZ),
			Size:             awscdk.Size_Gibibytes(jsii.Number(float64(cfg.Instances.DataVolumeGiB))),
			VolumeType:       awsec2.EbsDeviceVolumeType_GP3,
			Encrypted:        jsii.Bool(true),
			// Kept when the stack is deleted or the volume replaced, but
			// deleted when the stack's create rolls back: a new, empty
			// volume must not outlive a failed first deploy.
			// DeletionPolicy RetainExceptOnCreate:
			// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html
			RemovalPolicy: awscdk.RemovalPolicy_RETAIN_ON_UPDATE_OR_DELETE,
			VolumeName:    jsii.String(cfg.Name + "-" + n.Name + "-data"),
		})
		node.Tag(vol, cfg.Name, cluster.RolePostgres)
		awsec2.NewCfnVolumeAttachment(nd.Construct, jsii.String("DataAttachment"), &awsec2.CfnVolumeAttachmentProps{
			Device:     jsii.String(DataDevice),
			InstanceId: nd.Instance.InstanceId(),
			VolumeId:   vol.VolumeId(),
		})
		p.Nodes = append(p.Nodes, nd)
		p.Volumes = append(p.Volumes, vol)
	}
	return p
}
