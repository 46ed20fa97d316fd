package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/local"
)

// Timing of the drills.
const (
	// warmUp is how long the writer runs before the fault.
	warmUp = 3 * time.Second
	// holdFreeze and holdIsolate outlast the leader lock's ttl (20 s), so
	// that the cluster must fail over.
	holdFreeze  = 40 * time.Second
	holdIsolate = 40 * time.Second
	// holdRegion is how long the primary region stays cut off.
	holdRegion = 45 * time.Second
	// holdQuorum is how long etcd stays without quorum.
	holdQuorum = 30 * time.Second
	// holdNode is how long a killed replica or etcd member stays dead.
	holdNode = 20 * time.Second
	// recoverTimeout bounds the wait for writes to come back while a
	// crashed node stays down.
	recoverTimeout = 60 * time.Second
	// afterRecovery is how long a crashed node stays down after writes
	// came back.
	afterRecovery = 3 * time.Second
	// wholeTimeout bounds the wait for the cluster to be whole after a heal.
	wholeTimeout = 90 * time.Second
	// settle is how long the writer keeps writing on the whole cluster.
	settle = 2 * time.Second
	// switchoverWindow bounds a planned switchover's failed-write window
	// (see the switchover drill): 4.5-6.4 s on an idle machine, 8.4 s
	// once in a fresh-clone CI run while other packages' tests loaded
	// both cores (the old leader's last archive push and the new one's
	// restore_command are slower there), with no app request failed.
	switchoverWindow = 10 * time.Second
	// rdsRTO is RDS Multi-AZ's promise ("under 35 s"), the bar for every
	// fault without a tighter target.
	rdsRTO = 35 * time.Second
)

// Targets are what a drill must achieve besides losing no acknowledged
// write and ending with every node identical and the faulted node back.
type Targets struct {
	// RTO is the most time from the fault to the first write accepted
	// again; 0 means no limit.
	RTO time.Duration
	// Window is the most failed-write window; 0 means no limit.
	Window time.Duration
	// NoInterruption requires that no write fails.
	NoInterruption bool
	// NoAppFailure requires that no app request fails.
	NoAppFailure bool
}

func (t Targets) String() string {
	var s []string
	if t.NoInterruption {
		s = append(s, "no failed write")
	}
	if t.RTO > 0 {
		s = append(s, "RTO ≤ "+fmtDur(t.RTO))
	}
	if t.Window > 0 {
		s = append(s, "window ≤ "+fmtDur(t.Window))
	}
	if t.NoAppFailure {
		s = append(s, "0 app failures")
	}
	return strings.Join(s, ", ")
}

// Drill is one fault, injected and healed.
type Drill struct {
	Name string
	// Doc says what the drill does, for the table's legend.
	Doc string
	// Witness is true when the drill needs the witness topology.
	Witness bool
	Targets Targets
	// prepare, when set, readies a whole cluster before the writer starts.
	prepare func(ctx context.Context, c *local.Cluster, before View) error
	// inject injects the fault (calling r.mark just before), holds it and
	// heals it.
	inject func(ctx context.Context, r *runner) error
}

