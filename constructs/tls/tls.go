// Package tls is the CDK construct of the cluster's certificate issuer:
// the Go Lambda of lambda/certs (package certs does the work, package pki
// the cryptography), built with `go build` when the app synthesizes, run
// by a custom resource at every deploy and by a schedule every day. It
// keeps in Secrets Manager the CA (pki.CASecret, primary region), the CA's
// certificate (pki.TrustSecret, every region) and each PostgreSQL and etcd
// node's certificate and key (pki.NodeSecret, the node's region). What
// reads them is granted by constructs/secrets.
package tls

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/constructs/golambda"
	"github.com/pgha/pgha/constructs/nag"
	"github.com/pgha/pgha/internal/certevent"
)

// MaxInput is the most characters an EventBridge target's constant input
// may hold (https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_Target.html).
const MaxInput = 8192

// SecretActions are what the issuer may do on the TLS secrets: read,
// create (with tags, which needs TagResource), and write a new value.
var SecretActions = []string{
	"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret",
	"secretsmanager:CreateSecret", "secretsmanager:TagResource", "secretsmanager:PutSecretValue",
}

// CertificateIssuerProps configures CertificateIssuer.
type CertificateIssuerProps struct {
	// Plan is the cluster's plan. Required.
	Plan *cluster.Plan
	// SourceDir is the Go module root holding lambda/certs.
	// Default: the current directory.
	SourceDir string
	// LogRetention is how long the Lambda's log is kept.
	// Default: awslogs.RetentionDays_ONE_MONTH.
	LogRetention awslogs.RetentionDays
	// Schedule is the EventBridge schedule expression of the renewals.
	// Default: "rate(1 day)", well within pki.RenewBefore.
	Schedule string
}

// CertificateIssuer is the issuer's Lambda, its role, its custom resource,
// its schedule and its alarm. Create it in the primary region's stack
// only: it writes every region's TLS secrets from there, and the CA lives
// there.
type CertificateIssuer struct {
	constructs.Construct
	// Function is the Lambda (construct ID "Function").
	Function awslambda.Function
	// Role is the Lambda's role (construct ID "Role").
	Role awsiam.Role
	// Certificates is the custom resource that runs the issuer at every
	// deploy (construct ID "Certificates").
	Certificates awscdk.CustomResource
	// Rule is the daily renewal (construct ID "Schedule").
	Rule awsevents.CfnRule
	// ErrorAlarm fires when a run failed: certificates may then not be
	// renewed before they expire (construct ID "ErrorAlarm").
	ErrorAlarm awscloudwatch.Alarm
}

