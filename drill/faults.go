package drill

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/local"
)

// stallTarget is the most a silent synchronous standby may stall writes:
// wal_sender_timeout (3 s) ends its walsender, and Patroni drops it from
// synchronous_standby_names at its next loop (loop_wait, 2 s), writing
// etcd (which may be electing a leader when the standby's region went).
const stallTarget = 8 * time.Second

// directTable is what patroni-kill's second writer fills, straight on the
// old leader's PostgreSQL.
const directTable = "pgha_drill_direct"

// faultDrills are the faults of a standby, of one daemon, and of a region
// that does not hold the leader.
var faultDrills = []Drill{
	{
		Name: "secondary-cut", Doc: "cut a data region without the leader (its synchronous standby, etcd member and HAProxy) off the network for 40 s: the leader drops the silent standby after wal_sender_timeout, so writes stall for seconds, not until its member key expires",
		Targets: Targets{Window: stallTarget},
		prepare: leaderHome,
		inject: func(ctx context.Context, r *runner) error {
			n, _ := r.plan.Node(r.leader)
			region := ""
			for _, dr := range r.plan.DataRegions() {
				if dr.Name != n.Region {
					region = dr.Name
					break
				}
			}
			if region == "" {
				return errors.New("one data region: no region without the leader")
			}
			return r.hold(ctx, local.Isolate, holdIsolate, local.Heal, region)
		},
	},
	{
		Name: "standby-freeze", Doc: "SIGSTOP the synchronous standby's host for 40 s (its TCP connections stay open, nothing answers): writes stall for seconds, then go on without it",
		Targets: Targets{Window: stallTarget},
		inject: func(ctx context.Context, r *runner) error {
			target := r.before.SyncStandby()
			if target == "" {
				return errors.New("no synchronous standby to freeze")
			}
			r.subject = target
			return r.hold(ctx, local.Stop, holdFreeze, local.Heal, target)
		},
	},
	{
		Name: "postgres-kill", Doc: "SIGKILL PostgreSQL's postmaster on the leader, Patroni alive: Patroni starts it again (crash recovery) and keeps the leader lock",
		Targets: Targets{RTO: rdsRTO},
		inject: func(ctx context.Context, r *runner) error {
			if err := r.fault(ctx, local.KillPostgres, r.leader); err != nil {
				return err
			}
			r.waitRecovered(ctx, true)
			r.healAt = time.Now() // Patroni heals it
			return nil
		},
	},
	{
		Name: "haproxy-kill", Doc: "SIGKILL the host of the HAProxy the app and the writer use first (the primary region's) for 20 s, with the app under load: both go on through the other region's HAProxy",
		Targets: Targets{RTO: 5 * time.Second},
		inject: func(ctx context.Context, r *runner) error {
			first := r.plan.HAProxyOrder(r.plan.Primary().Name)
			if len(first) < 2 {
				return errors.New("one HAProxy node: nothing to fall over to")
			}
			return r.underAppLoad(ctx, func() error {
				return r.hold(ctx, local.Kill, holdNode, local.Heal, first[0].Name)
			})
		},
	},
	{
		Name: "standbys-then-leader", Doc: "SIGKILL every standby (the leader goes on alone), 10 s later the leader too; the standbys come back first and must not take over (they lack what the leader acknowledged alone), then the leader: nothing acknowledged is lost; RTO from the leader's kill to its return",
		inject: standbysThenLeader,
	},
	{
		Name: "leader-volume-full", Doc: "take every free byte of the leader's data volume (its data and pg_wal share it) for 40 s, then free it (on EC2: the EBS volume grown): what the writer sees, what the health checker said meanwhile, no acknowledged write lost",
		// Writes fail from the first that needs a new page until the
		// heal; PostgreSQL stops only when it needs a new WAL segment
		// file (PANIC), and then Patroni fails over. The health checker
		// must say the leader's volume is full (its volume report, every
		// 15 s) before the heal.
		Targets: Targets{RTO: holdFull + 20*time.Second},
		prepare: leaderHome,
		inject:  leaderVolumeFull,
	},
	{
		Name: "patroni-kill", Doc: "SIGKILL Patroni on the leader and keep it down 40 s while its PostgreSQL runs on, a second client writing to that PostgreSQL directly: a new leader takes over after the leader key's ttl, and the old PostgreSQL acknowledges no write the new leader lacks",
		Targets: Targets{RTO: rdsRTO},
		inject:  patroniKill,
	},
}

// holdFull is how long leader-volume-full keeps the volume full.
const holdFull = 40 * time.Second

// leaderVolumeFull fills the leader's data volume, holds, reads what the
// health checkers said meanwhile, and frees it.
func leaderVolumeFull(ctx context.Context, r *runner) error {
	if err := r.fault(ctx, local.FillVolume, r.leader); err != nil {
		return err
	}
	sleep(ctx, holdFull)
	var ready, checks int
	var full time.Duration // when a check first said the leader's volume is full
	for _, region := range r.cluster.CheckerRegions() {
		runs, err := r.cluster.CheckerRuns(region)
		if err != nil {
			return err
		}
		for _, run := range runs {
			if run.Time.After(r.res.FaultAt.Add(5 * time.Second)) {
				checks++
				if run.Ready {
					ready++
				}
			}
			if after := run.Time.Sub(r.res.FaultAt); after > 0 && run.VolumeFull != "" && (full == 0 || after < full) {
				full = after
			}
		}
	}
	if full == 0 {
		r.problem("no health check said the leader's data volume is full")
	} else {
		r.figure("the health checker logged the leader's volume full %.1f s after the fault", full.Seconds())
	}
	if err := r.heal(ctx, local.Heal, r.leader); err != nil {
		return err
	}
	r.waitRecovered(ctx, true)
	errs := map[string]int{}
	for _, a := range r.writer.Attempts() {
		if a.Err != nil && a.Start.After(r.res.FaultAt) {
			errs[clientSees(a.Err)]++
		}
	}
	if len(errs) == 0 {
		r.problem("no write failed while the leader's volume was full")
	}
	for msg, n := range errs {
		r.figure("%d× %q", n, msg)
	}
	r.figure("the health checker said ready in %d of its %d checks from 5 s into the fault to the heal", ready, checks)
	return nil
}

