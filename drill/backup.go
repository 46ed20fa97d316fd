package drill

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/healthcheck"
	"github.com/pgha/pgha/local"
)

// Timing of the backup drills.
const (
	// beforeTarget and afterTarget are how long the writer writes before
	// and after the restore's target time.
	beforeTarget = 5 * time.Second
	afterTarget  = 3 * time.Second
	// restoreTimeout bounds a whole restore.
	restoreTimeout = 10 * time.Minute
	// holdS3 is how long the primary region's S3 stays cut off: longer
	// than archive_timeout and pgBackRest's archive-timeout (60 s each),
	// so that the leader's archiving fails while the cut lasts.
	holdS3 = 100 * time.Second
	// catchUpTimeout bounds the wait for the archive to catch up.
	catchUpTimeout = 5 * time.Minute
)

// backupDrills are the drills of the backups and the WAL archive.
var backupDrills = []Drill{
	{
		Name: "restore-to-time", Doc: "write, note a time T, write more, DROP the writer's table, restore the whole cluster to T (pgha-local restore): every write acknowledged before T is back, none begun after it",
		prepare: waitForBackups,
		inject:  restoreToTime,
	},
	{
		Name: "replica-rebuild", Doc: "remove the synchronous standby's data directory: Patroni builds it again from the newest backup (create_replica_methods), not from the leader",
		Targets: Targets{RTO: rdsRTO},
		prepare: waitForBackups,
		inject:  replicaRebuild,
	},
	{
		Name: "primary-bucket-cut", Doc: "cut the primary region's S3 off for 100 s under writes: writes go on, the archive reports failing (the alarm's input) and catches up once S3 is back; the other region's newest WAL is reported",
		Targets: Targets{NoInterruption: true},
		// The archive works before the cut: a new cluster's archiving
		// fails until its first backup creates the stanza.
		prepare: waitForBackups,
		inject:  primaryBucketCut,
	},
}

// waitForBackups waits until every repository holds a backup: a new
// cluster takes its first within minutes.
func waitForBackups(ctx context.Context, c *local.Cluster, _ View) error {
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	for _, r := range c.Plan().DataRegions() {
		for {
			t, err := c.NewestBackup(ctx, r.Name)
			if err == nil && !t.IsZero() {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("no backup in %s's repository (%v): %w", r.Name, err, ctx.Err())
			case <-time.After(2 * time.Second):
			}
		}
	}
	return nil
}

func restoreToTime(ctx context.Context, r *runner) error {
	sleep(ctx, beforeTarget)
	target := time.Now()
	sleep(ctx, afterTarget)
	super, err := r.cluster.Secret(cluster.SecretSuperuser)
	if err != nil {
		return err
	}
	conn, err := connectNode(ctx, r.leader, super, r.plan.Config.App.Database)
	if err != nil {
		return err
	}
	r.mark()
	_, err = conn.Exec(ctx, "DROP TABLE "+Table)
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("drop %s: %w", Table, err)
	}
	dropped := r.res.FaultAt
	// A time before every backup is refused before anything is touched.
	if _, err := r.cluster.Restore(ctx, time.Now().Add(-30*24*time.Hour)); err == nil || !strings.Contains(err.Error(), "the oldest backup ended at") {
		r.problem("a restore to 30 days ago, before every backup, was not refused as such: %v", err)
	}
	r.log.Info("table dropped; restoring", "target", target.UTC().Format(time.RFC3339Nano))
	rctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	rep, err := r.cluster.Restore(rctx, target)
	cancel()
	r.healAt = time.Now()
	if err != nil {
		return err
	}
	r.figure("restore to T %s, new full backup %s, replicas rebuilt %s", fmtDur(rep.Restore), fmtDur(rep.Backup), fmtDur(rep.Ready))
	if !rep.Archived {
		r.problem("the leader did not archive its WAL before the restore")
	}
	// Acknowledged before T: must be back.
	r.survives = func(a Attempt) bool { return a.End.Before(target) }
	r.afterCheck = func(ctx context.Context, attempts []Attempt, leader string) error {
		have, err := leaderSeqs(ctx, leader, super, r.plan.Config.App.Database)
		if err != nil {
			return err
		}
		var after, inFlight, inFlightBack int
		for _, a := range attempts {
			switch {
			case a.Start.After(target) && a.End.Before(dropped):
				// Begun after T, before the DROP: must be gone.
				if have[a.Seq] {
					after++
				}
			case !a.Start.After(target) && !a.End.Before(target):
				inFlight++
				if have[a.Seq] {
					inFlightBack++
				}
			}
		}
		if after > 0 {
			r.problem("%d writes begun after T are back", after)
		}
		r.figure("writes in flight at T: %d (%d back)", inFlight, inFlightBack)
		return nil
	}
	return nil
}

// leaderSeqs are the writer's rows on the leader.
func leaderSeqs(ctx context.Context, leader, super, database string) (map[int64]bool, error) {
	return tableSeqs(ctx, leader, super, database, Table)
}

