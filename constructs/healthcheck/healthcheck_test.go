package healthcheck_test

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/constructs/healthcheck"
	"github.com/pgha/pgha/constructs/network"
	hc "github.com/pgha/pgha/healthcheck"
	"github.com/pgha/pgha/internal/cdktest"
)

// TestHealthCheck synthesizes one region stack with the construct once and
// checks it; each check recovers the panic of a failed assertion so that
// every check reports.
func TestHealthCheck(t *testing.T) {
	defer jsii.Close()
	// Every setting the default but the volume alarm's, which shows the
	// construct takes it from the configuration.
	cfg := cluster.Default()
	cfg.HealthCheck.VolumeAlarmPercent = 90
	plan, err := cluster.NewPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(t.TempDir())})
	stack := awscdk.NewStack(app, jsii.String("Test"), &awscdk.StackProps{
		Env: &awscdk.Environment{Region: jsii.String("eu-west-3")},
	})
	vpc := awsec2.NewVpc(stack, jsii.String("Vpc"), &awsec2.VpcProps{
		IpAddresses: awsec2.IpAddresses_Cidr(jsii.String("10.11.0.0/16")),
		// The checker subnets' group, where the Lambda must go.
		SubnetConfiguration: &[]*awsec2.SubnetConfiguration{
			{Name: jsii.String("Public"), SubnetType: awsec2.SubnetType_PUBLIC, CidrMask: jsii.Number(24)},
			{Name: jsii.String("Private"), SubnetType: awsec2.SubnetType_PRIVATE_WITH_EGRESS, CidrMask: jsii.Number(24)},
			{Name: jsii.String(network.GroupChecker), SubnetType: awsec2.SubnetType_PRIVATE_WITH_EGRESS, CidrMask: jsii.Number(26)},
		},
	})
	// The VPC stands in for constructs/network's; its findings are not the
	// construct's.
	cdknag.NagSuppressions_AddResourceSuppressions(vpc, &[]*cdknag.NagPackSuppression{{
		Id: jsii.String("AwsSolutions-VPC7"), Reason: jsii.String("test fixture VPC; the real one is constructs/network's"),
	}}, jsii.Bool(true))
	app1ID := awscdk.NewCfnParameter(stack, jsii.String("App1Id"), nil).ValueAsString()
	h := healthcheck.NewHealthCheck(stack, "HealthCheck", &healthcheck.HealthCheckProps{
		Plan:           plan,
		Region:         "eu-west-3",
		Vpc:            vpc,
		AppInstanceIDs: map[string]*string{"euw3-app1": app1ID},
		SourceDir:      "../..",
	})
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(nil), nil)
	tmpl := assertions.Template_FromStack(stack, nil)

	check := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("assertion failed: %v", r)
				}
			}()
			f(t)
		})
	}
	fn := cdktest.Only(t, tmpl, "AWS::Lambda::Function")

	check("runtime and architecture", func(t *testing.T) {
		tmpl.HasResourceProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
			"Runtime":       "provided.al2023",
			"Architectures": []any{"arm64"},
			"Handler":       "bootstrap",
			"Timeout":       50,
		})
	})
	check("in the VPC's checker subnets with its own security group", func(t *testing.T) {
		vc := fn["VpcConfig"].(map[string]any)
		subnets := fmt.Sprint(vc["SubnetIds"])
		if !strings.Contains(subnets, "CheckerSubnet") || strings.Contains(subnets, "PublicSubnet") || strings.Contains(subnets, "PrivateSubnet") {
			t.Errorf("subnets %s, want the checker subnets only (Patroni's allowlist)", subnets)
		}
		sgs := fmt.Sprint(vc["SecurityGroupIds"])
		if !strings.Contains(sgs, "HealthCheckSecurityGroup") {
			t.Errorf("security groups %s, want the construct's own", sgs)
		}
	})
	check("scheduled every minute", func(t *testing.T) {
		tmpl.HasResourceProperties(jsii.String("AWS::Events::Rule"), map[string]any{
			"ScheduleExpression": "rate(1 minute)",
			"State":              "ENABLED",
			"Targets":            []any{assertions.Match_ObjectLike(&map[string]any{"Arn": map[string]any{"Fn::GetAtt": []any{cdktest.LogicalID(t, tmpl, "AWS::Lambda::Function"), "Arn"}}})},
		})
		tmpl.HasResourceProperties(jsii.String("AWS::Lambda::Permission"), map[string]any{
			"Action":    "lambda:InvokeFunction",
			"Principal": "events.amazonaws.com",
		})
	})
	check("log retention", func(t *testing.T) {
		tmpl.HasResourceProperties(jsii.String("AWS::Logs::LogGroup"), map[string]any{"RetentionInDays": 30})
	})
	check("alarms", func(t *testing.T) {
		tmpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), map[string]any{
			"MetricName":         hc.MetricLeaderPresent,
			"Namespace":          hc.MetricNamespace,
			"Statistic":          "Maximum",
			"ComparisonOperator": "LessThanThreshold",
			"Threshold":          1,
			"EvaluationPeriods":  2,
			"DatapointsToAlarm":  2,
			"TreatMissingData":   "breaching",
			"Dimensions": assertions.Match_ArrayWith(&[]any{
				map[string]any{"Name": hc.DimCluster, "Value": "pgha"},
				map[string]any{"Name": hc.DimRegion, "Value": "eu-west-3"},
			}),
		})
		tmpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), map[string]any{
			"MetricName":         hc.MetricMaxLagBytes,
			"ComparisonOperator": "GreaterThanThreshold",
			"Threshold":          16 << 20,
		})
	})
	check("volume alarm: a data volume more than healthCheck.volumeAlarmPercent full for 2 minutes", func(t *testing.T) {
		tmpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), map[string]any{
			"MetricName":         hc.MetricVolumeUsed,
			"Namespace":          hc.MetricNamespace,
			"Statistic":          "Maximum",
			"Period":             60,
			"ComparisonOperator": "GreaterThanThreshold",
			"Threshold":          90,
			"EvaluationPeriods":  2,
			"DatapointsToAlarm":  2,
			"TreatMissingData":   "notBreaching",
			"Dimensions": assertions.Match_ArrayWith(&[]any{
				map[string]any{"Name": hc.DimCluster, "Value": "pgha"},
				map[string]any{"Name": hc.DimRegion, "Value": "eu-west-3"},
			}),
		})
		tmpl.HasResourceProperties(jsii.String("AWS::IAM::Policy"), map[string]any{
			"PolicyDocument": assertions.Match_ObjectLike(&map[string]any{
				"Statement": assertions.Match_ArrayWith(&[]any{assertions.Match_ObjectLike(&map[string]any{
					"Sid": "VolumeStatuses", "Action": "ssm:GetParametersByPath",
				})}),
			}),
		})
	})
	check("split-brain alarm: more than one primary in one check", func(t *testing.T) {
		tmpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), map[string]any{
			"MetricName":         hc.MetricPrimaries,
			"Namespace":          hc.MetricNamespace,
			"Statistic":          "Maximum",
			"Period":             60,
			"ComparisonOperator": "GreaterThanThreshold",
			"Threshold":          1,
			"EvaluationPeriods":  1,
			"DatapointsToAlarm":  1,
			"TreatMissingData":   "notBreaching",
			"AlarmDescription":   assertions.Match_StringLikeRegexp(jsii.String("^pgha pgha: split brain, more than one PostgreSQL node says it runs as the primary \\(seen from eu-west-3\\)")),
			"Dimensions": assertions.Match_ArrayWith(&[]any{
				map[string]any{"Name": hc.DimCluster, "Value": "pgha"},
				map[string]any{"Name": hc.DimRegion, "Value": "eu-west-3"},
			}),
		})
	})
	check("IAM: SendCommand only for AWS-RunShellScript and this cluster's apps", func(t *testing.T) {
		stmts := statements(t, tmpl)
		var sends []map[string]any
		for _, s := range stmts {
			if fmt.Sprint(s["Action"]) == "ssm:SendCommand" {
				sends = append(sends, s)
			}
			if strings.Contains(fmt.Sprint(s["Action"]), "ssm:*") || fmt.Sprint(s["Action"]) == "*" {
				t.Errorf("statement grants a wildcard action: %v", s)
			}
		}
		if len(sends) != 2 {
			t.Fatalf("%d SendCommand statements, want 2 (document, instances): %v", len(sends), sends)
		}
		doc, inst := fmt.Sprint(sends[0]["Resource"]), fmt.Sprint(sends[1]["Resource"])
		if !strings.Contains(doc, ":document/AWS-RunShellScript") || sends[0]["Condition"] != nil {
			t.Errorf("document statement %v", sends[0])
		}
		if !strings.Contains(inst, ":instance/*") {
			t.Errorf("instance statement resource %v", inst)
		}
		cond, _ := json.Marshal(sends[1]["Condition"])
		want := `{"StringEquals":{"ssm:resourceTag/pgha:cluster":"pgha","ssm:resourceTag/pgha:role":"app"}}`
		if string(cond) != want {
			t.Errorf("instance condition %s, want %s", cond, want)
		}
	})
	check("IAM: parameters under its own paths; the health, Patroni API and CA secrets only, read only", func(t *testing.T) {
		var secrets []string
		for _, s := range statements(t, tmpl) {
			res := fmt.Sprint(s["Resource"])
			switch a := fmt.Sprint(s["Action"]); {
			case a == "ssm:GetParametersByPath":
				// The boot and volume reports, read only
				// (render.BootStatusPath, render.VolumeStatusPath).
				boot, volume := strings.Contains(res, ":parameter/pgha/pgha/boot]]]"), strings.Contains(res, ":parameter/pgha/pgha/volume]]]")
				if boot == volume || strings.Contains(res, "restarts") {
					t.Errorf("report access on %s", res)
				}
			case strings.Contains(a, "ssm:GetParameter") || strings.Contains(a, "ssm:PutParameter"):
				if !strings.Contains(res, ":parameter/pgha/pgha/restarts/*") {
					t.Errorf("parameter access on %s", res)
				}
			case strings.Contains(a, "secretsmanager"):
				if a != "secretsmanager:GetSecretValue" {
					t.Errorf("secret access %s on %s", a, res)
				}
				i := strings.Index(res, ":secret:")
				if i < 0 {
					t.Errorf("secret access on %s", res)
					continue
				}
				secrets = append(secrets, strings.TrimRight(res[i+len(":secret:"):], "]"))
			}
		}
		slices.Sort(secrets)
		want := []string{"pgha/health-??????", "pgha/patroni-api-??????", "pgha/tls/ca-??????"}
		if !slices.Equal(secrets, want) {
			t.Errorf("reads secrets %q, want %q", secrets, want)
		}
	})
	check("security group egress", func(t *testing.T) {
		sg := onlyResourceMatching(t, tmpl, "AWS::EC2::SecurityGroup", "HealthCheckSecurityGroup")
		var got []string
		for _, e := range sg["SecurityGroupEgress"].([]any) {
			r := e.(map[string]any)
			got = append(got, fmt.Sprintf("%v:%v", r["CidrIp"], r["FromPort"]))
			if r["FromPort"] != r["ToPort"] || r["IpProtocol"] != "tcp" {
				t.Errorf("egress rule not a single TCP port: %v", r)
			}
		}
		want := []string{
			"10.11.3.10/32:8008", "10.11.4.10/32:8008", "10.12.3.10/32:8008", // Patroni, every region
			"10.11.3.30/32:5000", "10.12.3.30/32:5000", // HAProxy, own region first
			"10.11.0.40/32:5000", // app1's /readyz
			"0.0.0.0/0:443",      // AWS APIs
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("egress\n got %v\nwant %v", got, want)
		}
	})
	check("environment carries the settings, instance ids resolved at deploy", func(t *testing.T) {
		v := fn["Environment"].(map[string]any)["Variables"].(map[string]any)[hc.EnvSettings]
		join, ok := v.(map[string]any)["Fn::Join"].([]any)
		if !ok {
			t.Fatalf("%s is %v, want an Fn::Join holding the instance id", hc.EnvSettings, v)
		}
		var sb strings.Builder
		for _, part := range join[1].([]any) {
			switch p := part.(type) {
			case string:
				sb.WriteString(p)
			case map[string]any:
				switch fmt.Sprint(p) {
				case "map[Ref:App1Id]":
					sb.WriteString("i-0123456789abcdef0")
				case "map[Ref:AWS::AccountId]": // in the backup bucket's name
					sb.WriteString("111122223333")
				default:
					t.Fatalf("unexpected token %v", p)
				}
			}
		}
		s, err := hc.ParseSettings([]byte(sb.String()))
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Apps) != 1 || s.Apps[0].InstanceID != "i-0123456789abcdef0" || s.Apps[0].URL != "http://10.11.0.40:5000" {
			t.Errorf("apps %+v", s.Apps)
		}
		if s.BackupBucket != "pgha-backup-111122223333-eu-west-3" || s.BackupPrefix != "pgha" || s.Stanza != "pgha" {
			t.Errorf("backup settings %q %q %q", s.BackupBucket, s.BackupPrefix, s.Stanza)
		}
		if len(s.Members) != 3 || s.Members[2].URL != "https://10.12.3.10:8008" || s.Members[2].Region != "eu-west-1" {
			t.Errorf("members %+v", s.Members)
		}
		if s.SecretName != "pgha/health" || s.User != cluster.HealthUser || s.ParameterPath != "/pgha/pgha/restarts" || s.Backoff().Minutes() != 5 ||
			s.TrustSecretName != "pgha/tls/ca" || s.APISecretName != "pgha/patroni-api" || s.APIUser != cluster.PatroniAPIUser {
			t.Errorf("settings %+v", s)
		}
		if !slices.Equal(s.HAProxy, []string{"10.11.3.30:5000", "10.12.3.30:5000"}) {
			t.Errorf("haproxy %v", s.HAProxy)
		}
	})
	check("construct IDs", func(t *testing.T) {
		for _, id := range []string{"Function", "Role", "SecurityGroup", "Schedule", "NoLeaderAlarm", "LagAlarm", "SplitBrainAlarm", "Logs"} {
			if h.Node().TryFindChild(jsii.String(id)) == nil {
				t.Errorf("no child %q", id)
			}
		}
	})
	check("cdk-nag AwsSolutions clean", func(t *testing.T) {
		ann := assertions.Annotations_FromStack(stack)
		match := assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*"))
		for _, m := range *ann.FindError(jsii.String("*"), match) {
			t.Errorf("error: %s", cdktest.ToJSON(m))
		}
		for _, m := range *ann.FindWarning(jsii.String("*"), match) {
			t.Errorf("warning: %s", cdktest.ToJSON(m))
		}
	})
	if os.Getenv("PGHA_DUMP_TEMPLATE") != "" {
		b, _ := json.MarshalIndent(tmpl.ToJSON(), "", "  ")
		os.WriteFile(os.Getenv("PGHA_DUMP_TEMPLATE"), b, 0o644)
	}
}

func onlyResourceMatching(t *testing.T, tmpl assertions.Template, typ, prefix string) map[string]any {
	t.Helper()
	for id, r := range cdktest.Resources(t, tmpl, typ) {
		if strings.HasPrefix(id, prefix) {
			return r["Properties"].(map[string]any)
		}
	}
	t.Fatalf("no %s with logical ID %s*", typ, prefix)
	return nil
}

// statements are the health checker role's policy statements.
func statements(t *testing.T, tmpl assertions.Template) []map[string]any {
	t.Helper()
	var out []map[string]any
	for id, r := range cdktest.Resources(t, tmpl, "AWS::IAM::Policy") {
		if !strings.HasPrefix(id, "HealthCheckRole") {
			continue
		}
		doc := r["Properties"].(map[string]any)["PolicyDocument"].(map[string]any)
		for _, s := range doc["Statement"].([]any) {
			out = append(out, s.(map[string]any))
		}
	}
	if len(out) == 0 {
		t.Fatal("no policy statements on the health checker's role")
	}
	return out
}
