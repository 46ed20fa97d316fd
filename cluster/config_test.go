package cluster

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("default config is invalid: %v", err)
	}
}

func TestParseEmptyGivesDefaults(t *testing.T) {
	for _, in := range []string{"", "null", "  {}  "} {
		c, err := Parse([]byte(in))
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		got, _ := json.Marshal(c)
		want, _ := json.Marshal(Default())
		if string(got) != string(want) {
			t.Errorf("Parse(%q) = %s, want the defaults %s", in, got, want)
		}
	}
}

func TestParseMergesParametersAndReplacesRegions(t *testing.T) {
	c, err := Parse([]byte(`{
		"postgres": {"parameters": {"work_mem": "8MB", "max_connections": "300"}},
		"regions": [
			{"name": "us-east-1", "cidr": "10.20.0.0/16", "postgres": 2, "etcd": 3, "haproxy": 1, "app": 1}
		]
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Postgres.Parameters["work_mem"]; got != "8MB" {
		t.Errorf("work_mem = %q, want 8MB", got)
	}
	if got := c.Postgres.Parameters["max_connections"]; got != "300" {
		t.Errorf("max_connections = %q, want the override 300", got)
	}
	if got := c.Postgres.Parameters["wal_log_hints"]; got != "on" {
		t.Errorf("wal_log_hints = %q, want the default kept", got)
	}
	if len(c.Regions) != 1 || c.Regions[0].Name != "us-east-1" {
		t.Errorf("regions = %+v, want only us-east-1", c.Regions)
	}
}

// TestParseRejects checks that every rule names the field and the value.
func TestParseRejects(t *testing.T) {
	tests := []struct {
		name  string
		json  string
		wants []string // substrings of the error
	}{
		{"unknown key", `{"nmae": "x"}`, []string{`unknown key "nmae"`}},
		{"unknown nested key", `{"patroni": {"tll": 30}}`, []string{`unknown key "tll"`}},
		{"wrong type", `{"patroni": {"ttl": "30"}}`, []string{"pgha.patroni.ttl", "string"}},
		{"bad JSON", `{"name": }`, []string{"invalid JSON"}},
		{"trailing data", `{} {}`, []string{"unexpected data"}},
		{"bad name", `{"name": "My Cluster"}`, []string{"pgha.name", `"My Cluster"`}},
		{"overlapping CIDRs", `{"regions": [
			{"name": "eu-west-3", "cidr": "10.11.0.0/16", "postgres": 2, "etcd": 2, "haproxy": 1},
			{"name": "eu-west-1", "cidr": "10.11.128.0/17", "postgres": 1, "etcd": 1, "haproxy": 1}]}`,
			[]string{"pgha.regions[1].cidr", `"10.11.128.0/17"`, "overlaps regions[0].cidr"}},
		{"public CIDR", `{"regions": [{"name": "eu-west-3", "cidr": "8.8.0.0/16", "postgres": 2, "etcd": 3, "haproxy": 1}]}`,
			[]string{"pgha.regions[0].cidr", `"8.8.0.0/16"`, "10.0.0.0/8"}},
		{"CIDR too small", `{"regions": [{"name": "eu-west-3", "cidr": "10.1.0.0/24", "postgres": 2, "etcd": 3, "haproxy": 1}]}`,
			[]string{"pgha.regions[0].cidr", "/16 to a /21"}},
		{"host bits", `{"regions": [{"name": "eu-west-3", "cidr": "10.1.2.0/16", "postgres": 2, "etcd": 3, "haproxy": 1}]}`,
			[]string{"host bits", "10.1.0.0/16"}},
		{"even etcd", `{"regions": [
			{"name": "eu-west-3", "cidr": "10.11.0.0/16", "postgres": 2, "etcd": 2, "haproxy": 1},
			{"name": "eu-west-1", "cidr": "10.12.0.0/16", "postgres": 1, "etcd": 2, "haproxy": 1}]}`,
			[]string{"pgha.regions[*].etcd", `"4"`, "odd number"}},
		{"single etcd", `{"regions": [{"name": "eu-west-3", "cidr": "10.11.0.0/16", "postgres": 2, "etcd": 1, "haproxy": 1}]}`,
			[]string{"pgha.regions[*].etcd", `"1"`}},
		{"one postgres cannot fail over", `{"regions": [{"name": "eu-west-3", "cidr": "10.11.0.0/16", "postgres": 1, "etcd": 3, "haproxy": 1}]}`,
			[]string{"pgha.regions[*].postgres", `"1"`}},
		{"primary without postgres", `{"regions": [
			{"name": "eu-west-3", "cidr": "10.11.0.0/16", "etcd": 3, "haproxy": 1},
			{"name": "eu-west-1", "cidr": "10.12.0.0/16", "postgres": 2, "haproxy": 1}]}`,
			[]string{"pgha.regions[0].postgres", "primary"}},
		{"too many nodes", `{"regions": [{"name": "eu-west-3", "cidr": "10.11.0.0/16", "postgres": 11, "etcd": 3, "haproxy": 1}]}`,
			[]string{"pgha.regions[0].postgres", `"11"`}},
		{"app without haproxy", `{"regions": [
			{"name": "eu-west-3", "cidr": "10.11.0.0/16", "postgres": 2, "etcd": 2, "haproxy": 1},
			{"name": "eu-west-1", "cidr": "10.12.0.0/16", "postgres": 1, "etcd": 1, "app": 1}]}`,
			[]string{"pgha.regions[1].haproxy"}},
		{"bad region", `{"regions": [{"name": "europe-1", "cidr": "10.11.0.0/16", "postgres": 2, "etcd": 3, "haproxy": 1}]}`,
			[]string{"pgha.regions[0].name", `"europe-1"`}},
		{"duplicate region", `{"regions": [
			{"name": "eu-west-3", "cidr": "10.11.0.0/16", "postgres": 2, "etcd": 2, "haproxy": 1},
			{"name": "eu-west-3", "cidr": "10.12.0.0/16", "postgres": 1, "etcd": 1, "haproxy": 1}]}`,
			[]string{"pgha.regions[1].name", "already used by regions[0]"}},
		{"bad zone", `{"regions": [{"name": "eu-west-3", "cidr": "10.11.0.0/16", "postgres": 2, "etcd": 3, "haproxy": 1,
			"availabilityZones": ["eu-west-3a", "eu-west-1b", "eu-west-3c"]}]}`,
			[]string{"pgha.regions[0].availabilityZones[1]", `"eu-west-1b"`}},
		{"witness with majority region", `{"witness": {"name": "eu-central-1", "cidr": "10.13.0.0/16"},
			"regions": [
			{"name": "eu-west-3", "cidr": "10.11.0.0/16", "postgres": 2, "etcd": 3, "haproxy": 1},
			{"name": "eu-west-1", "cidr": "10.12.0.0/16", "postgres": 1, "etcd": 1, "haproxy": 1}]}`,
			[]string{"pgha.regions[0].etcd", "majority"}},
		{"witness overlaps", `{"witness": {"name": "eu-central-1", "cidr": "10.12.0.0/16"}, "regions": [
			{"name": "eu-west-3", "cidr": "10.11.0.0/16", "postgres": 2, "etcd": 1, "haproxy": 1},
			{"name": "eu-west-1", "cidr": "10.12.0.0/16", "postgres": 1, "etcd": 1, "haproxy": 1}]}`,
			[]string{"pgha.witness.cidr", "overlaps regions[1].cidr"}},
		{"timing rule", `{"patroni": {"ttl": 20, "loopWait": 5, "retryTimeout": 10}}`,
			[]string{"pgha.patroni", "loop_wait + 2*retry_timeout <= ttl", "25 > ttl 20"}},
		{"ttl below Patroni's floor", `{"patroni": {"ttl": 10, "loopWait": 2, "retryTimeout": 4}}`,
			[]string{"pgha.patroni.ttl", `"10"`}},
		{"more synchronous standbys than replicas", `{"patroni": {"synchronousNodeCount": 3}}`,
			[]string{"pgha.patroni.synchronousNodeCount", `"3"`, "the 2 replicas"}},
		{"strict without sync", `{"patroni": {"synchronousMode": false, "synchronousModeStrict": true}}`,
			[]string{"pgha.patroni.synchronousModeStrict"}},
		{"quorum without sync", `{"patroni": {"synchronousMode": false, "quorumCommit": true}}`,
			[]string{"pgha.patroni.quorumCommit", "needs patroni.synchronousMode true"}},
		{"etcd election too short", `{"etcd": {"heartbeatIntervalMs": 200, "electionTimeoutMs": 500}}`,
			[]string{"pgha.etcd.electionTimeoutMs", `"500"`, "1000"}},
		{"bad instance type", `{"instances": {"postgres": "large"}}`,
			[]string{"pgha.instances.postgres", `"large"`}},
		{"architecture mismatch", `{"instances": {"etcd": "m7i.large"}}`,
			[]string{"pgha.instances.etcd", `"m7i.large"`, "arm64"}},
		{"bad architecture", `{"instances": {"architecture": "riscv"}}`,
			[]string{"pgha.instances.architecture", `"riscv"`}},
		{"tiny root volume", `{"instances": {"rootVolumeGiB": 4}}`,
			[]string{"pgha.instances.rootVolumeGiB", `"4"`}},
		{"managed parameter", `{"postgres": {"parameters": {"port": "6432"}}}`,
			[]string{"pgha.postgres.parameters.port", "managed by pgha"}},
		{"fsync off", `{"postgres": {"parameters": {"fsync": "off"}}}`,
			[]string{"pgha.postgres.parameters.fsync", `"off"`, "acknowledged writes"}},
		{"fsync false, as a prefix", `{"postgres": {"parameters": {"fsync": "FAL"}}}`,
			[]string{"pgha.postgres.parameters.fsync", `"FAL"`}},
		{"full_page_writes 0", `{"postgres": {"parameters": {"full_page_writes": "0"}}}`,
			[]string{"pgha.postgres.parameters.full_page_writes", `"0"`, "torn pages"}},
		{"synchronous_commit off", `{"postgres": {"parameters": {"synchronous_commit": "off"}}}`,
			[]string{"pgha.postgres.parameters.synchronous_commit", `"off"`, "synchronousMode"}},
		{"synchronous_commit local", `{"postgres": {"parameters": {"synchronous_commit": "'local'"}}}`,
			[]string{"pgha.postgres.parameters.synchronous_commit", `"'local'"`}},
		{"password_encryption md5", `{"postgres": {"parameters": {"password_encryption": "md5"}}}`,
			[]string{"pgha.postgres.parameters.password_encryption", `"md5"`, "scram-sha-256"}},
		{"ssl off", `{"postgres": {"parameters": {"ssl": "off"}}}`,
			[]string{"pgha.postgres.parameters.ssl", "managed by pgha"}},
		{"HAProxy takes every slot", `{"postgres": {"parameters": {"max_connections": "100"}}, "haproxy": {"serverMaxConn": 50}}`,
			[]string{"pgha.haproxy.serverMaxConn", `"50"`, "2 HAProxy nodes is 100", "92 slots", "max_connections 100"}},
		{"max_connections not a number", `{"postgres": {"parameters": {"max_connections": "lots"}}}`,
			[]string{"pgha.postgres.parameters.max_connections", `"lots"`}},
		{"negative rotation", `{"tls": {"rotation": -1}}`,
			[]string{"pgha.tls.rotation", `"-1"`}},
		{"full schedule not a calendar time", `{"backup": {"fullSchedule": "weekly"}}`,
			[]string{"pgha.backup.fullSchedule", `"weekly"`, "Sun 01:00"}},
		{"full schedule hour 24", `{"backup": {"fullSchedule": "Sun 24:00"}}`,
			[]string{"pgha.backup.fullSchedule", `"Sun 24:00"`}},
		{"diff schedule lower-case day", `{"backup": {"diffSchedule": "mon 01:00"}}`,
			[]string{"pgha.backup.diffSchedule", `"mon 01:00"`}},
		{"no retention", `{"backup": {"retentionDays": 0}}`,
			[]string{"pgha.backup.retentionDays", `"0"`}},
		{"archive timeout off", `{"backup": {"archiveTimeoutSeconds": 0}}`,
			[]string{"pgha.backup.archiveTimeoutSeconds", `"0"`}},
		{"archive alarm before the timeout", `{"backup": {"archiveTimeoutSeconds": 600, "archiveAlarmMinutes": 10}}`,
			[]string{"pgha.backup.archiveAlarmMinutes", `"10"`, "twice backup.archiveTimeoutSeconds (600 s)"}},
		{"archive_command set", `{"postgres": {"parameters": {"archive_command": "/bin/true"}}}`,
			[]string{"pgha.postgres.parameters.archive_command", "managed by pgha"}},
		{"backup alarm zero", `{"backup": {"backupAlarmHours": 0}}`,
			[]string{"pgha.backup.backupAlarmHours", `"0"`}},
		{"multi-line parameter", `{"postgres": {"parameters": {"work_mem": "4MB\nport = 1"}}}`,
			[]string{"pgha.postgres.parameters.work_mem", "single-line"}},
		{"image for an unknown region", `{"instances": {"images": {"us-east-1": "ami-0123456789abcdef0"}}}`,
			[]string{"pgha.instances.images.us-east-1", "not one of the cluster's regions"}},
		{"bad image id", `{"instances": {"images": {"eu-west-3": "debian-13"}}}`,
			[]string{"pgha.instances.images.eu-west-3", `"debian-13"`}},
		{"bad app CIDR", `{"app": {"allowedCidrs": ["203.0.113.7"]}}`,
			[]string{"pgha.app.allowedCidrs[0]", `"203.0.113.7"`}},
		{"bad database", `{"app": {"database": "postgres"}}`,
			[]string{"pgha.app.database", `"postgres"`}},
		{"negative lag threshold", `{"healthCheck": {"lagAlarmBytes": -1}}`,
			[]string{"pgha.healthCheck.lagAlarmBytes", `"-1"`}},
		{"volume alarm that cannot fire", `{"healthCheck": {"volumeAlarmPercent": 100}}`,
			[]string{"pgha.healthCheck.volumeAlarmPercent", `"100"`, "between 1 and 99"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.json))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			for _, want := range tt.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.Name = ""
	c.Patroni.TTL = 5
	c.Instances.Postgres = "x"
	err := c.Validate()
	var fields []string
	for _, e := range unwrapAll(err) {
		var ve *ValidationError
		if errors.As(e, &ve) {
			fields = append(fields, ve.Field)
		}
	}
	for _, want := range []string{"name", "patroni.ttl", "patroni", "instances.postgres"} {
		found := false
		for _, f := range fields {
			found = found || f == want
		}
		if !found {
			t.Errorf("no error for field %q; got fields %v", want, fields)
		}
	}
}

func TestFromContext(t *testing.T) {
	var ctx any
	if err := json.Unmarshal([]byte(`{"name": "prod", "patroni": {"ttl": 30}}`), &ctx); err != nil {
		t.Fatal(err)
	}
	c, err := FromContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "prod" || c.Patroni.TTL != 30 || c.Patroni.LoopWait != 2 {
		t.Errorf("FromContext = name %q ttl %d loop_wait %d, want prod 30 2", c.Name, c.Patroni.TTL, c.Patroni.LoopWait)
	}
	if _, err := FromContext(map[string]any{"name": 3}); err == nil {
		t.Error("FromContext accepted a numeric name")
	}
	c, err = FromContext(nil)
	if err != nil || c.Name != "pgha" {
		t.Errorf("FromContext(nil) = %q, %v; want the defaults", c.Name, err)
	}
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func TestSafeParametersAccepted(t *testing.T) {
	for _, js := range []string{
		`{"postgres": {"parameters": {"fsync": "on", "full_page_writes": "true", "synchronous_commit": "remote_apply"}}}`,
		`{"postgres": {"parameters": {"synchronous_commit": "on", "password_encryption": "scram-sha-256"}}}`,
		// Without synchronous mode no commit waits for a standby anyway.
		`{"patroni": {"synchronousMode": false}, "postgres": {"parameters": {"synchronous_commit": "local"}}}`,
	} {
		if _, err := Parse([]byte(js)); err != nil {
			t.Errorf("Parse(%s): %v", js, err)
		}
	}
	for v, want := range map[string]bool{"off": true, "of": true, "o": false, "f": true, "no": true, "n": true, "0": true, "on": false, "1": false, "": false, "yes": false} {
		if got := pgFalse(v); got != want {
			t.Errorf("pgFalse(%q) = %v, want %v", v, got, want)
		}
	}
}
