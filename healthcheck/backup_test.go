package healthcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/internal/pgtest"
)

// A backup.info as pgBackRest 2.55 writes it (two backups, the second
// newer), cut down to the fields that matter and a few around them.
const backupInfo = `[backrest]
backrest-format=5
backrest-version="2.55.1"

[backup:current]
20261202-183354F={"backrest-format":5,"backrest-version":"2.55.1","backup-archive-start":"000000010000000000000004","backup-archive-stop":"000000010000000000000005","backup-timestamp-start":1764700434,"backup-timestamp-stop":1764700446,"backup-type":"full","db-id":1}
20261202-183354F_20261203-010002D={"backrest-format":5,"backup-prior":"20261202-183354F","backup-timestamp-start":1764723602,"backup-timestamp-stop":1764723610,"backup-type":"diff","db-id":1}

[db]
db-id=1
db-system-id=7580000000000000000
db-version="17"

[backrest]
backrest-checksum="0123456789abcdef0123456789abcdef01234567"
`

func TestNewestInBackupInfo(t *testing.T) {
	got, err := NewestInBackupInfo(strings.NewReader(backupInfo))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Unix(1764723610, 0).UTC(); !got.Equal(want) {
		t.Errorf("newest = %v, want %v", got, want)
	}
	empty := strings.Replace(backupInfo, backupInfo[strings.Index(backupInfo, "20261202-183354F="):strings.Index(backupInfo, "\n[db]")], "", 1)
	if got, err := NewestInBackupInfo(strings.NewReader(empty)); err != nil || !got.IsZero() {
		t.Errorf("no backups: %v, %v; want the zero time", got, err)
	}
	broken := strings.Replace(backupInfo, `"backup-timestamp-stop":1764723610,`, "", 1)
	if _, err := NewestInBackupInfo(strings.NewReader(broken)); err == nil || !strings.Contains(err.Error(), "20261202-183354F_20261203-010002D") {
		t.Errorf("a backup without a stop time: err = %v, want one naming it", err)
	}
}

// TestArchiveQuery runs ArchiveQuery as a role granted what
// post-bootstrap.sh grants the health checker's, on a real PostgreSQL
// whose archive fails, then works.
func TestArchiveQuery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db := pgtest.New(t)
	super, err := pgx.Connect(ctx, db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := super.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`ALTER SYSTEM SET archive_mode = on`)
	exec(`ALTER SYSTEM SET archive_command = 'false'`)
	exec(`CREATE ROLE checker LOGIN PASSWORD 'checker'`)
	exec(`GRANT EXECUTE ON FUNCTION pg_ls_archive_statusdir() TO checker`)
	super.Close(ctx)
	if err := db.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := db.Start(); err != nil {
		t.Fatal(err)
	}
	if super, err = pgx.Connect(ctx, db.DSN()); err != nil {
		t.Fatal(err)
	}
	defer super.Close(ctx)
	u, err := url.Parse(db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("checker", "checker")
	checker, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer checker.Close(ctx)
	status := func() ArchiveStatus {
		t.Helper()
		var current, last string
		var since, waiting float64
		var failing bool
		if err := checker.QueryRow(ctx, ArchiveQuery).Scan(&current, &last, &since, &failing, &waiting); err != nil {
			t.Fatal(err)
		}
		return NewArchiveStatus(current, last, since, waiting, failing)
	}
	// within polls status until ok holds, for up to 20 s.
	within := func(what string, ok func(ArchiveStatus) bool) ArchiveStatus {
		t.Helper()
		var st ArchiveStatus
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if st = status(); ok(st) {
				return st
			}
		}
		t.Fatalf("%s: not within 20 s: %+v", what, st)
		return st
	}

	if st := status(); st.Lag != 0 || st.Failing {
		t.Errorf("nothing finished yet: %+v, want no lag", st)
	}
	// A finished segment the archive refuses waits, and its wait grows.
	exec(`CREATE TABLE t AS SELECT 1 AS v`)
	exec(`SELECT pg_switch_wal()`)
	first := within("a failing archive", func(st ArchiveStatus) bool { return st.Failing && st.Lag > 0 })
	time.Sleep(1200 * time.Millisecond)
	if st := status(); st.Lag < first.Lag+time.Second || !st.Failing {
		t.Errorf("1.2 s later the lag is %v (was %v), failing %v: want it grown by the wait", st.Lag, first.Lag, st.Failing)
	}
	// The archive works again: nothing waits, whatever the newest file.
	exec(`ALTER SYSTEM SET archive_command = 'true'`)
	exec(`SELECT pg_reload_conf()`)
	st := within("the archive caught up", func(st ArchiveStatus) bool { return st.Lag == 0 && !st.Failing })
	if st.LastArchived == "" || st.Age > 30*time.Second {
		t.Errorf("caught up, yet the newest archived is %q, %v old", st.LastArchived, st.Age)
	}
}

func TestVolumes(t *testing.T) {
	used := VolumesUsed(map[string]string{"pg1": "37", "pg2": " 100\n", "pg3": "full", "pg4": "-3", "pg5": "101"})
	if len(used) != 2 || used["pg1"] != 37 || used["pg2"] != 100 {
		t.Errorf("VolumesUsed = %v, want pg1 37 and pg2 100 (the rest are not percents)", used)
	}
	if max, ok := MaxVolumeUsed(used); !ok || max != 100 {
		t.Errorf("MaxVolumeUsed = %v, %v; want 100", max, ok)
	}
	if _, ok := MaxVolumeUsed(nil); ok {
		t.Error("MaxVolumeUsed of no report: want false")
	}
	// The metric carries the fullest; the leader's full volume is logged.
	r := Report{Volumes: used, Observation: Observation{View: View{Leader: &Leader{Name: "pg2"}}}}
	var buf bytes.Buffer
	if err := WriteEMF(&buf, "pgha", "eu-west-3", r); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil || doc[MetricVolumeUsed] != 100.0 {
		t.Errorf("EMF %s = %v (%v), want 100", MetricVolumeUsed, doc[MetricVolumeUsed], err)
	}
	var full string
	for _, a := range r.LogAttrs() {
		if a.Key == "volumeFull" {
			full = a.Value.String()
		}
	}
	if !strings.Contains(full, "pg2") {
		t.Errorf("log attribute volumeFull = %q, want it to name the leader pg2", full)
	}
	r.Volumes = map[string]float64{"pg2": 99, "pg1": 100}
	for _, a := range r.LogAttrs() {
		if a.Key == "volumeFull" {
			t.Errorf("volumeFull = %q with the leader's volume at 99 %%", a.Value)
		}
	}
}