// clientSees is what a client makes of err: PostgreSQL's error and its
// SQLSTATE, or a connection that failed or broke.
func clientSees(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return fmt.Sprintf("%s: %s (%s)", pg.Severity, pg.Message, pg.Code)
	}
	return "no connection, or it broke"
}

// leaderHome moves the leader back to the primary region (Patroni picks
// the synchronous standby there) when a failover of an earlier drill left
// it elsewhere.
func leaderHome(ctx context.Context, c *local.Cluster, before View) error {
	p := c.Plan()
	leader, _ := before.Leader()
	if n, _ := p.Node(leader.Name); n.Region == p.Primary().Name {
		return nil
	}
	sync, _ := p.Node(before.SyncStandby())
	if sync.Region != p.Primary().Name {
		return fmt.Errorf("neither the leader %s nor the synchronous standby %s is in the primary region", leader.Name, sync.Name)
	}
	_, _, err := c.Switchover(ctx, "")
	return err
}

func patroniKill(ctx context.Context, r *runner) error {
	old, _ := r.plan.Node(r.leader)
	// The app's role may log in from the cluster's VPCs: write from the
	// old leader's region's HAProxy node, straight to its PostgreSQL.
	via := r.plan.Select(old.Region, cluster.RoleHAProxy)
	if len(via) == 0 {
		return fmt.Errorf("no HAProxy node in %s to write from", old.Region)
	}
	password, err := r.cluster.Secret(cluster.SecretApp)
	if err != nil {
		return err
	}
	super, err := r.cluster.Secret(cluster.SecretSuperuser)
	if err != nil {
		return err
	}
	cfg := WriterConfig{
		Addrs: []string{netip.AddrPortFrom(old.IP, cluster.PortPostgres).String()},
		User:  cluster.AppUser, Password: password, Database: r.plan.Config.App.Database,
		CAFile: r.cluster.CAFile(), Table: directTable,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return local.DialInNode(ctx, via[0].Name, network, addr)
		},
	}
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	err = Prepare(pctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	direct := StartWriter(ctx, cfg)
	sleep(ctx, time.Second)
	if err := r.fault(ctx, local.KillPatroni, r.leader); err != nil {
		direct.Stop()
		return err
	}
	sleep(ctx, holdIsolate)
	attempts := direct.Stop()
	if err := r.heal(ctx, local.Heal, r.leader); err != nil {
		return err
	}
	r.afterCheck = func(ctx context.Context, _ []Attempt, leader string) error {
		have, err := tableSeqs(ctx, leader, super, r.plan.Config.App.Database, directTable)
		if err != nil {
			return err
		}
		var acked, after, lost int
		var last time.Duration
		for _, a := range attempts {
			if !a.Acked() {
				continue
			}
			acked++
			if a.End.After(r.res.FaultAt) {
				after++
				last = a.End.Sub(r.res.FaultAt)
			}
			if !have[a.Seq] {
				lost++
			}
		}
		r.figure("direct writes to %s's PostgreSQL: %d acknowledged, %d after Patroni was killed (the last %s after), %d of them not on the new leader %s",
			old.Name, acked, after, fmtDur(last), lost, leader)
		if lost > 0 {
			r.problem("%s's PostgreSQL acknowledged %d direct writes the new leader %s does not have", old.Name, lost, leader)
		}
		return nil
	}
	return nil
}

func standbysThenLeader(ctx context.Context, r *runner) error {
	var standbys []string
	for _, n := range r.plan.ByRole(cluster.RolePostgres) {
		if n.Name != r.leader {
			standbys = append(standbys, n.Name)
		}
	}
	if err := r.fault(ctx, local.Kill, standbys...); err != nil {
		return err
	}
	r.waitRecovered(ctx, false)
	sleep(ctx, 10*time.Second)
	alone := Analyze(r.writer.Attempts(), r.res.FaultAt)
	r.figure("standbys killed: writes stalled %s (%d failed), then the leader went on alone", fmtDur(alone.Window), alone.Failed)
	if err := r.fault(ctx, local.Kill, r.leader); err != nil {
		return err
	}
	sleep(ctx, 5*time.Second)
	if err := r.heal(ctx, local.Heal, standbys...); err != nil {
		return err
	}
	// Long enough to boot, and for a member that could take over to do so.
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if v, err := Observe(ctx, r.plan); err == nil {
			// The dead leader's key lasts its ttl: another name is a takeover.
			if l, ok := v.Leader(); ok && l.Name != r.leader {
				r.problem("%s took over while the leader %s, which acknowledged writes alone, was down", l.Name, r.leader)
				break
			}
		}
		sleep(ctx, 2*time.Second)
	}
	return r.heal(ctx, local.Heal, r.leader)
}
