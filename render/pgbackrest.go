package render

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pgha/pgha/cluster"
)

// pgBackRest on the PostgreSQL nodes: backups and the WAL archive in one
// repository per data region, an S3 bucket (cluster.Config.BackupBucket).
// https://pgbackrest.org/configuration.html
const (
	// PgBackRestConfig is pgBackRest's configuration (PgBackRestConf),
	// its default path.
	PgBackRestConfig = "/etc/pgbackrest/pgbackrest.conf"
	// PgBackRestBuckets holds the repositories' bucket names, which the
	// boot writes from the instance's account (pgBackRest reads every
	// file of its config-include-path, /etc/pgbackrest/conf.d).
	PgBackRestBuckets = "/etc/pgbackrest/conf.d/pgha-buckets.conf"
	// BackupScript takes a backup when this node is the one to.
	BackupScript = "/usr/local/lib/pgha/backup"
	// RestoreScript is the steps of a point-in-time recovery of the
	// cluster (Restore).
	RestoreScript = "/usr/local/lib/pgha/restore"
	// restoreConfig is the Patroni configuration file that makes the
	// next bootstrap a restore (written by RestoreScript's begin).
	restoreConfig = PatroniConfig + "/40-restore.yml"
	// pgBackRestUnit is Debian's unit of pgBackRest's TLS server.
	pgBackRestUnit = "pgbackrest.service"
	// backupUnit is the template unit of BackupScript: backupUnit's
	// instance is its argument (pgha-backup@full.service).
	backupUnit    = "pgha-backup@.service"
	pgBackRestLog = "/var/log/pgbackrest"
	// pgBackRestSpool is where asynchronous archive-push queues WAL and
	// archive-get prefetches it.
	pgBackRestSpool = "/var/spool/pgbackrest"
)

// PgBackRest is the command PostgreSQL and Patroni run pgBackRest with.
func PgBackRest(c cluster.Config) string { return "/usr/bin/pgbackrest --stanza=" + c.Stanza() }

// ArchiveCommand is PostgreSQL's archive_command: the leader pushes each
// WAL segment to every repository. Asynchronous: pgBackRest acknowledges
// a segment once it is queued in pgBackRestSpool and every repository has
// it, pushing several at a time.
func ArchiveCommand(c cluster.Config) string { return PgBackRest(c) + " archive-push %p" }

// RestoreCommand is PostgreSQL's restore_command on every node: WAL from
// the first repository that has it.
func RestoreCommand(c cluster.Config) string { return PgBackRest(c) + ` archive-get %f "%p"` }

// archiveParameters are the PostgreSQL settings of the WAL archive, in the
// dynamic configuration (the same on every member; a standby archives
// nothing until it is promoted).
func archiveParameters(c cluster.Config) map[string]string {
	return map[string]string{
		"archive_mode":    "on",
		"archive_command": ArchiveCommand(c),
		"archive_timeout": fmt.Sprint(c.Backup.ArchiveTimeoutSeconds),
	}
}

// archiveQueueMax is pgBackRest's archive-push-queue-max: a quarter of the
// data volume. When the repositories cannot take WAL (a bucket
// unreachable), pg_wal grows; past this, pgBackRest tells PostgreSQL the
// WAL is archived and drops it, so that the leader's disk does not fill
// and stop every write. The archive then has a gap (point-in-time
// recovery cannot cross it, the next backup closes it); the archive
// alarm fires long before.
func archiveQueueMax(c cluster.Config) string {
	return fmt.Sprintf("%dMiB", c.Instances.DataVolumeGiB*1024/4)
}

var pgBackRestTmpl = parse("templates/pgbackrest.conf")

// PgBackRestConf renders PgBackRestConfig for PostgreSQL node n: every
// data region's repository, and every PostgreSQL node as a pgN, this one
// first (pg1, local), the others through their TLS servers, so that a
// backup run here copies the files of a standby and asks the leader for
// pg_backup_start/stop, whichever nodes those are.
func PgBackRestConf(p *cluster.Plan, n cluster.Node) (string, error) {
	if n.Role != cluster.RolePostgres {
		return "", fmt.Errorf("render pgbackrest.conf for %s: a %s node runs no PostgreSQL", n.Name, n.Role)
	}
	type repo struct {
		Key                    int
		Region, Endpoint, Path string
	}
	type pg struct {
		Key int
		IP  string
	}
	var repos []repo
	for i, r := range p.DataRegions() {
		repos = append(repos, repo{Key: i + 1, Region: r.Name, Endpoint: "s3." + r.Name + ".amazonaws.com", Path: "/" + p.Config.BackupPrefix()})
	}
	var pgs []pg
	var names []string
	for _, m := range p.ByRole(cluster.RolePostgres) {
		names = append(names, m.Name)
		if m.Name != n.Name {
			pgs = append(pgs, pg{Key: len(pgs) + 2, IP: m.IP.String()})
		}
	}
	var buf bytes.Buffer
	err := pgBackRestTmpl.Execute(&buf, map[string]any{
		"Header":        Header,
		"Stanza":        p.Config.Stanza(),
		"Repos":         repos,
		"RetentionDays": p.Config.Backup.RetentionDays,
		"QueueMax":      archiveQueueMax(p.Config),
		"Spool":         pgBackRestSpool,
		"Log":           pgBackRestLog,
		"IP":            n.IP.String(),
		"Port":          cluster.PortPgBackRest,
		"CAFile":        CAFile,
		"CertFile":      CertFile,
		"KeyFile":       KeyFile,
		"Peers":         names,
		"DataDir":       DataDir,
		"SocketDir":     SocketDir,
		"PGs":           pgs,
	})
	if err != nil {
		return "", fmt.Errorf("render pgbackrest.conf for %s: %w", n.Name, err)
	}
	return buf.String(), nil
}

