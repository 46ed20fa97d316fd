package healthcheck

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestConfigPatch(t *testing.T) {
	current := decodeJSON(t, `{"ttl": 20, "loop_wait": 2, "retry_timeout": 9, "synchronous_mode": true,
		"slots": {"x": {}}, "postgresql": {"use_slots": true, "parameters": {"max_connections": "200", "work_mem": "4MB", "hot_standby": "on"}}}`)
	for _, tt := range []struct {
		name, desired, want string
	}{
		{"in sync", `{"ttl": 20, "loop_wait": 2, "postgresql": {"use_slots": true, "parameters": {"max_connections": "200", "work_mem": "4MB", "hot_standby": "on"}}}`, `null`},
		{"a top-level key", `{"ttl": 30, "loop_wait": 2}`, `{"ttl": 30}`},
		{"a new key", `{"failsafe_mode": true}`, `{"failsafe_mode": true}`},
		{"a parameter changed, one removed", `{"postgresql": {"use_slots": true, "parameters": {"max_connections": "300", "hot_standby": "on"}}}`,
			`{"postgresql": {"parameters": {"max_connections": "300", "work_mem": null}}}`},
		{"types count", `{"postgresql": {"parameters": {"max_connections": 200, "work_mem": "4MB", "hot_standby": "on"}}}`,
			`{"postgresql": {"parameters": {"max_connections": 200}}}`},
		{"keys it does not set are left alone", `{"ttl": 20}`, `null`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := ConfigPatch(current, decodeJSON(t, tt.desired))
			var want map[string]any
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ConfigPatch = %v, want %v", got, want)
			}
		})
	}
	if got := patchKeys(decodeJSON(t, `{"ttl": 1, "postgresql": {"use_slots": false, "parameters": {"a": 1, "b": null}}}`)); !reflect.DeepEqual(got,
		[]string{"postgresql.parameters.a", "postgresql.parameters.b", "postgresql.use_slots", "ttl"}) {
		t.Errorf("patchKeys = %v", got)
	}
}

func decodeJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// A leader outside the primary region is reported and becomes a metric.
func TestLeaderAway(t *testing.T) {
	for _, tt := range []struct {
		member, region string
		away           bool
	}{
		{"pg2", "eu-west-3", false},
		{"pg2", "eu-west-1", true},
	} {
		c := &Checker{
			Members:       []Member{{Name: tt.member, Region: tt.region, URL: serveCaptured(t, "healthy", "pg2")}},
			Patroni:       &PatroniClient{},
			AppProber:     &AppProber{},
			Store:         &MemoryStore{},
			PrimaryRegion: "eu-west-3",
		}
		r, _ := c.Check(t.Context())
		if r.LeaderAway != tt.away {
			t.Errorf("leader in %s: LeaderAway = %v, want %v", tt.region, r.LeaderAway, tt.away)
		}
		var b strings.Builder
		if err := WriteEMF(&b, "pgha", "eu-west-3", r); err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(b.String()), &doc); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]float64{true: 1, false: 0}[tt.away]; doc[MetricLeaderAway] != want {
			t.Errorf("leader in %s: %s = %v, want %v", tt.region, MetricLeaderAway, doc[MetricLeaderAway], want)
		}
	}
}