// Drills lists every drill, in the order they run.
var Drills = []Drill{
	{
		Name: "leader-kill", Doc: "SIGKILL every process of the leader's host; restart it once writes are back",
		Targets: Targets{RTO: 23 * time.Second},
		inject: func(ctx context.Context, r *runner) error {
			if err := r.fault(ctx, local.Kill, r.leader); err != nil {
				return err
			}
			r.waitRecovered(ctx, true)
			return r.heal(ctx, local.Heal, r.leader)
		},
	},
	{
		Name: "leader-reboot", Doc: "reboot the leader's system (systemd stops every unit, then it boots from its disk); it must come back as a streaming replica",
		// Patroni releases the leader key as systemd stops it: no ttl to wait.
		Targets: Targets{RTO: 10 * time.Second},
		inject: func(ctx context.Context, r *runner) error {
			err := r.fault(ctx, local.Reboot, r.leader)
			r.healAt = time.Now() // the node is booting again: the reboot heals itself
			return err
		},
	},
	{
		Name: "leader-freeze", Doc: "SIGSTOP the leader's host for 40 s, then SIGCONT",
		Targets: Targets{RTO: rdsRTO},
		inject: func(ctx context.Context, r *runner) error {
			return r.hold(ctx, local.Stop, holdFreeze, local.Cont, r.leader)
		},
	},
	{
		Name: "leader-isolate", Doc: "cut the leader's host off the network for 40 s",
		Targets: Targets{RTO: 26 * time.Second},
		inject: func(ctx context.Context, r *runner) error {
			return r.hold(ctx, local.Isolate, holdIsolate, local.Heal, r.leader)
		},
	},
	{
		Name: "replica-kill", Doc: "SIGKILL the synchronous standby's host for 20 s (longer if writes are still failing)",
		Targets: Targets{RTO: rdsRTO},
		inject: func(ctx context.Context, r *runner) error {
			target := r.before.SyncStandby()
			if target == "" {
				return errors.New("no synchronous standby to kill")
			}
			r.subject = target
			if err := r.fault(ctx, local.Kill, target); err != nil {
				return err
			}
			sleep(ctx, holdNode)
			r.waitRecovered(ctx, false)
			return r.heal(ctx, local.Heal, target)
		},
	},
	{
		Name: "switchover", Doc: "planned switchover through Patroni's REST API, with the app under load",
		// 2.1 s before the WAL archive (issue 11), 5.0-6.0 s with it:
		// the old leader's shutdown switches to a new WAL segment and
		// waits until the archiver has pushed the last one into both
		// repositories (1.1-1.7 s to the local S3 emulators), and the
		// new leader's promotion asks the archive for newer timelines'
		// history (restore_command, 1.4 s). Both are PostgreSQL's rules
		// for an archived cluster. The app retries for 10 s, so no
		// request may fail. prepare: the first backups, which create the
		// stanza: on a cluster without one every archive-push fails, and
		// the old leader's shutdown retries it (9.5 s once).
		Targets: Targets{Window: switchoverWindow, NoAppFailure: true},
		prepare: waitForBackups,
		inject: func(ctx context.Context, r *runner) error {
			return r.underAppLoad(ctx, func() error {
				to, took, err := r.cluster.Switchover(ctx, "")
				r.log.Info("switchover", "from", r.leader, "to", to, "took", took.Round(10*time.Millisecond))
				if err == nil {
					r.waitRecovered(ctx, false)
				}
				return err
			})
		},
	},
	{
		Name: "cert-rotation", Doc: "issue every node certificate again with a new key and install it on each node in turn (tls-refresh), with the app under load: every daemon serves the new one without a restart",
		Targets: Targets{NoInterruption: true, NoAppFailure: true},
		inject: func(ctx context.Context, r *runner) error {
			return r.underAppLoad(ctx, func() error {
				start := time.Now()
				rotated, err := r.cluster.RotateCerts(ctx)
				r.log.Info("certificates rotated", "nodes", len(rotated), "took", time.Since(start).Round(100*time.Millisecond))
				if err == nil && len(rotated) == 0 {
					err = errors.New("no certificate was rotated")
				}
				return err
			})
		},
	},
	{
		Name: "config-change", Doc: "raise max_connections (needs a restart) and change a Patroni setting on the running cluster: the health checker PATCHes /config and restarts one member at a time, the leader last after a switchover",
		// The leader's restart is a switchover: the same bound.
		Targets: Targets{Window: switchoverWindow},
		prepare: waitForBackups,
		inject:  configChange,
	},
	{
		Name: "etcd-kill", Doc: "SIGKILL the etcd leader's host for 20 s",
		Targets: Targets{NoInterruption: true},
		inject: func(ctx context.Context, r *runner) error {
			members, err := etcdByLeadership(ctx, r.plan)
			if err != nil {
				return err
			}
			return r.hold(ctx, local.Kill, holdNode, local.Heal, members[0])
		},
	},
	{
		Name: "etcd-quorum", Doc: "SIGKILL two of three etcd hosts (the leader first) for 30 s: no quorum",
		Targets: Targets{NoInterruption: true},
		inject: func(ctx context.Context, r *runner) error {
			members, err := etcdByLeadership(ctx, r.plan)
			if err != nil {
				return err
			}
			if len(members) < 2 {
				return fmt.Errorf("need 2 etcd members to kill, have %d", len(members))
			}
			kill := members[:len(members)/2+1]
			return r.hold(ctx, local.Kill, holdQuorum, local.Heal, kill...)
		},
	},
	{
		Name: "region-isolate", Doc: "cut the primary region, holding the leader, off the network for 45 s (witness topology)",
		Witness: true,
		Targets: Targets{RTO: 30 * time.Second},
		prepare: leaderHome,
		inject: func(ctx context.Context, r *runner) error {
			region := r.plan.Primary().Name
			if n, _ := r.plan.Node(r.leader); n.Region != region {
				return fmt.Errorf("leader %s is outside the primary region %s", r.leader, region)
			}
			return r.hold(ctx, local.Isolate, holdRegion, local.Heal, region)
		},
	},
}

