// Package nag records cdk-nag suppressions where resources are made.
package nag

import (
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
