// Package cfncheck checks a synthesized CloudFormation template against
// rules that EC2, IAM and the other services enforce only when the stack is
// deployed, and that neither cdk-nag nor cfn-lint checks: the characters of
// security group descriptions, the size of user data, the length of names.
// A template that breaks one fails its first `cdk deploy` halfway, and the
// rollback of a half-created cluster is slow and can itself fail.
package cfncheck

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Problem is one broken rule, at a resource.
type Problem struct {
	Resource string // logical ID, or "Outputs.<id>", or "Template"
	Rule     string
}

func (p Problem) String() string { return p.Resource + ": " + p.Rule }

// ec2Description is what EC2 accepts in a security group's description and
// in a rule's description: "a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*",
// up to 255 characters.
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_IpRange.html
var ec2Description = regexp.MustCompile(`^[a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]*$`)

// EC2Description reports why s is not a valid EC2 security group or rule
// description, or "" when it is.
func EC2Description(s string) string {
	switch {
	case len(s) > 255:
		return fmt.Sprintf("%d characters, over EC2's 255", len(s))
	case !ec2Description.MatchString(s):
		var bad []string
		for _, r := range s {
			if !ec2Description.MatchString(string(r)) && !slices.Contains(bad, string(r)) {
				bad = append(bad, string(r))
			}
		}
		return fmt.Sprintf("has %q, which EC2 does not accept (only a-zA-Z0-9, space and ._-:/()#,@[]+=&;{}!$*)", strings.Join(bad, ""))
	}
	return ""
}

// MaxUserData is EC2's limit on an instance's user data, before base64.
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/user-data.html
const MaxUserData = 16384

// nameRule is a limit on a resource's name property.
type nameRule struct {
	typ, prop string
	max       int
	pattern   *regexp.Regexp // nil: any characters
	doc       string
}

// nameRules are the name limits of the resource types pgha creates.
var nameRules = []nameRule{
	// https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html
	{"AWS::IAM::Role", "RoleName", 64, regexp.MustCompile(`^[\w+=,.@-]+$`), "IAM role name"},
	// https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html
	{"AWS::Lambda::Function", "FunctionName", 64, regexp.MustCompile(`^[a-zA-Z0-9-_]+$`), "Lambda function name"},
	// https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html
	{"AWS::CloudWatch::Alarm", "AlarmName", 255, nil, "alarm name"},
	// https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html
	{"AWS::SSM::Parameter", "Name", 1011, regexp.MustCompile(`^[a-zA-Z0-9_.\-/]+$`), "SSM parameter name"},
	// https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html
	{"AWS::SecretsManager::Secret", "Name", 512, regexp.MustCompile(`^[a-zA-Z0-9/_+=.@-]+$`), "secret name"},
	// https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html
	{"AWS::Logs::LogGroup", "LogGroupName", 512, regexp.MustCompile(`^[.\-_/#A-Za-z0-9]+$`), "log group name"},
	// https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html
	{"AWS::Events::Rule", "Name", 64, regexp.MustCompile(`^[.\-_A-Za-z0-9]+$`), "EventBridge rule name"},
}

// StackName checks a stack name: up to 128 characters, a letter first, then
// letters, digits and hyphens.
// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html
func StackName(name string) string {
	if len(name) > 128 || !regexp.MustCompile(`^[a-zA-Z][-a-zA-Z0-9]*$`).MatchString(name) {
		return fmt.Sprintf("stack name %q: must be at most 128 letters, digits and hyphens, starting with a letter", name)
	}
	return ""
}

// Check returns every problem in tpl, a template decoded from JSON.
func Check(tpl map[string]any) []Problem {
	var out []Problem
	add := func(res, format string, args ...any) {
		out = append(out, Problem{res, fmt.Sprintf(format, args...)})
	}
	if d, ok := tpl["Description"].(string); ok && len(d) > 1024 {
		add("Template", "description of %d bytes, over CloudFormation's 1024", len(d))
	}
	resources, _ := tpl["Resources"].(map[string]any)
	for _, id := range slices.Sorted(maps.Keys(resources)) {
		r, _ := resources[id].(map[string]any)
		typ, _ := r["Type"].(string)
		p, _ := r["Properties"].(map[string]any)
		desc := func(what string, v any) {
			if s, ok := v.(string); ok {
				if why := EC2Description(s); why != "" {
					add(id, "%s %q %s", what, s, why)
				}
			}
		}
		switch typ {
		case "AWS::EC2::SecurityGroup":
			desc("group description", p["GroupDescription"])
			for _, key := range []string{"SecurityGroupIngress", "SecurityGroupEgress"} {
				rules, _ := p[key].([]any)
				for _, rule := range rules {
					if m, ok := rule.(map[string]any); ok {
						desc("rule description", m["Description"])
					}
				}
			}
		case "AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress":
			desc("rule description", p["Description"])
		case "AWS::EC2::Instance":
			if ud, ok := p["UserData"].(map[string]any); ok {
				if n := userDataLen(ud["Fn::Base64"]); n > MaxUserData {
					add(id, "user data of at least %d bytes, over EC2's %d", n, MaxUserData)
				}
			}
		}
		for _, rule := range nameRules {
			if rule.typ != typ {
				continue
			}
			name, ok := p[rule.prop].(string)
			if !ok {
				continue
			}
			if len(name) > rule.max {
				add(id, "%s %q: %d characters, over the limit of %d", rule.doc, name, len(name), rule.max)
			}
			if rule.pattern != nil && !rule.pattern.MatchString(name) {
				add(id, "%s %q: characters outside %s", rule.doc, name, rule.pattern)
			}
		}
		// EC2 tag values: up to 256 Unicode characters.
		// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Tag.html
		tags, _ := p["Tags"].([]any)
		for _, t := range tags {
			m, _ := t.(map[string]any)
			k, _ := m["Key"].(string)
			v, _ := m["Value"].(string)
			if utf8.RuneCountInString(k) > 128 || utf8.RuneCountInString(v) > 256 {
				add(id, "tag %q=%q: over 128 characters of key or 256 of value", k, v)
			}
		}
	}
	outputs, _ := tpl["Outputs"].(map[string]any)
	for _, id := range slices.Sorted(maps.Keys(outputs)) {
		// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/outputs-section-structure.html
		if !regexp.MustCompile(`^[A-Za-z0-9]{1,255}$`).MatchString(id) {
			add("Outputs."+id, "output logical ID must be 1-255 letters and digits")
		}
		o, _ := outputs[id].(map[string]any)
		if d, ok := o["Description"].(string); ok && len(d) > 1024 {
			add("Outputs."+id, "description of %d bytes, over 1024", len(d))
		}
	}
	return out
}

// userDataLen is the length of the user data v describes: a string, a
// base64 string, or an Fn::Join or Fn::Sub of them, counting each reference
// it cannot resolve as one byte (so the result is a lower bound).
func userDataLen(v any) int {
	switch x := v.(type) {
	case string:
		return len(x)
	case map[string]any:
		if j, ok := x["Fn::Join"].([]any); ok && len(j) == 2 {
			sep, _ := j[0].(string)
			parts, _ := j[1].([]any)
			n := 0
			for i, part := range parts {
				if i > 0 {
					n += len(sep)
				}
				n += userDataLen(part)
			}
			return n
		}
		if s, ok := x["Fn::Sub"].(string); ok {
			return len(regexp.MustCompile(`\$\{[^}]*\}`).ReplaceAllString(s, "x"))
		}
		return 1
	}
	return 0
}
