package tls_test

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/constructs/tls"
	"github.com/pgha/pgha/internal/cdktest"
	"github.com/pgha/pgha/internal/certevent"
)

// witness is the default cluster with a witness region: the issuer must
// write there too.
func witness(t *testing.T) *cluster.Plan {
	t.Helper()
	c := cluster.Default()
	c.Regions[0].Etcd = 1
	c.Witness = &cluster.Witness{Name: "eu-central-1", CIDR: "10.13.0.0/16"}
	c.TLS.Rotation = 2
	p, err := cluster.NewPlan(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCertificateIssuer synthesizes the issuer in a primary region's
// stack, for the default cluster and one with a witness, and checks it;
// each check recovers the panic of a failed assertion so that every check
// reports.
func TestCertificateIssuer(t *testing.T) {
	defer jsii.Close()
	def, err := cluster.NewPlan(cluster.Default())
	if err != nil {
		t.Fatal(err)
	}
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(t.TempDir())})
	type synthesized struct {
		plan   *cluster.Plan
		stack  awscdk.Stack
		issuer *tls.CertificateIssuer
		tmpl   assertions.Template
	}
	var all []synthesized
	for name, p := range map[string]*cluster.Plan{"Default": def, "Witness": witness(t)} {
		stack := awscdk.NewStack(app, jsii.String(name), &awscdk.StackProps{
			Env: &awscdk.Environment{Region: jsii.String(p.Primary().Name)},
		})
		issuer := tls.NewCertificateIssuer(stack, "CertificateIssuer", &tls.CertificateIssuerProps{Plan: p, SourceDir: "../.."})
		all = append(all, synthesized{plan: p, stack: stack, issuer: issuer})
	}
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(nil), nil)
	for i := range all {
		all[i].tmpl = assertions.Template_FromStack(all[i].stack, nil)
	}
	slices.SortFunc(all, func(a, b synthesized) int { return len(a.plan.Regions) - len(b.plan.Regions) })

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
	for _, s := range all {
		cfg := s.plan.Config
		prefix := fmt.Sprintf("%d regions: ", len(s.plan.Regions))
		tmpl := s.tmpl
		fn := cdktest.Only(t, tmpl, "AWS::Lambda::Function")
		check(prefix+"runtime, architecture, outside any VPC", func(t *testing.T) {
			tmpl.HasResourceProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
				"Runtime":       "provided.al2023",
				"Architectures": []any{"arm64"},
				"Handler":       "bootstrap",
				"Timeout":       120,
				"Environment":   map[string]any{"Variables": map[string]any{certevent.EnvCluster: cfg.Name}},
			})
			if _, ok := fn["VpcConfig"]; ok {
				t.Errorf("the function is in a VPC: %v", fn["VpcConfig"])
			}
		})
		check(prefix+"IAM: write only <cluster>/tls/* in every region of the plan", func(t *testing.T) {
			var tlsStatements int
			var regions []string
			for _, st := range statements(t, tmpl) {
				actions := fmt.Sprint(st["Action"])
				if strings.Contains(actions, "*") {
					t.Errorf("wildcard action: %v", st)
				}
				if !strings.Contains(actions, "secretsmanager:") {
					if st["Sid"] != "Logs" {
						t.Errorf("unexpected statement %v", st)
					}
					continue
				}
				tlsStatements++
				var got []string
				for _, a := range st["Action"].([]any) {
					got = append(got, a.(string))
				}
				want := slices.Clone(tls.SecretActions)
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("secret actions %v, want %v", got, want)
				}
				for _, r := range st["Resource"].([]any) {
					arn := cdktest.ToJSON(r)
					if !strings.HasSuffix(arn, `:secret:`+cfg.Name+`/tls/*"]]}`) {
						t.Errorf("secret resource %s, want the cluster's tls/ prefix", arn)
					}
					for _, rp := range s.plan.Regions {
						if strings.Contains(arn, ":secretsmanager:"+rp.Name+":") {
							regions = append(regions, rp.Name)
						}
					}
				}
			}
			var want []string
			for _, rp := range s.plan.Regions {
				want = append(want, rp.Name)
			}
			slices.Sort(regions)
			slices.Sort(want)
			if tlsStatements != 1 || !slices.Equal(regions, want) {
				t.Errorf("%d secret statements on regions %v, want 1 on %v", tlsStatements, regions, want)
			}
		})
		check(prefix+"custom resource: the configuration and the rotation", func(t *testing.T) {
			crs := cdktest.Resources(t, tmpl, certevent.ResourceType)
			if len(crs) != 1 {
				t.Fatalf("%d %s, want 1", len(crs), certevent.ResourceType)
			}
			for _, cr := range crs {
				p := cr["Properties"].(map[string]any)
				if cdktest.ToJSON(p["ServiceToken"]) != `{"Fn::GetAtt":["`+cdktest.LogicalID(t, tmpl, "AWS::Lambda::Function")+`","Arn"]}` {
					t.Errorf("service token %v, want the function's ARN", p["ServiceToken"])
				}
				text, _ := p[certevent.PropConfig].(string)
				got, err := cluster.Parse([]byte(text))
				if err != nil || !reflect.DeepEqual(got, cfg) {
					t.Errorf("Config property parses to %+v (%v), want the plan's configuration", got, err)
				}
				if p[certevent.PropRotation] != float64(cfg.TLS.Rotation) {
					t.Errorf("Rotation %v, want %d", p[certevent.PropRotation], cfg.TLS.Rotation)
				}
				if p["ServiceTimeout"] != "600" && p["ServiceTimeout"] != float64(600) {
					t.Errorf("ServiceTimeout %v, want 600 s", p["ServiceTimeout"])
				}
			}
		})
		check(prefix+"daily schedule with the renew input", func(t *testing.T) {
			rule := cdktest.Only(t, tmpl, "AWS::Events::Rule")
			if rule["ScheduleExpression"] != "rate(1 day)" || rule["State"] != "ENABLED" {
				t.Errorf("rule %v", rule)
			}
			targets := rule["Targets"].([]any)
			if len(targets) != 1 {
				t.Fatalf("%d targets", len(targets))
			}
			target := targets[0].(map[string]any)
			if cdktest.ToJSON(target["Arn"]) != `{"Fn::GetAtt":["`+cdktest.LogicalID(t, tmpl, "AWS::Lambda::Function")+`","Arn"]}` {
				t.Errorf("target %v, want the function", target["Arn"])
			}
			want, _ := certevent.RenewInput(cfg)
			if target["Input"] != string(want) {
				t.Errorf("input %v, want %s", target["Input"], want)
			}
			tmpl.HasResourceProperties(jsii.String("AWS::Lambda::Permission"), map[string]any{
				"Action":    "lambda:InvokeFunction",
				"Principal": "events.amazonaws.com",
			})
		})
		check(prefix+"log retention and error alarm", func(t *testing.T) {
			tmpl.HasResourceProperties(jsii.String("AWS::Logs::LogGroup"), map[string]any{"RetentionInDays": 30})
			tmpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), map[string]any{
				"MetricName":         "Errors",
				"Namespace":          "AWS/Lambda",
				"Statistic":          "Sum",
				"Period":             86400,
				"ComparisonOperator": "GreaterThanOrEqualToThreshold",
				"Threshold":          1,
				"TreatMissingData":   "notBreaching",
			})
		})
		check(prefix+"construct IDs", func(t *testing.T) {
			for _, id := range []string{"Function", "Role", "Certificates", "Schedule", "ErrorAlarm", "Logs"} {
				if s.issuer.Node().TryFindChild(jsii.String(id)) == nil {
					t.Errorf("no child %q", id)
				}
			}
		})
		check(prefix+"cdk-nag AwsSolutions clean", func(t *testing.T) {
			ann := assertions.Annotations_FromStack(s.stack)
			match := assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*"))
			for _, m := range *ann.FindError(jsii.String("*"), match) {
				t.Errorf("error: %s", cdktest.ToJSON(m))
			}
			for _, m := range *ann.FindWarning(jsii.String("*"), match) {
				t.Errorf("warning: %s", cdktest.ToJSON(m))
			}
		})
	}

	// The Lambda's fixtures are what this template passes for the default
	// cluster.
	check("lambda/certs fixtures match the template", func(t *testing.T) {
		tmpl := all[0].tmpl
		var renew, input any
		if err := json.Unmarshal(readFile(t, "../../lambda/certs/testdata/renew.json"), &renew); err != nil {
			t.Fatal(err)
		}
		rule := cdktest.Only(t, tmpl, "AWS::Events::Rule")
		if err := json.Unmarshal([]byte(rule["Targets"].([]any)[0].(map[string]any)["Input"].(string)), &input); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(renew, input) {
			t.Errorf("renew.json is not the schedule's input:\n%s\n%s", cdktest.ToJSON(renew), cdktest.ToJSON(input))
		}
		var create struct {
			ResourceType       string
			ResourceProperties map[string]any
		}
		if err := json.Unmarshal(readFile(t, "../../lambda/certs/testdata/create.json"), &create); err != nil {
			t.Fatal(err)
		}
		for _, cr := range cdktest.Resources(t, tmpl, certevent.ResourceType) {
			p := cr["Properties"].(map[string]any)
			if create.ResourceType != certevent.ResourceType || create.ResourceProperties[certevent.PropConfig] != p[certevent.PropConfig] ||
				create.ResourceProperties[certevent.PropRotation] != fmt.Sprint(p[certevent.PropRotation]) {
				t.Errorf("create.json's properties are not the template's (as CloudFormation passes them, strings)")
			}
		}
	})
	check("refused outside the primary region", func(t *testing.T) {
		other := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(t.TempDir())})
		stack := awscdk.NewStack(other, jsii.String("Secondary"), &awscdk.StackProps{
			Env: &awscdk.Environment{Region: jsii.String("eu-west-1")},
		})
		defer func() {
			r := recover()
			if r == nil || !strings.Contains(fmt.Sprint(r), "primary region eu-west-3, not in eu-west-1") {
				t.Errorf("panic %v, want one naming both regions", r)
			}
		}()
		tls.NewCertificateIssuer(stack, "CertificateIssuer", &tls.CertificateIssuerProps{Plan: def, SourceDir: "../.."})
	})
	if os.Getenv("PGHA_DUMP_TEMPLATE") != "" {
		b, _ := json.MarshalIndent(all[0].tmpl.ToJSON(), "", "  ")
		os.WriteFile(os.Getenv("PGHA_DUMP_TEMPLATE"), b, 0o644)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// statements are the issuer role's policy statements.
func statements(t *testing.T, tmpl assertions.Template) []map[string]any {
	t.Helper()
	var out []map[string]any
	for id, r := range cdktest.Resources(t, tmpl, "AWS::IAM::Policy") {
		if !strings.HasPrefix(id, "CertificateIssuerRole") {
			t.Errorf("policy %s is not the issuer role's", id)
			continue
		}
		doc := r["Properties"].(map[string]any)["PolicyDocument"].(map[string]any)
		for _, s := range doc["Statement"].([]any) {
			out = append(out, s.(map[string]any))
		}
	}
	if len(out) == 0 {
		t.Fatal("no policy statements on the issuer's role")
	}
	return out
}
