package cluster

import (
	"fmt"
	"regexp"
)

// Stanza is pgBackRest's name for the cluster's backups and archive: the
// cluster's name.
func (c Config) Stanza() string { return c.Name }

// BackupBucket is the name of region's backup bucket: the cluster's name,
// the account and the region, as S3 bucket names are global. A node works
// it out at boot from its instance identity (the account), so the name is
// in no template of the nodes and no CDK token is in their user data; the
// stacks name the buckets the same way. At most 24 + 8 + 12 + 1 + 14 = 59
// characters, under S3's 63.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
func (c Config) BackupBucket(account, region string) string {
	return c.Name + "-backup-" + account + "-" + region
}

// BackupPrefix is the key prefix of the cluster's repository in each
// bucket (pgBackRest's repo path, without its leading slash): a node's
// role may touch only keys under it.
func (c Config) BackupPrefix() string { return c.Name }

// calendarRE is the part of systemd's calendar events pgha accepts: an
// optional list of weekdays or ranges of weekdays, then HH:MM.
var calendarRE = regexp.MustCompile(`^(?:((?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)(?:\.\.(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun))?(?:,(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)(?:\.\.(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun))?)*) )?([01][0-9]|2[0-3]):([0-5][0-9])$`)

// OnCalendar turns a schedule of Backup ("Sun 01:00") into a systemd
// OnCalendar value in UTC ("Sun *-*-* 01:00:00 UTC"); ok is false when it
// is not of the accepted form.
// https://www.freedesktop.org/software/systemd/man/latest/systemd.time.html#Calendar%20Events
func OnCalendar(schedule string) (string, bool) {
	m := calendarRE.FindStringSubmatch(schedule)
	if m == nil {
		return "", false
	}
	out := fmt.Sprintf("*-*-* %s:%s:00 UTC", m[2], m[3])
	if m[1] != "" {
		out = m[1] + " " + out
	}
	return out, true
}

func (b Backup) validate(v *validator) {
	if _, ok := OnCalendar(b.FullSchedule); !ok {
		v.addf("backup.fullSchedule", b.FullSchedule, `must be days and a UTC time like "Sun 01:00", "Mon,Thu 02:30", "Mon..Fri 23:00" or "03:00"`)
	}
	if _, ok := OnCalendar(b.DiffSchedule); !ok && b.DiffSchedule != "" {
		v.addf("backup.diffSchedule", b.DiffSchedule, `must be "" (none) or days and a UTC time like "Mon..Sat 01:00"`)
	}
	if b.RetentionDays < 1 || b.RetentionDays > 3650 {
		v.addf("backup.retentionDays", fmt.Sprint(b.RetentionDays), "must be between 1 and 3650")
	}
	// PostgreSQL's own floor is 0 (off); under 10 s a new 16 MB segment
	// per interval fills the buckets with mostly empty files.
	if b.ArchiveTimeoutSeconds < 10 || b.ArchiveTimeoutSeconds > 3600 {
		v.addf("backup.archiveTimeoutSeconds", fmt.Sprint(b.ArchiveTimeoutSeconds), "must be between 10 and 3600")
	}
	if b.ArchiveAlarmMinutes < 1 || b.ArchiveAlarmMinutes > 1440 {
		v.addf("backup.archiveAlarmMinutes", fmt.Sprint(b.ArchiveAlarmMinutes), "must be between 1 and 1440")
	} else if b.ArchiveAlarmMinutes*60 < 2*b.ArchiveTimeoutSeconds {
		v.addf("backup.archiveAlarmMinutes", fmt.Sprint(b.ArchiveAlarmMinutes),
			fmt.Sprintf("must be at least twice backup.archiveTimeoutSeconds (%d s), or the alarm fires while archiving works", b.ArchiveTimeoutSeconds))
	}
	if b.BackupAlarmHours < 1 || b.BackupAlarmHours > 24*400 {
		v.addf("backup.backupAlarmHours", fmt.Sprint(b.BackupAlarmHours), "must be between 1 and 9600")
	}
}
