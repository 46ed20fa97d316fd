// Package healthcheck is the CDK construct of pgha's health checker: the Go
// Lambda of lambda/ (package github.com/pgha/pgha/healthcheck does the
// work), built with `go build` when the app synthesizes (no Docker), run
// every minute in the region's private subnets, with its alarms and a
// least-privilege role and security group.
package healthcheck

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/constructs/golambda"
	"github.com/pgha/pgha/constructs/nag"
	"github.com/pgha/pgha/constructs/network"
	hc "github.com/pgha/pgha/healthcheck"
)

// Tag keys the SendCommand condition matches on app instances (the same as
// constructs/node's).
const (
	tagCluster = "pgha:cluster"
	tagRole    = "pgha:role"
)

// HealthCheckProps configures HealthCheck.
type HealthCheckProps struct {
	// Plan is the cluster's plan. Required.
	Plan *cluster.Plan
	// Region is the region the checker runs in and whose apps it restarts.
	// Required.
	Region string
	// Vpc is the region's VPC; the Lambda runs in its private subnets.
	// Required.
	Vpc awsec2.IVpc
	// AppInstanceIDs maps each app node of the region (plan name, e.g.
	// "app1") to its EC2 instance id (a token, e.g. Instance.InstanceId()).
	// Default: none — the checker then restarts nothing and only watches.
	AppInstanceIDs map[string]*string
	// HealthSecretName is the name of the Secrets Manager secret holding
	// the health-check role's password, readable in this region.
	// Default: Config.SecretName(cluster.SecretHealth).
	HealthSecretName string
	// SourceDir is the Go module root holding lambda/.
	// Default: the current directory.
	SourceDir string
	// LogRetention is how long the Lambda's log is kept.
	// Default: awslogs.RetentionDays_ONE_MONTH.
	LogRetention awslogs.RetentionDays
	// Schedule is the EventBridge schedule expression.
	// Default: "rate(1 minute)".
	Schedule string
}

// HealthCheck is the region's health-checking Lambda, its schedule, its
// security group and its alarms.
type HealthCheck struct {
	constructs.Construct
	// Function is the Lambda (construct ID "Function").
	Function awslambda.Function
	// Role is the Lambda's role (construct ID "Role").
	Role awsiam.Role
	// SecurityGroup is the Lambda's security group: egress only to
	// Patroni, HAProxy, the apps and HTTPS (construct ID "SecurityGroup").
	SecurityGroup awsec2.SecurityGroup
	// Rule is the schedule (construct ID "Schedule").
	Rule awsevents.CfnRule
	// NoLeaderAlarm fires when no running leader was seen for two minutes,
	// or no check ran (construct ID "NoLeaderAlarm").
	NoLeaderAlarm awscloudwatch.Alarm
	// LagAlarm fires when a replica lags more than LagAlarmBytes for two
	// minutes (construct ID "LagAlarm").
	LagAlarm awscloudwatch.Alarm
	// SplitBrainAlarm fires as soon as one check sees more than one
	// member say it runs as the primary (construct ID "SplitBrainAlarm").
	SplitBrainAlarm awscloudwatch.Alarm
	// LeaderAwayAlarm fires when the leader has been outside the primary
	// region for HealthCheck.LeaderAwayMinutes (construct ID
	// "LeaderAwayAlarm").
	LeaderAwayAlarm awscloudwatch.Alarm
	// VolumeAlarm fires when a PostgreSQL data volume reporting to this
	// region is more than HealthCheck.VolumeAlarmPercent full for 2 minutes.
	VolumeAlarm awscloudwatch.Alarm
	// BootAlarm fires when a node's boot has not reported "ok" for 30
	// minutes: it failed, has no SSM agent, or never reported (construct
	// ID "BootAlarm").
	BootAlarm awscloudwatch.Alarm
	// ArchiveAlarm fires when WAL has waited backup.archiveAlarmMinutes
	// to be archived (construct ID "ArchiveAlarm"); ArchiveFailingAlarm
	// when archiving has failed for 5 minutes ("ArchiveFailingAlarm").
	ArchiveAlarm        awscloudwatch.Alarm
	ArchiveFailingAlarm awscloudwatch.Alarm
	// BackupAlarm fires when the region's newest backup is older than
	// backup.backupAlarmHours ("BackupAlarm"; data regions with a bucket).
	BackupAlarm awscloudwatch.Alarm
	// Settings is what the Lambda is given (instance ids are tokens).
	Settings hc.Settings
}

