package cfncheck

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestEC2Description(t *testing.T) {
	for _, tt := range []struct {
		in, want string
	}{
		{"app from healthcheck: readiness of the apps in the region", ""},
		{"HTTPS to AWS APIs, ECR and Debian mirrors (signed) #1 [a]+{b}=&;!$*@/", ""},
		// The description that failed the first deploy.
		{"app from healthcheck: readiness of the region's apps", `"'"`},
		{"pgha «nodes»", "«»"},
		{"tab\there", `"\t"`},
		{strings.Repeat("a", 256), "over EC2's 255"},
	} {
		got := EC2Description(tt.in)
		if (tt.want == "") != (got == "") || !strings.Contains(got, strings.Trim(tt.want, `"`)) {
			t.Errorf("EC2Description(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCheck(t *testing.T) {
	tpl := decode(t, `{
		"Description": "ok",
		"Resources": {
			"Good": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "pgha postgres nodes (pgha)",
				"SecurityGroupEgress": [{"Description": "HTTPS to AWS APIs"}]}},
			"BadGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "the region's nodes",
				"SecurityGroupIngress": [{"Description": "ok"}, {"Description": "it's"}]}},
			"BadRule": {"Type": "AWS::EC2::SecurityGroupIngress", "Properties": {"Description": "app's"}},
			"Token": {"Type": "AWS::EC2::SecurityGroupIngress", "Properties": {"Description": {"Fn::Join": ["", ["a", "b"]]}}},
			"LongRole": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "`+strings.Repeat("r", 65)+`"}},
			"BadParam": {"Type": "AWS::SSM::Parameter", "Properties": {"Name": "/pgha/has space"}},
			"BigUserData": {"Type": "AWS::EC2::Instance", "Properties": {"UserData": {"Fn::Base64": {"Fn::Join": ["", ["`+strings.Repeat("x", 16000)+`", {"Ref": "Image"}, "`+strings.Repeat("y", 400)+`"]]}}}},
			"SmallUserData": {"Type": "AWS::EC2::Instance", "Properties": {"UserData": {"Fn::Base64": "#!/bin/bash\n"}}}
		},
		"Outputs": {"Pg1Session": {"Value": "x"}, "euw3-pg1": {"Value": "x"}}
	}`)
	var got []string
	for _, p := range Check(tpl) {
		got = append(got, p.Resource)
	}
	want := []string{"BadGroup", "BadGroup", "BadParam", "BadRule", "BigUserData", "LongRole", "Outputs.euw3-pg1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("problems at %v, want %v: %v", got, want, Check(tpl))
	}
}

func TestStackName(t *testing.T) {
	if StackName("pgha-eu-west-3") != "" || StackName("1pgha") == "" || StackName(strings.Repeat("a", 129)) == "" {
		t.Error("StackName accepts or rejects the wrong names")
	}
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}