func init() { Drills = append(append(append(Drills, faultDrills...), backupDrills...), etcdDrills...) }

// Find returns the drills named, in Drills' order.
func Find(names []string) ([]Drill, error) {
	var out []Drill
	for _, n := range names {
		if !slices.ContainsFunc(Drills, func(d Drill) bool { return d.Name == n }) {
			return nil, fmt.Errorf("unknown fault %q (want %s)", n, strings.Join(Names(), ", "))
		}
	}
	for _, d := range Drills {
		if slices.Contains(names, d.Name) {
			out = append(out, d)
		}
	}
	return out, nil
}

// Names lists every drill's name.
func Names() []string {
	var out []string
	for _, d := range Drills {
		out = append(out, d.Name)
	}
	return out
}

// WitnessConfig is the topology of the region drill: two data regions and a
// witness region holding a third etcd member, so that etcd keeps its quorum
// when either data region is lost.
func WitnessConfig() cluster.Config {
	c := cluster.Default()
	c.Regions = []cluster.Region{
		{Name: "eu-west-3", CIDR: "10.11.0.0/16", Postgres: 2, Etcd: 1, HAProxy: 1, App: 1},
		{Name: "eu-west-1", CIDR: "10.12.0.0/16", Postgres: 1, Etcd: 1, HAProxy: 1},
	}
	c.Witness = &cluster.Witness{Name: "eu-central-1", CIDR: "10.13.0.0/16"}
	return c
}

// Result is one run of one drill.
type Result struct {
	Drill string
	// Subject is the PostgreSQL node the fault was aimed at (the leader,
	// or the replica killed): it must be back, streaming, with the same
	// rows. Faulted lists every host the fault hit.
	Subject string
	Faulted []string
	FaultAt time.Time
	// Healed is how long after the fault the heal came.
	Healed time.Duration
	// Whole is how long after the heal the cluster was whole again.
	Whole time.Duration

	Attempts int
	Acks     int
	Warnings []string // acknowledgements that came with a warning
	Outage   Outage
	Check    Check
	// Rejoined: the subject is a member on the leader's timeline, with the
	// leader's rows.
	Rejoined bool

	LeaderBefore, LeaderAfter     string
	TimelineBefore, TimelineAfter int64
	SyncBefore                    string

	AppRequests, AppFailures int
	AppErrors                []string

	// Figures are what a drill measures besides the writes ("restore
	// 16.2 s"); Problems are the ways it missed targets of its own.
	Figures  []string
	Problems []string
}