// Connections lets callers open the nodes' security groups to the Lambda
// (Patroni 8008 on PostgreSQL nodes, 5000 on HAProxy and app nodes).
func (h *HealthCheck) Connections() awsec2.Connections { return h.SecurityGroup.Connections() }

// NewHealthCheck builds the Lambda binary (go build, linux/arm64) and
// creates the health checker of props.Region.
func NewHealthCheck(scope constructs.Construct, id string, props *HealthCheckProps) *HealthCheck {
	p := props.Plan
	if p == nil {
		panic("healthcheck: Plan is required")
	}
	if _, ok := p.Region(props.Region); !ok {
		panic(fmt.Sprintf("healthcheck: region %q is not in the plan", props.Region))
	}
	if props.Vpc == nil {
		panic("healthcheck: Vpc is required")
	}
	ids := map[string]string{}
	for name, idToken := range props.AppInstanceIDs {
		n, ok := p.Node(name)
		if !ok || n.Role != cluster.RoleApp || n.Region != props.Region {
			panic(fmt.Sprintf("healthcheck: AppInstanceIDs names %q, which is not an app node of %s", name, props.Region))
		}
		if idToken == nil || *idToken == "" {
			panic(fmt.Sprintf("healthcheck: AppInstanceIDs[%q] is empty", name))
		}
		ids[name] = *idToken
	}
	settings, err := hc.SettingsFromPlan(p, props.Region, ids)
	if err != nil {
		panic(err.Error())
	}
	// Apps without an instance id are watched by nobody: leave them out
	// rather than send commands to an instance named "app1".
	settings.Apps = slices.DeleteFunc(settings.Apps, func(a hc.App) bool { _, ok := ids[a.Name]; return !ok })
	if props.HealthSecretName != "" {
		settings.SecretName = props.HealthSecretName
	}

	if settings.Stanza != "" {
		settings.BackupBucket = p.Config.BackupBucket(*awscdk.Aws_ACCOUNT_ID(), props.Region)
	}

	this := constructs.NewConstruct(scope, &id)
	h := &HealthCheck{Construct: this, Settings: settings}
	stack := awscdk.Stack_Of(this)
	cfg := p.Config

	// Security group: only what the checker talks to.
	h.SecurityGroup = awsec2.NewSecurityGroup(this, jsii.String("SecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc:              props.Vpc,
		Description:      jsii.String(fmt.Sprintf("pgha health checker (%s)", cfg.Name)),
		AllowAllOutbound: jsii.Bool(false),
	})
	for _, r := range egressRules(p, props.Region) {
		h.SecurityGroup.AddEgressRule(awsec2.Peer_Ipv4(jsii.String(r.cidr)), awsec2.Port_Tcp(jsii.Number(float64(r.port))), jsii.String(r.why), nil)
	}

	logGroup := golambda.NewLogGroup(this, props.LogRetention)

	h.Role = awsiam.NewRole(this, jsii.String("Role"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String(fmt.Sprintf("pgha %s health checker in %s", cfg.Name, props.Region)),
	})
	h.grant(stack, logGroup, settings)

	env, err := json.Marshal(settings)
	if err != nil {
		panic(err.Error())
	}
	h.Function = awslambda.NewFunction(this, jsii.String("Function"), &awslambda.FunctionProps{
		Description:  jsii.String(fmt.Sprintf("pgha %s: checks Patroni and restarts the app when the cluster is ready", cfg.Name)),
		Runtime:      golambda.Runtime(),
		Architecture: golambda.Architecture(),
		Handler:      jsii.String(golambda.Handler),
		Code:         golambda.Code(props.SourceDir, "./lambda"),
		MemorySize:   jsii.Number(128),
		// A check is bounded by a few seconds of timeouts; a run must end
		// before the next one starts.
		Timeout: awscdk.Duration_Seconds(jsii.Number(50)),
		Role:    h.Role,
		Vpc:     props.Vpc,
		// The checker subnets, which hold nothing else: Patroni's
		// allowlist (render.APIAllowlist) names them.
		VpcSubnets:     &awsec2.SubnetSelection{SubnetGroupName: jsii.String(network.GroupChecker)},
		SecurityGroups: &[]awsec2.ISecurityGroup{h.SecurityGroup},
		LogGroup:       logGroup,
		Environment:    &map[string]*string{hc.EnvSettings: jsii.String(string(env))},
		// The next scheduled run is the retry.
		RetryAttempts: jsii.Number(0),
	})
	// The role's policy (ENI permissions) must exist before the function.
	h.Function.Node().AddDependency(h.Role)

	schedule := props.Schedule
	if schedule == "" {
		schedule = "rate(1 minute)"
	}
	h.Rule = golambda.NewSchedule(this, h.Function, schedule, fmt.Sprintf("pgha %s: run the health checker", cfg.Name), "HealthCheck", "")

	h.addAlarms(cfg, props.Region)
	return h
}