// NewCertificateIssuer builds the Lambda binary (go build, linux/arm64) and
// creates the issuer. It panics when the stack is not in the plan's
// primary region.
func NewCertificateIssuer(scope constructs.Construct, id string, props *CertificateIssuerProps) *CertificateIssuer {
	p := props.Plan
	if p == nil {
		panic("tls: Plan is required")
	}
	stack := awscdk.Stack_Of(scope)
	if r := stack.Region(); !*awscdk.Token_IsUnresolved(r) && *r != p.Primary().Name {
		panic(fmt.Sprintf("tls: the certificate issuer belongs in the primary region %s, not in %s", p.Primary().Name, *r))
	}
	cfg := p.Config
	config, err := certevent.Config(cfg)
	if err != nil {
		panic(err.Error())
	}
	input, err := certevent.RenewInput(cfg)
	if err != nil {
		panic(err.Error())
	}

	this := constructs.NewConstruct(scope, &id)
	c := &CertificateIssuer{Construct: this}
	if len(input) > MaxInput {
		awscdk.Annotations_Of(this).AddError(jsii.String(fmt.Sprintf(
			"the certificate issuer's schedule input is %d characters, over EventBridge's %d: the configuration is too large", len(input), MaxInput)))
	}

	logGroup := golambda.NewLogGroup(this, props.LogRetention)
	c.Role = awsiam.NewRole(this, jsii.String("Role"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String(fmt.Sprintf("pgha %s certificate issuer", cfg.Name)),
	})
	c.grant(stack, p, logGroup)

	c.Function = awslambda.NewFunction(this, jsii.String("Function"), &awslambda.FunctionProps{
		Description:  jsii.String(fmt.Sprintf("pgha %s: issues and renews the cluster's TLS certificates in Secrets Manager", cfg.Name)),
		Runtime:      golambda.Runtime(),
		Architecture: golambda.Architecture(),
		Handler:      jsii.String(golambda.Handler),
		Code:         golambda.Code(props.SourceDir, "./lambda/certs"),
		MemorySize:   jsii.Number(128),
		// A few dozen Secrets Manager calls across the plan's regions.
		Timeout:     awscdk.Duration_Minutes(jsii.Number(2)),
		Role:        c.Role,
		LogGroup:    logGroup,
		Environment: &map[string]*string{certevent.EnvCluster: jsii.String(cfg.Name)},
		// No VPC: the function talks only to Secrets Manager's public
		// endpoints in the plan's regions (and to CloudFormation's
		// pre-signed response URL), never to a node, so a VPC would add
		// network interfaces and a NAT path for nothing. The Secrets
		// Manager calls are signed and TLS-protected either way.
	})
	// The role's policy must exist before CloudFormation invokes the
	// function.
	c.Function.Node().AddDependency(c.Role)

	// Every deploy: Create and Update make the secrets current (an Update
	// whose Rotation changed issues every node certificate again); Delete
	// keeps them. Config is a JSON string: CloudFormation passes property
	// values as strings, numbers included.
	c.Certificates = awscdk.NewCustomResource(this, jsii.String("Certificates"), &awscdk.CustomResourceProps{
		ServiceToken: c.Function.FunctionArn(),
		ResourceType: jsii.String(certevent.ResourceType),
		Properties: &map[string]any{
			certevent.PropConfig:   string(config),
			certevent.PropRotation: cfg.TLS.Rotation,
		},
		// A function that dies before answering would otherwise hold the
		// deploy for CloudFormation's default hour; this leaves room for
		// Lambda's two retries of an asynchronous invocation.
		ServiceTimeout: awscdk.Duration_Minutes(jsii.Number(10)),
	})

	schedule := props.Schedule
	if schedule == "" {
		schedule = "rate(1 day)"
	}
	c.Rule = golambda.NewSchedule(this, c.Function, schedule,
		fmt.Sprintf("pgha %s: renew the TLS certificates that expire soon", cfg.Name), "CertificateIssuer", string(input))

	c.ErrorAlarm = awscloudwatch.NewAlarm(this, jsii.String("ErrorAlarm"), &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("pgha %s: the certificate issuer failed in the last day; "+
			"node certificates are renewed 30 days before they expire and no later: read the issuer's log", cfg.Name)),
		Metric: c.Function.MetricErrors(&awscloudwatch.MetricOptions{
			Period:    awscdk.Duration_Days(jsii.Number(1)),
			Statistic: jsii.String("Sum"),
		}),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		Threshold:          jsii.Number(1),
		EvaluationPeriods:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	return c
}

// SecretsPattern is the name pattern of the cluster's TLS secrets, which
// the issuer may write: "<cluster>/tls/*".
func SecretsPattern(c cluster.Config) string { return c.Name + "/tls/*" }

// grant gives the role exactly what the issuer needs: its own log, and the
// TLS secrets in every region of the plan.
func (c *CertificateIssuer) grant(stack awscdk.Stack, p *cluster.Plan, logGroup awslogs.LogGroup) {
	golambda.GrantLogs(c.Role, logGroup)
	pattern := "secret:" + SecretsPattern(p.Config)
	var arns []*string
	var findings []string
	for _, r := range p.Regions {
		arns = append(arns, stack.FormatArn(&awscdk.ArnComponents{
			Service: jsii.String("secretsmanager"), Region: jsii.String(r.Name),
			Resource: jsii.String("secret"), ResourceName: jsii.String(SecretsPattern(p.Config)),
			ArnFormat: awscdk.ArnFormat_COLON_RESOURCE_NAME,
		}))
		findings = append(findings, nag.ResourceIn(stack, r.Name, "secretsmanager", pattern))
	}
	c.Role.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String("TLSSecrets"),
		Actions:   jsii.Strings(SecretActions...),
		Resources: &arns,
	}))
	nag.Suppress(c.Role, "AwsSolutions-IAM5",
		"The issuer creates the TLS secrets itself, with names it derives from the plan (the CA, the CA's certificate, one per PostgreSQL and etcd node) "+
			"and the six random characters Secrets Manager appends, so their ARNs are not known in advance; the wildcard is limited to this cluster's "+
			"tls/ prefix in the plan's regions, and no other secret matches it (the passwords are <cluster>/<name>).",
		findings...)
}
