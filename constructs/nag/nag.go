// Package nag records cdk-nag suppressions where resources are made.
package nag

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// Suppress records a cdk-nag suppression on scope and its children, with
// the reason a reviewer reads. appliesTo narrows it to findings such as one
// managed policy ("Policy::arn:...") or one wildcard ("Resource::*").
func Suppress(scope constructs.IConstruct, rule, reason string, appliesTo ...string) {
	s := &cdknag.NagPackSuppression{Id: jsii.String(rule), Reason: jsii.String(reason)}
	if len(appliesTo) > 0 {
		var a []any
		for _, x := range appliesTo {
			a = append(a, x)
		}
		s.AppliesTo = &a
	}
	cdknag.NagSuppressions_AddResourceSuppressions(scope, &[]*cdknag.NagPackSuppression{s}, jsii.Bool(true))
}

// awsCustomResourceFunction is the construct ID, under the stack, of the
// Lambda function the CDK's AwsCustomResource constructs share.
const awsCustomResourceFunction = "AWS679f53fac002430cb0da5b7982bd2287"

// SuppressAwsCustomResource records, once every AwsCustomResource of stack
// exists, why the function they share may use the managed
// AWSLambdaBasicExecutionRole.
func SuppressAwsCustomResource(stack awscdk.Stack) {
	if fn := stack.Node().TryFindChild(jsii.String(awsCustomResourceFunction)); fn != nil {
		Suppress(fn, "AwsSolutions-IAM4",
			"The CDK's AwsCustomResource function (peer routes, the frozen Debian image, the app restart) uses AWSLambdaBasicExecutionRole, "+
				"which only lets it write its own CloudWatch logs; what it calls is granted inline, each call on its own resources.",
			"Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
	}
}

// Resource is how cdk-nag names a wildcard resource of stack in a finding,
// for appliesTo: "Resource::arn:<AWS::Partition>:SERVICE:REGION:ACCOUNT:REST",
// with the stack's region and account where they are known at synth.
func Resource(stack awscdk.Stack, service, rest string) string {
	region := "<AWS::Region>"
	if r := stack.Region(); !*awscdk.Token_IsUnresolved(r) {
		region = *r
	}
	return ResourceIn(stack, region, service, rest)
}

// ResourceIn is Resource for an ARN in another region than the stack's.
func ResourceIn(stack awscdk.Stack, region, service, rest string) string {
	account := "<AWS::AccountId>"
	if a := stack.Account(); !*awscdk.Token_IsUnresolved(a) {
		account = *a
	}
	return "Resource::arn:<AWS::Partition>:" + service + ":" + region + ":" + account + ":" + rest
}
