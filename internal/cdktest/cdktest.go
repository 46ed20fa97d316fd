// Package cdktest reads synthesized CloudFormation templates for the CDK
// constructs' tests (through aws-cdk-lib's assertions).
package cdktest

import (
	"encoding/json"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"
)

// Resources are the template's resources of type typ, by logical ID.
func Resources(t testing.TB, tmpl assertions.Template, typ string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for id, r := range *tmpl.FindResources(jsii.String(typ), nil) {
		out[id] = *r
	}
	return out
}

// Only is the properties of the template's one resource of type typ; the
// test fails when there is not exactly one.
func Only(t testing.TB, tmpl assertions.Template, typ string) map[string]any {
	t.Helper()
	rs := Resources(t, tmpl, typ)
	if len(rs) != 1 {
		t.Fatalf("%d %s, want 1", len(rs), typ)
	}
	for _, r := range rs {
		return r["Properties"].(map[string]any)
	}
	return nil
}

// LogicalID is the logical ID of a resource of type typ; the test fails
// when there is none.
func LogicalID(t testing.TB, tmpl assertions.Template, typ string) string {
	t.Helper()
	for id := range Resources(t, tmpl, typ) {
		return id
	}
	t.Fatalf("no %s", typ)
	return ""
}

// ToJSON is v as compact JSON.
func ToJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
