package healthcheck

import (
	"strings"
	"testing"
	"time"
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

func TestArchiveStatus(t *testing.T) {
	for _, c := range []struct {
		name, current, last string
		since               float64
		want                time.Duration
	}{
		{"caught up", "000000010000000000000007", "000000010000000000000006", 300, 0},
		{"the segment before the current one is missing", "000000010000000000000008", "000000010000000000000006", 300, 300 * time.Second},
		{"across a log file", "000000010000000100000000", "0000000100000000000000FF", 90, 0},
		{"behind across a log file", "000000010000000100000001", "0000000100000000000000FF", 90, 90 * time.Second},
		{"new timeline, caught up", "000000020000000000000009", "000000010000000000000008", 45, 0},
		{"last archived a history file", "000000020000000000000009", "00000002.history", 45, 45 * time.Second},
		{"nothing archived yet", "000000010000000000000003", "", 120, 120 * time.Second},
	} {
		st := NewArchiveStatus(c.current, c.last, c.since, false)
		if st.Lag != c.want {
			t.Errorf("%s: lag = %v, want %v", c.name, st.Lag, c.want)
		}
		// The newest WAL's age is the time since the last archive, caught up or not.
		if want := time.Duration(c.since * float64(time.Second)); st.Age != want {
			t.Errorf("%s: age = %v, want %v", c.name, st.Age, want)
		}
	}
}
