// Package stacks holds pgha's CloudFormation stacks: one per region, each
// composing the constructs of constructs/.
package stacks

import (
	"fmt"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/constructs/app"
	"github.com/pgha/pgha/constructs/backup"
	"github.com/pgha/pgha/constructs/etcd"
	"github.com/pgha/pgha/constructs/firewall"
	"github.com/pgha/pgha/constructs/haproxy"
	"github.com/pgha/pgha/constructs/healthcheck"
	"github.com/pgha/pgha/constructs/nag"
	"github.com/pgha/pgha/constructs/network"
	"github.com/pgha/pgha/constructs/node"
	"github.com/pgha/pgha/constructs/postgres"
	"github.com/pgha/pgha/constructs/secrets"
	"github.com/pgha/pgha/constructs/tls"
	"github.com/pgha/pgha/render"
)

// RegionStackProps configures a RegionStack.
type RegionStackProps struct {
	// StackProps are the stack's own settings; Env.Region must be Region.
	// CrossRegionReferences is always turned on.
	awscdk.StackProps
	// Plan is the cluster's validated plan. Required.
	Plan *cluster.Plan
	// Region is the region this stack deploys. Required.
	Region string
	// Peers are the stacks of the regions this one peers with and owns the
	// peering of: the regions after it in plan order, already created. This
	// stack then depends on them, so they deploy first. Default: none.
	Peers []*RegionStack
	// AppSourceDir is the app image's build context (the repository root).
	// Default: the current directory.
	AppSourceDir string
}

// RegionStack is one region of the cluster: its network, peering to the
// later regions, security groups, secrets (created in the primary region
// and replicated to the other data regions) and nodes; in the primary
// region, the certificate issuer, which writes every region's TLS secrets.
type RegionStack struct {
	awscdk.Stack
	Plan     *cluster.Plan
	Region   cluster.RegionPlan
	Network  *network.Network
	Peerings []*network.Peering
	Firewall *firewall.Firewall
	Secrets  *secrets.Secrets
	Postgres *postgres.Postgres
	Etcd     *etcd.Etcd
	HAProxy  *haproxy.HAProxy
	App      *app.App
	// HealthCheck is the region's health-checking Lambda (data regions only).
	HealthCheck *healthcheck.HealthCheck
	// CertificateIssuer keeps the cluster's TLS secrets current (primary
	// region only).
	CertificateIssuer *tls.CertificateIssuer
	// Backup is the region's backup bucket (data regions only).
	Backup *backup.Bucket
}

// StackName is the name of a region's stack: "<cluster>-<region>".
func StackName(cfg cluster.Config, region string) string {
	return cfg.Name + "-" + region
}

// NewRegionStack creates the stack of props.Region.
func NewRegionStack(scope constructs.Construct, id string, props *RegionStackProps) *RegionStack {
	sp := props.StackProps
	sp.CrossRegionReferences = jsii.Bool(true)
	p := props.Plan
	rp, ok := p.Region(props.Region)
	if !ok {
		panic(fmt.Sprintf("stacks: region %q is not in the plan", props.Region))
	}
	if sp.Description == nil {
		role := "secondary data region"
		switch {
		case rp.Primary:
			role = "primary data region"
		case rp.Witness:
			role = "etcd witness region"
		}
		sp.Description = jsii.String(fmt.Sprintf("pgha cluster %s: %s %s", p.Config.Name, role, rp.Name))
	}
	stack := awscdk.NewStack(scope, &id, &sp)
	s := &RegionStack{Stack: stack, Plan: p, Region: rp}
	awscdk.Tags_Of(stack).Add(jsii.String(node.TagCluster), jsii.String(p.Config.Name), nil)

	s.Network = network.NewNetwork(stack, "Network", &network.NetworkProps{Region: rp})
	for _, peer := range props.Peers {
		s.Peerings = append(s.Peerings, network.NewPeering(stack, "Peering-"+peer.Region.Name, &network.PeeringProps{
			Local: s.Network,
			Peer:  peer.Network,
		}))
	}
	s.Firewall = firewall.NewFirewall(stack, "Firewall", &firewall.FirewallProps{
		Vpc: s.Network.Vpc, Plan: p, Region: rp.Name,
	})
	s.Secrets = secrets.NewSecrets(stack, "Secrets", &secrets.SecretsProps{
		Config:         p.Config,
		Owner:          rp.Primary,
		ReplicaRegions: secretRegions(p),
	})

	if rp.Primary {
		// The other regions' stacks deploy first; their nodes wait at boot
		// for the certificates this issuer writes, as for the passwords.
		s.CertificateIssuer = tls.NewCertificateIssuer(stack, "CertificateIssuer", &tls.CertificateIssuerProps{
			Plan: p, SourceDir: props.AppSourceDir,
		})
	}

	if !rp.Witness {
		s.Backup = backup.NewBucket(stack, "Backup", &backup.BucketProps{Plan: p, Region: rp.Name})
	}

	has := func(role cluster.Role) bool { return s.Firewall.SecurityGroup(role) != nil }
	if has(cluster.RolePostgres) {
		s.Postgres = postgres.NewPostgres(stack, "Postgres", &postgres.PostgresProps{
			Plan: p, Region: rp.Name, Network: s.Network,
			SecurityGroup: s.Firewall.SecurityGroup(cluster.RolePostgres), Secrets: s.Secrets,
		})
	}
	if has(cluster.RoleEtcd) {
		s.Etcd = etcd.NewEtcd(stack, "Etcd", &etcd.EtcdProps{
			Plan: p, Region: rp.Name, Network: s.Network,
			SecurityGroup: s.Firewall.SecurityGroup(cluster.RoleEtcd), Secrets: s.Secrets,
		})
	}
	if has(cluster.RoleHAProxy) {
		s.HAProxy = haproxy.NewHAProxy(stack, "HAProxy", &haproxy.HAProxyProps{
			Plan: p, Region: rp.Name, Network: s.Network,
			SecurityGroup: s.Firewall.SecurityGroup(cluster.RoleHAProxy), Secrets: s.Secrets,
		})
	}
	if has(cluster.RoleApp) {
		s.App = app.NewApp(stack, "App", &app.AppProps{
			Plan: p, Region: rp.Name, Network: s.Network,
			SecurityGroup: s.Firewall.SecurityGroup(cluster.RoleApp), Secrets: s.Secrets,
			SourceDir: props.AppSourceDir,
		})
	}
	if !rp.Witness {
		ids := map[string]*string{}
		if s.App != nil {
			for _, n := range s.App.Nodes {
				ids[n.Spec.Name] = n.Instance.InstanceId()
			}
		}
		s.HealthCheck = healthcheck.NewHealthCheck(stack, "HealthCheck", &healthcheck.HealthCheckProps{
			Plan: p, Region: rp.Name, Vpc: s.Network.Vpc, AppInstanceIDs: ids, SourceDir: props.AppSourceDir,
		})
		s.Firewall.AllowHealthCheck(s.HealthCheck)
	}

	s.addOutputs(p)
	nag.SuppressAwsCustomResource(stack)
	return s
}

