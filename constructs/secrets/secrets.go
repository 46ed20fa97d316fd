// Package secrets holds the cluster's passwords in Secrets Manager, and
// grants access to them and to the TLS secrets the certificate issuer
// (constructs/tls) writes.
package secrets

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/constructs/nag"
	"github.com/pgha/pgha/pki"
)

// PasswordLength is the length of every generated password.
const PasswordLength = 32

// SecretsProps configures Secrets.
type SecretsProps struct {
	// Config is the cluster's configuration; it names the secrets
	// (Config.SecretName). Required.
	Config cluster.Config
	// Owner creates the secrets in this stack's region (the primary
	// region). When false, the secrets are the replicas the owner's region
	// keeps in this region, and Secrets only grants access to them.
	// Default: false.
	Owner bool
	// ReplicaRegions are the regions the owner replicates every secret to.
	// Only with Owner. Default: none.
	ReplicaRegions []string
}

// Secrets is the cluster's passwords (cluster.Secrets): PostgreSQL's
// superuser, replication, app and health-check roles, Patroni's REST API
// user and HAProxy's statistics page user. The owner generates
// them in Secrets Manager (32 letters and digits: nothing that needs
// quoting in a URL, a shell or a connection string) and replicates them.
// A replica has the same name as its primary and a random six-character
// suffix in its ARN.
//
// The secrets are retained when the stack is deleted: the PostgreSQL data
// volumes outlive the stack too, and their roles' passwords are these.
// Rotation is not configured: each password is also stored where the
// nodes wrote it at boot (and the role passwords in PostgreSQL), which a
// rotation would have to update together (rotationReason).
type Secrets struct {
	constructs.Construct
	config  cluster.Config
	secrets map[cluster.Secret]awssecretsmanager.Secret
}

// NewSecrets creates the secrets (owner) or a handle on the replicas.
func NewSecrets(scope constructs.Construct, id string, props *SecretsProps) *Secrets {
	this := constructs.NewConstruct(scope, &id)
	s := &Secrets{Construct: this, config: props.Config, secrets: map[cluster.Secret]awssecretsmanager.Secret{}}
	if !props.Owner {
		return s
	}
	var replicas []*awssecretsmanager.ReplicaRegion
	for _, r := range props.ReplicaRegions {
		replicas = append(replicas, &awssecretsmanager.ReplicaRegion{Region: jsii.String(r)})
	}
	for _, name := range cluster.Secrets {
		s.secrets[name] = awssecretsmanager.NewSecret(this, jsii.String(constructID(name)), &awssecretsmanager.SecretProps{
			SecretName:  jsii.String(props.Config.SecretName(name)),
			Description: jsii.String(description(props.Config, name)),
			GenerateSecretString: &awssecretsmanager.SecretStringGenerator{
				PasswordLength:     jsii.Number(PasswordLength),
				ExcludePunctuation: jsii.Bool(true),
				IncludeSpace:       jsii.Bool(false),
			},
			ReplicaRegions: &replicas,
			// RetainExceptOnCreate: a create that rolls back deletes the
			// secret (and its replicas), so that retrying the deploy does
			// not fail on "already exists"; once created it outlives the
			// stack, as the data volumes do.
			// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html
			RemovalPolicy: awscdk.RemovalPolicy_RETAIN_ON_UPDATE_OR_DELETE,
		})
		nag.Suppress(s.secrets[name], "AwsSolutions-SMG4", rotationReason(name))
	}
	return s
}

// Secret returns the owner's secret, or nil on a replica region.
func (s *Secrets) Secret(name cluster.Secret) awssecretsmanager.Secret {
	return s.secrets[name]
}

// ARN returns the secret's ARN in this region: the owner's secret ARN, or
// on a replica region a pattern matching the replica's ARN.
func (s *Secrets) ARN(name cluster.Secret) *string {
	if sec, ok := s.secrets[name]; ok {
		return sec.SecretArn()
	}
	return s.arnPattern(s.config.SecretName(name))
}

// arnPattern matches the ARN of the secret called name in this region:
// Secrets Manager appends "-" and six random characters to the name.
func (s *Secrets) arnPattern(name string) *string {
	return awscdk.Stack_Of(s.Construct).FormatArn(&awscdk.ArnComponents{
		Service:      jsii.String("secretsmanager"),
		Resource:     jsii.String("secret"),
		ResourceName: jsii.String(name + "-??????"),
		ArnFormat:    awscdk.ArnFormat_COLON_RESOURCE_NAME,
	})
}