// grant gives the role exactly what a check needs.
func (h *HealthCheck) grant(stack awscdk.Stack, logGroup awslogs.LogGroup, s hc.Settings) {
	add := func(sid string, actions []string, resources []*string, conditions map[string]any) {
		st := &awsiam.PolicyStatementProps{
			Sid:       jsii.String(sid),
			Actions:   jsii.Strings(actions...),
			Resources: &resources,
		}
		if conditions != nil {
			st.Conditions = &conditions
		}
		h.Role.AddToPolicy(awsiam.NewPolicyStatement(st))
	}
	arn := func(c awscdk.ArnComponents) *string { return stack.FormatArn(&c) }
	golambda.GrantLogs(h.Role, logGroup)
	// A Lambda in a VPC manages its network interfaces itself; these EC2
	// actions support no resource-level restriction (as in the managed
	// AWSLambdaVPCAccessExecutionRole).
	add("VpcNetworkInterfaces", []string{
		"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
		"ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
	}, []*string{jsii.String("*")}, nil)
	// SendCommand is authorized on both the document and the instances:
	// the document is AWS-RunShellScript only (AWS-owned: no account in
	// its ARN), the instances only this cluster's app instances, by tag.
	add("RunShellScriptDocument", []string{"ssm:SendCommand"}, []*string{arn(awscdk.ArnComponents{
		Service: jsii.String("ssm"), Resource: jsii.String("document"),
		ResourceName: jsii.String("AWS-RunShellScript"), Account: jsii.String(""),
	})}, nil)
	add("RunOnClusterApps", []string{"ssm:SendCommand"}, []*string{arn(awscdk.ArnComponents{
		Service: jsii.String("ec2"), Resource: jsii.String("instance"), ResourceName: jsii.String("*"),
	})}, map[string]any{"StringEquals": map[string]any{
		"ssm:resourceTag/" + tagRole:    string(cluster.RoleApp),
		"ssm:resourceTag/" + tagCluster: s.Cluster,
	}})
	add("RestartMemory", []string{"ssm:GetParameter", "ssm:PutParameter"}, []*string{arn(awscdk.ArnComponents{
		Service: jsii.String("ssm"), Resource: jsii.String("parameter"),
		ResourceName: jsii.String(strings.TrimPrefix(s.ParameterPath, "/") + "/*"),
	})}, nil)
	// GetParametersByPath is authorized on the path; the parameters under
	// it are granted too, for whichever of the two IAM evaluates.
	// https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-access.html
	readPath := func(sid, path string) {
		path = strings.TrimPrefix(path, "/")
		add(sid, []string{"ssm:GetParametersByPath"}, []*string{
			arn(awscdk.ArnComponents{Service: jsii.String("ssm"), Resource: jsii.String("parameter"), ResourceName: jsii.String(path)}),
			arn(awscdk.ArnComponents{Service: jsii.String("ssm"), Resource: jsii.String("parameter"), ResourceName: jsii.String(path + "/*")}),
		}, nil)
	}
	readPath("BootStatuses", s.BootStatusPath)
	readPath("VolumeStatuses", s.VolumeStatusPath)
	// Secrets Manager appends "-" and six random characters to the name.
	secret := func(name string) []*string {
		return []*string{arn(awscdk.ArnComponents{
			Service: jsii.String("secretsmanager"), Resource: jsii.String("secret"),
			ResourceName: jsii.String(name + "-??????"), ArnFormat: awscdk.ArnFormat_COLON_RESOURCE_NAME,
		})}
	}
	add("HealthPassword", []string{"secretsmanager:GetSecretValue"}, secret(s.SecretName), nil)
	// Read once per cold start: the CA that Patroni's and PostgreSQL's
	// certificates are verified against, and the password of Patroni's
	// unsafe endpoints.
	add("ClusterCA", []string{"secretsmanager:GetSecretValue"}, secret(s.TrustSecretName), nil)
	add("PatroniAPIPassword", []string{"secretsmanager:GetSecretValue"}, secret(s.APISecretName), nil)
	if s.BackupBucket != "" {
		// The repository's list of backups (and its copy), nothing else.
		info := fmt.Sprintf("arn:%s:s3:::%s/%s/backup/%s/backup.info", *awscdk.Aws_PARTITION(), s.BackupBucket, s.BackupPrefix, s.Stanza)
		add("BackupInfo", []string{"s3:GetObject"}, []*string{jsii.String(info), jsii.String(info + ".copy")}, nil)
	}

	reason := "Each wildcard is the narrowest its action allows: EC2 network-interface actions of a VPC Lambda take no resource ARN " +
		"(the same as AWSLambdaVPCAccessExecutionRole); ssm:SendCommand on instance/* is limited by ssm:resourceTag conditions to " +
		"this cluster's app instances; parameters are limited to this cluster's restart path, one per instance id, and to its boot-status and volume-status paths (read only); the secret ARNs " +
		"(the health, Patroni API and CA secrets, read only) end in the six random characters Secrets Manager appends to a secret's name."
	cdknag.NagSuppressions_AddResourceSuppressions(h.Role, &[]*cdknag.NagPackSuppression{{
		Id:     jsii.String("AwsSolutions-IAM5"),
		Reason: jsii.String(reason),
		AppliesTo: &[]any{
			"Resource::*",
			nag.Resource(stack, "ec2", "instance/*"),
			nag.Resource(stack, "ssm", "parameter"+s.ParameterPath+"/*"),
			nag.Resource(stack, "ssm", "parameter"+s.BootStatusPath+"/*"),
			nag.Resource(stack, "ssm", "parameter"+s.VolumeStatusPath+"/*"),
			nag.Resource(stack, "secretsmanager", "secret:"+s.SecretName+"-??????"),
		},
	}}, jsii.Bool(true))
}