// Lost is the number of acknowledged writes missing from the new leader.
func (r Result) Lost() int { return len(r.Check.Lost) }

// Violations lists the ways r misses the drill's targets, or nothing.
func (r Result) Violations(t Targets) []string {
	v := slices.Clone(r.Problems)
	if n := r.Lost(); n > 0 {
		v = append(v, fmt.Sprintf("%d acknowledged writes lost (first %v)", n, r.Check.Lost[:min(n, 5)]))
	}
	if !r.Check.Identical {
		var s []string
		for _, d := range r.Check.Nodes {
			s = append(s, d.String())
		}
		v = append(v, "nodes differ: "+strings.Join(s, "; "))
	}
	if !r.Rejoined {
		v = append(v, r.Subject+" did not rejoin")
	}
	if r.Acks == 0 {
		v = append(v, "no write was acknowledged at all")
	}
	o := r.Outage
	if !o.Recovered {
		v = append(v, "writes never came back")
	}
	if t.NoInterruption && o.Interrupted() {
		v = append(v, fmt.Sprintf("%d writes failed (window %s), want none", o.Failed, fmtDur(o.Window)))
	}
	if t.RTO > 0 && o.RTO > t.RTO {
		v = append(v, fmt.Sprintf("RTO %s > %s", fmtDur(o.RTO), fmtDur(t.RTO)))
	}
	if t.Window > 0 && o.Window > t.Window {
		v = append(v, fmt.Sprintf("failed-write window %s > %s", fmtDur(o.Window), fmtDur(t.Window)))
	}
	if t.NoAppFailure && r.AppFailures > 0 {
		v = append(v, fmt.Sprintf("%d of %d app requests failed: %v", r.AppFailures, r.AppRequests, r.AppErrors))
	}
	if t.NoAppFailure && r.AppRequests == 0 {
		v = append(v, "no app request made")
	}
	return v
}

// runner holds one run's state.
type runner struct {
	cluster *local.Cluster
	plan    *cluster.Plan
	log     *slog.Logger
	appURL  string
	before  View
	leader  string // the leader before the fault
	subject string
	writer  *Writer
	res     *Result
	healAt  time.Time
	// survives, when set, picks the acknowledged writes that must be on
	// the cluster after the drill (a restore to a time keeps those before
	// it); afterCheck, when set, checks the data further.
	survives   func(Attempt) bool
	afterCheck func(ctx context.Context, attempts []Attempt, leader string) error
}

// figure records one of the drill's measurements.
func (r *runner) figure(format string, args ...any) {
	r.res.Figures = append(r.res.Figures, fmt.Sprintf(format, args...))
}

// problem records a target of the drill's own that was missed.
func (r *runner) problem(format string, args ...any) {
	r.res.Problems = append(r.res.Problems, fmt.Sprintf(format, args...))
}

// mark records the moment of the fault.
func (r *runner) mark() { r.res.FaultAt = time.Now() }

// underAppLoad runs act under the app's load (a request every 50 ms),
// marking the time just before it, and records the app's requests. After
// an act that succeeded it waits 5 s more, since the app may see the
// change late.
func (r *runner) underAppLoad(ctx context.Context, act func() error) error {
	if r.appURL == "" {
		return errors.New("the topology has no app")
	}
	app := StartAppLoad(ctx, r.appURL, 50*time.Millisecond)
	sleep(ctx, time.Second)
	r.mark()
	err := act()
	if err == nil {
		sleep(ctx, 5*time.Second)
	}
	r.res.AppRequests, r.res.AppFailures, r.res.AppErrors = app.Stop()
	return err
}