// GrantRead lets grantee read the given secrets in this region.
func (s *Secrets) GrantRead(grantee awsiam.IGrantable, names ...cluster.Secret) {
	for _, name := range names {
		if sec, ok := s.secrets[name]; ok {
			sec.GrantRead(grantee, nil)
			continue
		}
		awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
			Grantee:      grantee,
			Actions:      jsii.Strings("secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"),
			ResourceArns: jsii.Strings(*s.ARN(name)),
		})
	}
}

// GrantReadTrust lets grantee read the cluster CA's certificate
// (pki.TrustSecret) in this region, which every node and the health
// checker verify their peers against.
func (s *Secrets) GrantReadTrust(grantee awsiam.IGrantable) {
	s.grantTLS(grantee, pki.TrustSecret(s.config))
}

// GrantReadCertificate lets grantee read node n's certificate and private
// key (pki.NodeSecret), which the issuer writes in n's region: grant it to
// n's own role only, so that no other node can read n's key. It panics when
// n is not in this stack's region.
func (s *Secrets) GrantReadCertificate(grantee awsiam.IGrantable, n cluster.Node) {
	if r := awscdk.Stack_Of(s.Construct).Region(); !*awscdk.Token_IsUnresolved(r) && *r != n.Region {
		panic(fmt.Sprintf("secrets: the certificate of %s is in %s, not in this stack's region %s", n.Name, n.Region, *r))
	}
	s.grantTLS(grantee, pki.NodeSecret(s.config, n.Name))
}

// grantTLS grants GetSecretValue, all the nodes' tls-refresh script calls,
// on one of the issuer's secrets in this region. The issuer creates them
// with the SDK, so the ARN is a pattern (arnPattern). No other TLS secret matches it:
// "<cluster>/tls/ca-??????" takes exactly six characters after "ca-", so
// not the CA's key ("ca-key-" and six more), and no node is named "ca" or
// another node's name followed by "-" and six characters (names are
// "<region>-<role><ordinal>").
func (s *Secrets) grantTLS(grantee awsiam.IGrantable, name string) {
	awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee:      grantee,
		Actions:      jsii.Strings("secretsmanager:GetSecretValue"),
		ResourceArns: jsii.Strings(*s.arnPattern(name)),
	})
}

// constructID is the secret's construct ID: a contract, since changing it
// replaces the secret (and so changes its password).
func constructID(name cluster.Secret) string {
	switch name {
	case cluster.SecretSuperuser:
		return "Superuser"
	case cluster.SecretReplication:
		return "Replication"
	case cluster.SecretApp:
		return "App"
	case cluster.SecretHealth:
		return "Health"
	case cluster.SecretPatroniAPI:
		return "PatroniAPI"
	case cluster.SecretHAProxyStats:
		return "HAProxyStats"
	}
	return string(name)
}

// description is the secret's description in Secrets Manager.
func description(c cluster.Config, name cluster.Secret) string {
	switch name {
	case cluster.SecretPatroniAPI:
		return fmt.Sprintf("pgha %s: password of Patroni's REST API user %s, which its unsafe endpoints require", c.Name, cluster.PatroniAPIUser)
	case cluster.SecretHAProxyStats:
		return fmt.Sprintf("pgha %s: password of HAProxy's statistics page user %s", c.Name, cluster.HAProxyStatsUser)
	}
	return fmt.Sprintf("pgha %s: password of the PostgreSQL %s role", c.Name, name)
}

// rotationReason says why the secret has no Secrets Manager rotation
// (cdk-nag's AwsSolutions-SMG4): where else the password lives, and how to
// rotate it by hand.
func rotationReason(name cluster.Secret) string {
	const why = "a Secrets Manager rotation would change the secret without changing those"
	switch name {
	case cluster.SecretPatroniAPI:
		return "The password is also written into each PostgreSQL node's Patroni configuration at boot, and the health checker reads it once when it starts; " +
			why + ", and lock the health checker out of Patroni's unsafe endpoints. " +
			"Rotate by hand: put-secret-value, then rewrite the password in each node's Patroni configuration and reload Patroni, one node at a time."
	case cluster.SecretHAProxyStats:
		return "The password is also hashed into each HAProxy node's userlist at boot; " + why + ". " +
			"It guards a statistics page no network may reach (operators forward port 7000 through Session Manager). " +
			"Rotate by hand: put-secret-value, then replace the HAProxy nodes (they are stateless) or rewrite their userlist."
	}
	return "The password is also stored in PostgreSQL (the role's SCRAM verifier) and, for the superuser and replication roles, " +
		"in each PostgreSQL node's Patroni configuration, written at boot; " + why + ", and lock the cluster's roles out. " +
		"Rotate by hand: ALTER ROLE, then put-secret-value, then restart what read it (Patroni on each node, after rewriting its configuration; the app)."
}
