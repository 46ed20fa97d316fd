// Package golambda builds a command of this Go module into a Lambda
// function's code when the CDK app synthesizes: `go build` for the
// provided.al2023 runtime on arm64, no Docker. It also holds what pgha's
// Lambdas share around the function: their log group and its grant, and
// their EventBridge schedule.
package golambda

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// NewLogGroup creates the function's log group under scope (construct ID
// "Logs"), kept for retention (Default: awslogs.RetentionDays_ONE_MONTH)
// and removed with the stack.
func NewLogGroup(scope constructs.Construct, retention awslogs.RetentionDays) awslogs.LogGroup {
	if retention == "" {
		retention = awslogs.RetentionDays_ONE_MONTH
	}
	return awslogs.NewLogGroup(scope, jsii.String("Logs"), &awslogs.LogGroupProps{
		Retention:     retention,
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
}

// GrantLogs lets role write to logGroup (statement "Logs"): CDK's log group
// ARN ends in ":*", which covers its log streams.
func GrantLogs(role awsiam.Role, logGroup awslogs.LogGroup) {
	role.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String("Logs"),
		Actions:   jsii.Strings("logs:CreateLogStream", "logs:PutLogEvents"),
		Resources: jsii.Strings(*logGroup.LogGroupArn()),
	}))
}

// NewSchedule runs fn on an EventBridge schedule expression: the rule
// (construct ID "Schedule") with fn as its target targetID, given input
// ("" for EventBridge's default event), and fn's permission for it (also
// "Schedule").
func NewSchedule(scope constructs.Construct, fn awslambda.Function, expression, description, targetID, input string) awsevents.CfnRule {
	target := &awsevents.CfnRule_TargetProperty{Arn: fn.FunctionArn(), Id: jsii.String(targetID)}
	if input != "" {
		target.Input = jsii.String(input)
	}
	rule := awsevents.NewCfnRule(scope, jsii.String("Schedule"), &awsevents.CfnRuleProps{
		Description:        jsii.String(description),
		ScheduleExpression: jsii.String(expression),
		State:              jsii.String("ENABLED"),
		Targets:            &[]any{target},
	})
	fn.AddPermission(jsii.String("Schedule"), &awslambda.Permission{
		Principal: awsiam.NewServicePrincipal(jsii.String("events.amazonaws.com"), nil),
		Action:    jsii.String("lambda:InvokeFunction"),
		SourceArn: rule.AttrArn(),
	})
	return rule
}

// Handler is the executable's name, which the provided.al2023 runtime runs.
const Handler = "bootstrap"

// Runtime is the Lambda runtime Build builds for: provided.al2023.
func Runtime() awslambda.Runtime { return awslambda.Runtime_PROVIDED_AL2023() }

// Architecture is the architecture Build builds for: arm64.
func Architecture() awslambda.Architecture { return awslambda.Architecture_ARM_64() }

// Code builds the package pkg (e.g. "./lambda") of the module at sourceDir
// ("" for the current directory) and returns it as an asset.
func Code(sourceDir, pkg string) awslambda.Code {
	return awslambda.Code_FromAsset(jsii.String(Build(sourceDir, pkg)), nil)
}

// Build compiles the package pkg of the module at sourceDir for linux/arm64
// (with -tags lambda.norpc, which the provided runtimes need no RPC for)
// into a directory of its own, as Handler, and returns that directory. The
// build is reproducible (-trimpath, no VCS stamp), so the asset hash
// changes only with the code. It panics when the build fails: synth cannot
// go on without the function.
func Build(sourceDir, pkg string) string {
	if sourceDir == "" {
		sourceDir = "."
	}
	abs, err := filepath.Abs(sourceDir)
	if err != nil {
		panic(fmt.Sprintf("golambda: source dir %q: %v", sourceDir, err))
	}
	sum := sha256.Sum256([]byte(abs + "\x00" + pkg))
	dir := filepath.Join(os.TempDir(), "pgha-lambda-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		panic(fmt.Sprintf("golambda: %v", err))
	}
	// Build next to the target and rename: concurrent synths never see a
	// half-written bootstrap.
	tmp, err := os.CreateTemp(dir, ".bootstrap-*")
	if err != nil {
		panic(fmt.Sprintf("golambda: %v", err))
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w", "-o", tmp.Name(), pkg)
	cmd.Dir = abs
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		panic(fmt.Sprintf("golambda: build the Lambda (%s in %s): %v\n%s", cmd.String(), abs, err, out))
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		panic(fmt.Sprintf("golambda: %v", err))
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, Handler)); err != nil {
		panic(fmt.Sprintf("golambda: %v", err))
	}
	return dir
}