// secretRegions are the secrets' replica regions: every data region but
// the primary (each runs a health check that reads its secret, and nodes
// that read theirs). The witness reads none.
func secretRegions(p *cluster.Plan) []string {
	var out []string
	for _, r := range p.Regions[1:] {
		if !r.Witness {
			out = append(out, r.Name)
		}
	}
	return out
}

func (s *RegionStack) addOutputs(p *cluster.Plan) {
	out := func(id, description string, value *string) {
		awscdk.NewCfnOutput(s.Stack, jsii.String(id), &awscdk.CfnOutputProps{
			Description: jsii.String(description),
			Value:       value,
		})
	}
	region := s.Region.Name
	join := func(parts ...*string) *string { return awscdk.Fn_Join(jsii.String(""), &parts) }
	session := func(instanceID *string, extra string) *string {
		return join(jsii.String("aws ssm start-session --region "+region+" --target "), instanceID, jsii.String(extra))
	}

	if s.App != nil {
		for _, n := range s.App.Nodes {
			id := exportName(n.Spec.ID)
			out(id+"Endpoint", fmt.Sprintf("%s: the hello API, from inside the peered VPCs", n.Spec.Name),
				jsii.String(fmt.Sprintf("http://%s:%d", n.Spec.IP, cluster.PortApp)))
			if len(p.Config.App.AllowedCIDRs) > 0 {
				out(id+"PublicEndpoint", fmt.Sprintf("%s: the hello API, from app.allowedCidrs", n.Spec.Name),
					join(jsii.String("http://"), n.Instance.InstancePublicIp(), jsii.String(fmt.Sprintf(":%d", cluster.PortApp))))
			}
			out(id+"PortForward", fmt.Sprintf("%s: forward localhost:%d to the app, then curl http://localhost:%d/hello/alice", n.Spec.Name, cluster.PortApp, cluster.PortApp),
				session(n.Instance.InstanceId(), fmt.Sprintf(" --document-name AWS-StartPortForwardingSession --parameters portNumber=%d,localPortNumber=%d", cluster.PortApp, cluster.PortApp)))
		}
	}
	if s.HAProxy != nil {
		var eps []string
		for _, n := range s.HAProxy.Nodes {
			eps = append(eps, fmt.Sprintf("%s:%d", n.Spec.IP, cluster.PortHAProxyWrite))
		}
		out("HAProxyLeaderEndpoints", "PostgreSQL leader through this region's HAProxy nodes (read-write)", jsii.String(strings.Join(eps, ",")))
		eps = eps[:0]
		for _, n := range s.HAProxy.Nodes {
			eps = append(eps, fmt.Sprintf("%s:%d", n.Spec.IP, cluster.PortHAProxyRead))
		}
		out("HAProxyReplicaEndpoints", "PostgreSQL replicas through this region's HAProxy nodes (read-only)", jsii.String(strings.Join(eps, ",")))
	}
	if s.Postgres != nil {
		for _, n := range s.Postgres.Nodes {
			id := exportName(n.Spec.ID)
			out(id+"Session", fmt.Sprintf("%s: open a shell with Session Manager", n.Spec.Name), session(n.Instance.InstanceId(), ""))
			out(id+"PatroniList", fmt.Sprintf("%s: show the cluster's members, leader and lag", n.Spec.Name),
				session(n.Instance.InstanceId(), fmt.Sprintf(` --document-name AWS-StartInteractiveCommand --parameters command="sudo -u postgres patronictl -c %s list"`, render.PatroniConfig)))
		}
	}
	if !s.Region.Witness {
		for _, name := range cluster.Secrets {
			desc := fmt.Sprintf("Secrets Manager secret %s", p.Config.SecretName(name))
			if !s.Region.Primary {
				desc += " (replica: the ARN ends in a random suffix)"
			}
			out("Secret"+exportName(string(name)), desc, s.Secrets.ARN(name))
		}
	}
}

// exportName turns "pg1" into "Pg1".
func exportName(s string) string {
	return strings.ToUpper(s[:1]) + s[1:]
}
