// Package secrets holds the cluster's passwords in Secrets Manager.
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
// superuser, replication, app and health-check roles. The owner generates
// them in Secrets Manager (32 letters and digits: nothing that needs
// quoting in a URL, a shell or a connection string) and replicates them.
// A replica has the same name as its primary and a random six-character
// suffix in its ARN.
//
// The secrets are retained when the stack is deleted: the PostgreSQL data
// volumes outlive the stack too, and their roles' passwords are these.
// Rotation is not configured: the passwords are stored in PostgreSQL and
// in Patroni's environment, which a rotation would have to update together.
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
			Description: jsii.String(fmt.Sprintf("pgha %s: password of the PostgreSQL %s role", props.Config.Name, name)),
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
		nag.Suppress(s.secrets[name], "AwsSolutions-SMG4",
			"The password is also stored in PostgreSQL (the role's SCRAM verifier) and in the nodes' Patroni environment, read once at boot; "+
				"a Secrets Manager rotation would change the secret without changing those, and lock the cluster's roles out. "+
				"Rotate by hand: ALTER ROLE, then put-secret-value, then restart Patroni on each node.")
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
	// Secrets Manager appends "-" and six random characters to the name.
	return awscdk.Stack_Of(s.Construct).FormatArn(&awscdk.ArnComponents{
		Service:      jsii.String("secretsmanager"),
		Resource:     jsii.String("secret"),
		ResourceName: jsii.String(s.config.SecretName(name) + "-??????"),
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
	}
	return string(name)
}