// fault injects f into each target, marking the time just before.
func (r *runner) fault(ctx context.Context, f local.Fault, targets ...string) error {
	r.mark()
	for _, t := range targets {
		nodes, err := r.cluster.Fault(ctx, f, t)
		r.res.Faulted = append(r.res.Faulted, nodes...)
		if err != nil {
			return fmt.Errorf("%s %s: %w", f, t, err)
		}
		r.log.Info("fault", "kind", f, "target", t, "nodes", nodes)
	}
	return nil
}

// hold injects f into each target, holds it for d, then heals it with
// heal.
func (r *runner) hold(ctx context.Context, f local.Fault, d time.Duration, heal local.Fault, targets ...string) error {
	if err := r.fault(ctx, f, targets...); err != nil {
		return err
	}
	sleep(ctx, d)
	return r.heal(ctx, heal, targets...)
}

// heal undoes the fault on each target.
func (r *runner) heal(ctx context.Context, f local.Fault, targets ...string) error {
	// A heal must happen even when ctx ended, or the cluster stays broken.
	ctx = context.WithoutCancel(ctx)
	r.healAt = time.Now()
	var errs []error
	for _, t := range targets {
		_, err := r.cluster.Fault(ctx, f, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", f, t, err))
		}
		r.log.Info("heal", "kind", f, "target", t)
	}
	return errors.Join(errs...)
}

// waitRecovered waits until writes are going through after the fault (and,
// with mustFail, failed first), or recoverTimeout passed, then
// afterRecovery more.
func (r *runner) waitRecovered(ctx context.Context, mustFail bool) {
	deadline := time.Now().Add(recoverTimeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		o := Analyze(r.writer.Attempts(), r.res.FaultAt)
		if o.Recovered && (o.Interrupted() || !mustFail) {
			break
		}
		sleep(ctx, 200*time.Millisecond)
	}
	sleep(ctx, afterRecovery)
}

// RunConfig is what Run needs besides the drill.
type RunConfig struct {
	Cluster *local.Cluster
	Log     *slog.Logger
}