func (h *HealthCheck) addAlarms(cfg cluster.Config, region string) {
	dims := &map[string]*string{hc.DimCluster: jsii.String(cfg.Name), hc.DimRegion: jsii.String(region)}
	metric := func(name, stat string) awscloudwatch.Metric {
		return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
			Namespace:     jsii.String(hc.MetricNamespace),
			MetricName:    jsii.String(name),
			DimensionsMap: dims,
			Statistic:     jsii.String(stat),
			Period:        awscdk.Duration_Minutes(jsii.Number(1)),
		})
	}
	h.NoLeaderAlarm = awscloudwatch.NewAlarm(h.Construct, jsii.String("NoLeaderAlarm"), &awscloudwatch.AlarmProps{
		AlarmDescription:   jsii.String(fmt.Sprintf("pgha %s: no running leader seen from %s for 2 minutes (or the health checker did not run)", cfg.Name, region)),
		Metric:             metric(hc.MetricLeaderPresent, "Maximum"),
		ComparisonOperator: awscloudwatch.ComparisonOperator_LESS_THAN_THRESHOLD,
		Threshold:          jsii.Number(1),
		EvaluationPeriods:  jsii.Number(2),
		DatapointsToAlarm:  jsii.Number(2),
		// A checker that does not run cannot vouch for the leader.
		TreatMissingData: awscloudwatch.TreatMissingData_BREACHING,
	})
	// One datapoint: two primaries may both be taking writes that one of
	// them will lose when Patroni demotes it. A check that did not run
	// has not seen one.
	h.SplitBrainAlarm = awscloudwatch.NewAlarm(h.Construct, jsii.String("SplitBrainAlarm"), &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("pgha %s: split brain, more than one PostgreSQL node says it runs as the primary (seen from %s); "+
			"writes to the one Patroni does not name leader will be lost when it is demoted. The health checker's log names them (primaries); "+
			"check patronictl -c /etc/patroni/pgha list and the etcd cluster", cfg.Name, region)),
		Metric:             metric(hc.MetricPrimaries, "Maximum"),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		Threshold:          jsii.Number(1),
		EvaluationPeriods:  jsii.Number(1),
		DatapointsToAlarm:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	h.LagAlarm = awscloudwatch.NewAlarm(h.Construct, jsii.String("LagAlarm"), &awscloudwatch.AlarmProps{
		AlarmDescription:   jsii.String(fmt.Sprintf("pgha %s: a replica lags more than %d bytes (seen from %s) for 2 minutes", cfg.Name, cfg.HealthCheck.LagAlarmBytes, region)),
		Metric:             metric(hc.MetricMaxLagBytes, "Maximum"),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		Threshold:          jsii.Number(float64(cfg.HealthCheck.LagAlarmBytes)),
		EvaluationPeriods:  jsii.Number(2),
		DatapointsToAlarm:  jsii.Number(2),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	away := float64(cfg.HealthCheck.LeaderAwayMinutes)
	h.LeaderAwayAlarm = awscloudwatch.NewAlarm(h.Construct, jsii.String("LeaderAwayAlarm"), &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("pgha %s: the leader has been outside the primary region %s for %d minutes (seen from %s): every commit crosses regions. "+
			"Switch back: patronictl -c /etc/patroni/pgha switchover --candidate <a node of %s>", cfg.Name, cfg.Regions[0].Name, cfg.HealthCheck.LeaderAwayMinutes, region, cfg.Regions[0].Name)),
		Metric:             metric(hc.MetricLeaderAway, "Minimum"),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		Threshold:          jsii.Number(1),
		EvaluationPeriods:  jsii.Number(away),
		DatapointsToAlarm:  jsii.Number(away),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	b := cfg.Backup
	h.ArchiveAlarm = awscloudwatch.NewAlarm(h.Construct, jsii.String("ArchiveAlarm"), &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("pgha %s: the leader's WAL has not reached every backup repository for %d minutes (seen from %s): "+
			"a bucket unreachable or archiving failing; a restore would miss that WAL, and pg_wal grows until pgBackRest drops it (journalctl on the leader; /var/log/pgbackrest)",
			cfg.Name, b.ArchiveAlarmMinutes, region)),
		Metric:             metric(hc.MetricArchiveLag, "Maximum"),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		Threshold:          jsii.Number(float64(b.ArchiveAlarmMinutes * 60)),
		EvaluationPeriods:  jsii.Number(1),
		DatapointsToAlarm:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	h.ArchiveFailingAlarm = awscloudwatch.NewAlarm(h.Construct, jsii.String("ArchiveFailingAlarm"), &awscloudwatch.AlarmProps{
		AlarmDescription:   jsii.String(fmt.Sprintf("pgha %s: the leader's WAL archiving has been failing for 5 minutes (seen from %s): a backup bucket is unreachable or refuses the node", cfg.Name, region)),
		Metric:             metric(hc.MetricArchiveFailing, "Minimum"),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		Threshold:          jsii.Number(1),
		EvaluationPeriods:  jsii.Number(5),
		DatapointsToAlarm:  jsii.Number(5),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	if h.Settings.BackupBucket != "" {
		// A new cluster takes its first backup within minutes: 15 of
		// them before an empty repository (hc.NoBackupAge) alarms.
		h.BackupAlarm = awscloudwatch.NewAlarm(h.Construct, jsii.String("BackupAlarm"), &awscloudwatch.AlarmProps{
			AlarmDescription: jsii.String(fmt.Sprintf("pgha %s: the newest backup in %s's repository is older than %d hours, or there is none: "+
				"the backup timers failed (journalctl -u 'pgha-backup@*' on the PostgreSQL nodes)", cfg.Name, region, b.BackupAlarmHours)),
			Metric:             metric(hc.MetricBackupAge, "Minimum"),
			ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
			Threshold:          jsii.Number(float64(b.BackupAlarmHours * 3600)),
			EvaluationPeriods:  jsii.Number(15),
			DatapointsToAlarm:  jsii.Number(15),
			TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
		})
	}
	h.VolumeAlarm = awscloudwatch.NewAlarm(h.Construct, jsii.String("VolumeAlarm"), &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("pgha %s: a PostgreSQL node's data volume that reports to %s is more than %d%% full for 2 minutes: "+
			"when it is full, every write that needs space fails while PostgreSQL and Patroni still run. The health checker's log names it (volumes); "+
			"grow the EBS volume (aws ec2 modify-volume, then resize2fs on the node), or find what takes the space (pg_wal kept for a lost replica's slot, or for a failing archive)",
			cfg.Name, region, cfg.HealthCheck.VolumeAlarmPercent)),
		Metric:             metric(hc.MetricVolumeUsed, "Maximum"),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		Threshold:          jsii.Number(cfg.HealthCheck.VolumeAlarmPercent),
		EvaluationPeriods:  jsii.Number(2),
		DatapointsToAlarm:  jsii.Number(2),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	h.BootAlarm = awscloudwatch.NewAlarm(h.Construct, jsii.String("BootAlarm"), &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(fmt.Sprintf("pgha %s: a node of %s has not booted well for 30 minutes: its boot failed, it has no SSM agent, or it never reported "+
			"(the health checker's log names it; the node's console output, aws ec2 get-console-output, tells why)", cfg.Name, region)),
		Metric:             metric(hc.MetricBootsNotOK, "Minimum"),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		Threshold:          jsii.Number(0),
		EvaluationPeriods:  jsii.Number(30),
		DatapointsToAlarm:  jsii.Number(30),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
}

type egressRule struct {
	cidr string
	port int
	why  string
}

// egressRules are the security group's egress: Patroni on every PostgreSQL
// node, HAProxy's write port on every HAProxy node (the region's first, the
// others as fallback), the app port on the region's app nodes, and HTTPS
// anywhere for the AWS APIs (through the NAT gateway).
func egressRules(p *cluster.Plan, region string) []egressRule {
	var out []egressRule
	host := func(ip netip.Addr) string { return netip.PrefixFrom(ip, 32).String() }
	for _, n := range p.ByRole(cluster.RolePostgres) {
		out = append(out, egressRule{host(n.IP), cluster.PortPatroni, fmt.Sprintf("Patroni REST API of %s (%s)", n.Name, n.Region)})
	}
	for _, n := range p.HAProxyOrder(region) {
		out = append(out, egressRule{host(n.IP), cluster.PortHAProxyWrite, fmt.Sprintf("write check through %s (%s)", n.Name, n.Region)})
	}
	for _, n := range p.ByRole(cluster.RoleApp) {
		if n.Region == region {
			out = append(out, egressRule{host(n.IP), cluster.PortApp, fmt.Sprintf("GET /readyz of %s", n.Name)})
		}
	}
	out = append(out, egressRule{"0.0.0.0/0", 443, "HTTPS to AWS APIs (SSM, Secrets Manager)"})
	return out
}
