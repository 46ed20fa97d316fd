package healthcheck

import (
	"encoding/json"
	"reflect"
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
