package healthcheck

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ArchiveStatus is how far the WAL archive is behind the leader, read
// from pg_stat_archiver and the archiver's status directory on the leader.
type ArchiveStatus struct {
	// Lag is how long WAL has been waiting to be archived: the age of the
	// oldest finished segment (or backup history file) the archiver has
	// not yet taken, 0 when it has taken every one. The segment being
	// written is not waiting: archive_timeout bounds its age.
	Lag time.Duration `json:"lag"`
	// Age is the time since a segment was last archived (or since
	// PostgreSQL started, when none was): how old the archive's newest WAL
	// is, at most about archive_timeout while archiving works.
	Age time.Duration `json:"age"`
	// Failing is true when the last attempt to archive failed (a
	// repository unreachable: pgBackRest fails the segment until every
	// repository has it).
	Failing bool `json:"failing"`
	// Current and LastArchived are the WAL file being written and the
	// newest file archived (a segment, a backup history or a timeline
	// history file).
	Current      string `json:"current"`
	LastArchived string `json:"lastArchived,omitempty"`
}

// ArchiveQuery reads what ArchiveStatus needs. Times are seconds before
// now(), on the server's clock. pg_stat_archiver, pg_current_wal_lsn and
// pg_walfile_name are PUBLIC; pg_ls_archive_statusdir, whose .ready files
// are the ones waiting, is granted to the health checker's role alone
// (render/templates/post-bootstrap.sh), not the whole of pg_monitor.
//
// The lag is not worked out from the file names: the newest archived file
// is often a backup history file named after its backup's first segment
// (000000010000000000000007.00000028.backup), archived after the later
// segment the backup ended in, so its name says nothing about what is
// still waiting.
const ArchiveQuery = `SELECT pg_walfile_name(pg_current_wal_lsn()), coalesce(last_archived_wal, ''),
	extract(epoch FROM now() - coalesce(last_archived_time, pg_postmaster_start_time()))::float8,
	coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false),
	coalesce((SELECT extract(epoch FROM now() - min(modification))::float8
		FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'), 0)
	FROM pg_stat_archiver`

// NewArchiveStatus makes an ArchiveStatus from ArchiveQuery's row: the
// seconds since the last archive and the age of the oldest waiting file
// (0 when none waits).
func NewArchiveStatus(current, lastArchived string, sinceArchived, oldestWaiting float64, failing bool) ArchiveStatus {
	return ArchiveStatus{Current: current, LastArchived: lastArchived, Failing: failing,
		Age: seconds(sinceArchived), Lag: seconds(max(oldestWaiting, 0))}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// ArchiveChecker reads the archive's status on the leader.
type ArchiveChecker interface {
	ArchiveStatus(ctx context.Context) (ArchiveStatus, error)
}

// BackupReader reads the newest backup of a region's repository.
type BackupReader interface {
	// NewestBackup returns when the newest backup in the repository
	// finished, or the zero time when it holds none.
	NewestBackup(ctx context.Context) (time.Time, error)
}

// ObjectReader reads an object of the region's backup bucket; NotFound
// tells a missing object from another failure.
type ObjectReader interface {
	ReadObject(ctx context.Context, key string) (io.ReadCloser, error)
	NotFound(err error) bool
}

// RepositoryReader is the BackupReader of a pgBackRest repository in S3:
// it reads the stanza's backup.info (its .copy when the file is missing),
// the repository's own list of backups.
type RepositoryReader struct {
	Objects ObjectReader
	// Prefix is the repository's path in the bucket (its repo path without
	// the leading slash); Stanza the stanza.
	Prefix, Stanza string
}

// NewestBackup implements BackupReader.
func (r RepositoryReader) NewestBackup(ctx context.Context) (time.Time, error) {
	key := r.Prefix + "/backup/" + r.Stanza + "/backup.info"
	var errs []error
	for _, k := range []string{key, key + ".copy"} {
		body, err := r.Objects.ReadObject(ctx, k)
		if err != nil {
			if r.Objects.NotFound(err) {
				continue
			}
			errs = append(errs, fmt.Errorf("read %s: %w", k, err))
			continue
		}
		t, err := NewestInBackupInfo(body)
		body.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", k, err))
			continue
		}
		return t, nil
	}
	return time.Time{}, errors.Join(errs...)
}

// NewestInBackupInfo returns the latest backup-timestamp-stop of the
// [backup:current] section of a pgBackRest backup.info file (an ini file
// whose values are JSON: label={"backup-timestamp-stop":1482182861,...}),
// or the zero time when it lists no backup.
func NewestInBackupInfo(r io.Reader) (time.Time, error) {
	var newest int64
	section := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line
			continue
		}
		if section != "[backup:current]" || line == "" {
			continue
		}
		label, value, ok := strings.Cut(line, "=")
		if !ok {
			return time.Time{}, fmt.Errorf("backup.info: no '=' in %q", line)
		}
		var b struct {
			Stop *int64 `json:"backup-timestamp-stop"`
		}
		if err := json.Unmarshal([]byte(value), &b); err != nil || b.Stop == nil {
			return time.Time{}, fmt.Errorf("backup.info: backup %s has no backup-timestamp-stop (%v)", label, err)
		}
		newest = max(newest, *b.Stop)
	}
	if err := sc.Err(); err != nil {
		return time.Time{}, err
	}
	if newest == 0 {
		return time.Time{}, nil
	}
	return time.Unix(newest, 0).UTC(), nil
}