// tableSeqs are the rows of a writer's table on node.
func tableSeqs(ctx context.Context, node, super, database, table string) (map[int64]bool, error) {
	conn, err := connectNode(ctx, node, super, database)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT seq FROM "+table)
	if err != nil {
		return nil, err
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	have := make(map[int64]bool, len(seqs))
	for _, s := range seqs {
		have[s] = true
	}
	return have, nil
}

func replicaRebuild(ctx context.Context, r *runner) error {
	target := r.before.SyncStandby()
	if target == "" {
		return errors.New("no synchronous standby to rebuild")
	}
	r.subject = target
	r.mark()
	r.res.Faulted = []string{target}
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	method, err := r.cluster.RebuildReplica(rctx, target)
	cancel()
	r.healAt = time.Now()
	if err != nil {
		return err
	}
	r.figure("%s rebuilt with %s in %s", target, method, fmtDur(time.Since(start)))
	if method != "pgbackrest" {
		r.problem("%s was rebuilt with %s, not from the backup", target, method)
	}
	return nil
}

func primaryBucketCut(ctx context.Context, r *runner) error {
	regions := r.plan.DataRegions()
	if len(regions) < 2 {
		return errors.New("one data region: no other repository")
	}
	primary, other := regions[0].Name, regions[1].Name
	archive, err := archiveChecker(r.cluster)
	if err != nil {
		return err
	}
	before, err := r.cluster.NewestArchived(ctx, other)
	if err != nil {
		return err
	}
	// The archive under the writer's load before the cut, sampled for
	// longer than archive_timeout: its lag (WAL waiting) and the age of its
	// newest WAL.
	var lags, ages []time.Duration
	sampleEnd := time.Now().Add(time.Duration(r.plan.Config.Backup.ArchiveTimeoutSeconds+10) * time.Second)
	for time.Now().Before(sampleEnd) && ctx.Err() == nil {
		if st, err := archive.ArchiveStatus(ctx); err == nil {
			lags, ages = append(lags, st.Lag), append(ages, st.Age)
		}
		sleep(ctx, time.Second)
	}
	if len(lags) > 0 {
		slices.Sort(lags)
		slices.Sort(ages)
		r.figure("before the cut, under the writer's load (%d samples): archive lag p50 %s, max %s; newest archived WAL's age p50 %s, max %s",
			len(lags), fmtDur(lags[len(lags)/2]), fmtDur(lags[len(lags)-1]), fmtDur(ages[len(ages)/2]), fmtDur(ages[len(ages)-1]))
	}
	if err := r.fault(ctx, local.Isolate, local.S3Target(primary)); err != nil {
		return err
	}
	// WAL to archive while the cut lasts, beyond archive_timeout's.
	switchWAL := func() error {
		super, err := r.cluster.Secret(cluster.SecretSuperuser)
		if err != nil {
			return err
		}
		conn, err := connectNode(ctx, r.leader, super, "postgres")
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		_, err = conn.Exec(ctx, "SELECT pg_switch_wal()")
		return err
	}
	failing, maxLag := false, time.Duration(0)
	end := time.Now().Add(holdS3)
	for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
		if i%10 == 0 {
			if err := switchWAL(); err != nil {
				r.log.Warn("pg_switch_wal", "err", err)
			}
		}
		if st, err := archive.ArchiveStatus(ctx); err == nil {
			failing = failing || st.Failing
			maxLag = max(maxLag, st.Lag)
		}
		sleep(ctx, 2*time.Second)
	}
	after, err := r.cluster.NewestArchived(ctx, other)
	if err != nil {
		r.problem("list %s's repository: %v", other, err)
	}
	// Not a target: while a repository's packets are dropped, each
	// asynchronous archive run waits about 3 minutes on it (pgBackRest's
	// connect retries) before it pushes to the others; the figure shows
	// whether the cut lasted that long.
	if !failing {
		r.problem("the archive never reported failing while %s's S3 was cut", primary)
	}
	if err := r.heal(ctx, local.Heal, local.S3Target(primary)); err != nil {
		return err
	}
	healed := time.Now()
	for {
		st, err := archive.ArchiveStatus(ctx)
		if err == nil && st.Lag == 0 && !st.Failing {
			break
		}
		if time.Since(healed) > catchUpTimeout {
			r.problem("the archive had not caught up %s after the heal (%+v, %v)", catchUpTimeout, st, err)
			break
		}
		sleep(ctx, time.Second)
	}
	r.figure("during the cut: archive failing %v, lag up to %s, %s's newest WAL %s→%s; caught up %s after the heal",
		failing, fmtDur(maxLag), other, before, after, fmtDur(time.Since(healed)))
	return nil
}

// archiveChecker reads the archive's status as the health checker does.
func archiveChecker(c *local.Cluster) (*healthcheck.PGWriteChecker, error) {
	password, err := c.Secret(cluster.SecretHealth)
	if err != nil {
		return nil, err
	}
	tlsConf, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	return &healthcheck.PGWriteChecker{
		Addrs: haproxyAddrs(c.Plan()), User: cluster.HealthUser, Database: "postgres",
		Password: healthcheck.StaticPassword(password), TLS: tlsConf,
	}, nil
}