// PgBackRestBucketsFormat is PgBackRestBuckets as a printf format for the
// boot script: the header, then the account once per repository.
func PgBackRestBucketsFormat(p *cluster.Plan) (format string, repos int) {
	var b strings.Builder
	b.WriteString(`# %s\n[global]\n`)
	for i, r := range p.DataRegions() {
		fmt.Fprintf(&b, `repo%d-s3-bucket=%s\n`, i+1, p.Config.BackupBucket("%s", r.Name))
	}
	return b.String(), len(p.DataRegions())
}

var backupTmpl = parse("templates/backup.sh")

// Backup renders BackupScript for PostgreSQL node n.
func Backup(p *cluster.Plan, n cluster.Node) (string, error) {
	var regions []string
	for _, m := range p.ByRole(cluster.RolePostgres) {
		regions = append(regions, m.Name+"="+m.Region)
	}
	var buf bytes.Buffer
	err := backupTmpl.Execute(&buf, map[string]any{
		"Header":     Header,
		"Name":       n.Name,
		"PgBackRest": PgBackRest(p.Config),
		"Patroni":    fmt.Sprintf("https://%s:%d/cluster", n.IP, cluster.PortPatroni),
		"CAFile":     CAFile,
		"Regions":    strings.Join(regions, " "),
		"Repos":      repoKeys(p),
	})
	if err != nil {
		return "", fmt.Errorf("render backup for %s: %w", n.Name, err)
	}
	return buf.String(), nil
}

// backupTimers are the timers of BackupScript, by unit name: full and
// differential backups on the schedules of cluster.Backup, and "first"
// every 30 s, which takes a full backup into every repository that has
// none (a new cluster is protected within a minute of having a leader; a
// repository emptied or replaced gets one again). It also creates the
// stanza, without which the leader's archiving fails: until then, every
// shutdown of the leader (a switchover) waits on archive-push retries.
// Its runs cost a GET of each repository's backup.info on one node. Persistent: a run
// missed while the node was off happens when it is back.
func backupTimers(p *cluster.Plan, n cluster.Node) map[string]string {
	timer := func(what, when string) string {
		return timerUnit(what+" of "+p.Config.Stanza()+" from "+n.Name+" when it is the node to", when)
	}
	out := map[string]string{}
	full, _ := cluster.OnCalendar(p.Config.Backup.FullSchedule) // validated
	out["pgha-backup-full.timer"] = timer("full backups", "Unit=pgha-backup@full.service\nOnCalendar="+full+"\nPersistent=true")
	if diff, ok := cluster.OnCalendar(p.Config.Backup.DiffSchedule); ok {
		out["pgha-backup-diff.timer"] = timer("differential backups", "Unit=pgha-backup@diff.service\nOnCalendar="+diff+"\nPersistent=true")
	}
	out["pgha-backup-first.timer"] = timer("a first full backup into an empty repository", "Unit=pgha-backup@first.service\nOnBootSec=30s\nOnUnitInactiveSec=30s")
	return out
}

// backupService is the template unit of BackupScript.
func backupService() string {
	return "# " + Header + "\n[Unit]\nDescription=pgha: %i backup, if this node is the one to take it\n" +
		"Wants=network-online.target\nAfter=network-online.target " + pgBackRestUnit + "\n\n" +
		"[Service]\nType=oneshot\nUser=postgres\nGroup=postgres\nExecStart=" + BackupScript + " %i\n" +
		// pgBackRest's workers may outlive a SIGTERM by minutes (seen in
		// the restore drill): a stopped backup is killed after 10 s; the
		// next one cleans up what it left.
		"TimeoutStopSec=10\n"
}

var restoreTmpl = parse("templates/restore.sh")

// Restore renders RestoreScript for PostgreSQL node n.
func Restore(p *cluster.Plan, n cluster.Node) (string, error) {
	var buf bytes.Buffer
	err := restoreTmpl.Execute(&buf, map[string]any{
		"Header":        Header,
		"PgBackRest":    PgBackRest(p.Config),
		"Timers":        strings.Join(slices.Sorted(maps.Keys(backupTimers(p, n))), " "),
		"Patroni":       PatroniUnit,
		"PatroniConfig": PatroniConfig,
		"Scope":         p.Config.Name,
		"DataDir":       DataDir,
		"RestoreConfig": restoreConfig,
		"Repos":         repoKeys(p),
		"SocketDir":     SocketDir,
		"CAFile":        CAFile,
		"PrimaryURL":    fmt.Sprintf("https://%s:%d/primary", n.IP, cluster.PortPatroni),
		"LogDir":        LogDir,
	})
	if err != nil {
		return "", fmt.Errorf("render restore for %s: %w", n.Name, err)
	}
	return buf.String(), nil
}

// repoKeys are pgBackRest's repository numbers, one per data region: "1 2".
func repoKeys(p *cluster.Plan) string {
	var keys []string
	for i := range p.DataRegions() {
		keys = append(keys, fmt.Sprint(i+1))
	}
	return strings.Join(keys, " ")
}