// Run runs drill d once on a whole cluster: writer, fault, heal, wait
// until whole, verify. An error means the drill could not be carried out
// (the cluster never became whole, a fault could not be injected); a drill
// that ran but missed its targets returns a Result with Violations.
func Run(ctx context.Context, rc RunConfig, d Drill) (Result, error) {
	c := rc.Cluster
	p := c.Plan()
	log := rc.Log.With("drill", d.Name)
	res := Result{Drill: d.Name}
	if err := useCluster(c); err != nil {
		return res, err
	}
	before, err := WaitWhole(ctx, p, wholeTimeout)
	if err != nil {
		return res, fmt.Errorf("before %s: %w", d.Name, err)
	}
	if d.prepare != nil {
		if err := d.prepare(ctx, c, before); err != nil {
			return res, fmt.Errorf("prepare %s: %w", d.Name, err)
		}
		if before, err = WaitWhole(ctx, p, wholeTimeout); err != nil {
			return res, fmt.Errorf("before %s: %w", d.Name, err)
		}
	}
	leader, _ := before.Leader()
	res.LeaderBefore, res.TimelineBefore, res.SyncBefore = leader.Name, leader.Timeline, before.SyncStandby()
	super, err := c.Secret(cluster.SecretSuperuser)
	if err != nil {
		return res, err
	}
	appPassword, err := c.Secret(cluster.SecretApp)
	if err != nil {
		return res, err
	}
	wc := WriterConfig{
		Addrs:    haproxyAddrs(p),
		User:     cluster.AppUser,
		Password: appPassword,
		Database: p.Config.App.Database,
		CAFile:   c.CAFile(),
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = Prepare(pctx, wc)
	cancel()
	if err != nil {
		return res, err
	}
	r := &runner{
		cluster: c, plan: p, log: log, appURL: c.AppURL(),
		before: before, leader: leader.Name, subject: leader.Name, res: &res,
	}
	log.Info("start", "leader", leader.Name, "timeline", leader.Timeline, "sync", res.SyncBefore)
	r.writer = StartWriter(ctx, wc)
	stopped := false
	defer func() {
		if !stopped {
			r.writer.Stop()
		}
	}()
	sleep(ctx, warmUp)
	injectErr := d.inject(ctx, r)
	res.Subject = r.subject
	if !r.healAt.IsZero() {
		res.Healed = r.healAt.Sub(res.FaultAt)
	} else {
		r.healAt = time.Now()
	}
	if injectErr != nil {
		return res, injectErr
	}
	after, wholeErr := WaitWhole(ctx, p, wholeTimeout)
	res.Whole = time.Since(r.healAt)
	if wholeErr == nil {
		sleep(ctx, settle)
	}
	attempts := r.writer.Stop()
	stopped = true
	res.Attempts = len(attempts)
	must := attempts
	if r.survives != nil {
		must = slices.DeleteFunc(slices.Clone(attempts), func(a Attempt) bool { return !r.survives(a) })
	}
	acked := Acked(must)
	res.Acks = len(acked)
	for _, a := range attempts {
		if a.Acked() && a.Warning != "" && len(res.Warnings) < 5 {
			res.Warnings = append(res.Warnings, fmt.Sprintf("seq %d: %s", a.Seq, a.Warning))
		}
	}
	res.Outage = Analyze(attempts, res.FaultAt)
	if wholeErr != nil {
		return res, fmt.Errorf("after %s: %w", d.Name, wholeErr)
	}
	nl, _ := after.Leader()
	res.LeaderAfter, res.TimelineAfter = nl.Name, nl.Timeline
	res.Check, err = CheckData(ctx, p, super, p.Config.App.Database, nl.Name, acked)
	if err != nil {
		return res, err
	}
	if r.afterCheck != nil {
		if err := r.afterCheck(ctx, r.writer.Attempts(), nl.Name); err != nil {
			return res, err
		}
	}
	if m, ok := after.Member(res.Subject); ok && m.Timeline == nl.Timeline {
		for _, nd := range res.Check.Nodes {
			if nd.Node == res.Subject {
				res.Rejoined = res.Check.Identical
			}
		}
	}
	log.Info("done", "rto", fmtDur(res.Outage.RTO), "window", fmtDur(res.Outage.Window),
		"failed", res.Outage.Failed, "acked", res.Acks, "lost", res.Lost(),
		"leader", res.LeaderAfter, "timeline", res.TimelineAfter, "rejoined", res.Rejoined,
		"whole_after_heal", fmtDur(res.Whole))
	return res, nil
}

// haproxyAddrs lists the HAProxy write ports, the primary region's first.
func haproxyAddrs(p *cluster.Plan) []string {
	var out []string
	for _, n := range p.HAProxyOrder(p.Primary().Name) {
		out = append(out, netip.AddrPortFrom(n.IP, cluster.PortHAProxyWrite).String())
	}
	return out
}

// etcdByLeadership returns the etcd members' names, the Raft leader first.
func etcdByLeadership(ctx context.Context, p *cluster.Plan) ([]string, error) {
	var names []string
	leader := -1
	for i, n := range p.ByRole(cluster.RoleEtcd) {
		names = append(names, n.Name)
		var st struct {
			Header struct {
				MemberID string `json:"member_id"`
			} `json:"header"`
			Leader string `json:"leader"`
		}
		url := "https://" + netip.AddrPortFrom(n.IP, cluster.PortEtcdClient).String() + "/v3/maintenance/status"
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte("{}")))
		if err != nil {
			return nil, err
		}
		resp, err := patroniClient.Do(req)
		if err != nil {
			continue
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil && st.Leader != "" && st.Leader == st.Header.MemberID {
			leader = i
		}
	}
	if len(names) == 0 {
		return nil, errors.New("no etcd member")
	}
	if leader > 0 {
		names[0], names[leader] = names[leader], names[0]
	}
	return names, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
