package drill

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/jsonget"
	"github.com/pgha/pgha/internal/patroni"
	"github.com/pgha/pgha/local"
)

// nsPrefix names a node's network namespace: "pgha-<node>" (local/doc.go).
const nsPrefix = "pgha-"

// View is the cluster as one Patroni's GET /cluster describes it; its
// predicates (Leader, SyncStandby, Member, ...) are patroni.Cluster's.
type View struct {
	From string // the node that answered
	patroni.Cluster
}

// Whole reports nil when the cluster is whole for plan p, as
// patroni.Cluster.Whole has it: every PostgreSQL node of the plan is a
// member and, in synchronous mode, the plan's number of synchronous
// standbys is chosen. The error says what is missing.
func (v View) Whole(p *cluster.Plan) error {
	var names []string
	for _, n := range p.ByRole(cluster.RolePostgres) {
		names = append(names, n.Name)
	}
	sync := 0
	if p.Config.Patroni.SynchronousMode {
		sync = p.SynchronousNodeCount()
	}
	return v.Cluster.Whole(names, sync)
}

// patroniClient asks the local cluster's Patroni and etcd endpoints over
// TLS; Up (and Run) set it from the cluster's CA and operator certificate.
var patroniClient = &http.Client{Timeout: 2 * time.Second}

// useCluster points patroniClient at c's CA and operator certificate.
func useCluster(c *local.Cluster) error {
	client, err := c.HTTPClient(2 * time.Second)
	if err != nil {
		return err
	}
	patroniClient = client
	return nil
}

// Observe asks each PostgreSQL node's Patroni in turn for GET /cluster and
// returns the first answer.
func Observe(ctx context.Context, p *cluster.Plan) (View, error) {
	var errs []error
	for _, n := range p.ByRole(cluster.RolePostgres) {
		url := "https://" + netip.AddrPortFrom(n.IP, cluster.PortPatroni).String() + "/cluster"
		var pc patroni.Cluster
		if err := jsonget.Get(ctx, patroniClient, url, &pc); err != nil {
			errs = append(errs, err)
			continue
		}
		return View{From: n.Name, Cluster: pc}, nil
	}
	return View{}, fmt.Errorf("no Patroni answered: %w", errors.Join(errs...))
}

// WaitWhole waits until the cluster is whole (see View.Whole) and every
// etcd member healthy, and has stayed so for two Patroni cycles, and
// returns the view that showed it. The wait for a steady state matters
// after a thaw: a leader frozen past its lock wakes up believing it still
// leads, and demotes (restarting PostgreSQL) only on its next cycle.
func WaitWhole(ctx context.Context, p *cluster.Plan, timeout time.Duration) (View, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	steady := time.Duration(2*p.Config.Patroni.LoopWait+1) * time.Second
	var last error
	var wholeSince time.Time
	for {
		v, err := Observe(ctx, p)
		if err == nil {
			err = v.Whole(p)
		}
		if err == nil {
			err = etcdHealthy(ctx, p)
		}
		if err == nil {
			err = patronisOnDCS(ctx, p)
		}
		switch {
		case err != nil:
			wholeSince = time.Time{}
		case wholeSince.IsZero():
			wholeSince = time.Now()
		case time.Since(wholeSince) >= steady:
			return v, nil
		}
		last = err
		select {
		case <-ctx.Done():
			if last == nil {
				last = errors.New("whole, but not yet for " + steady.String())
			}
			return View{}, fmt.Errorf("cluster not whole after %s: %w", timeout, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// etcdHealthy checks every etcd member's GET /health.
func etcdHealthy(ctx context.Context, p *cluster.Plan) error {
	var errs []error
	for _, n := range p.ByRole(cluster.RoleEtcd) {
		var h struct {
			Health string `json:"health"`
		}
		url := "https://" + netip.AddrPortFrom(n.IP, cluster.PortEtcdClient).String() + "/health"
		if err := jsonget.Get(ctx, patroniClient, url, &h); err != nil {
			errs = append(errs, fmt.Errorf("etcd %s: %w", n.Name, err))
		} else if h.Health != "true" {
			errs = append(errs, fmt.Errorf("etcd %s unhealthy", n.Name))
		}
	}
	return errors.Join(errs...)
}

// patronisOnDCS checks that every Patroni has reached etcd within the last
// few seconds and is out of failsafe mode: after etcd lost its quorum, a
// Patroni may otherwise still act on what it last read.
func patronisOnDCS(ctx context.Context, p *cluster.Plan) error {
	var errs []error
	for _, n := range p.ByRole(cluster.RolePostgres) {
		var st patroni.Status
		url := "https://" + netip.AddrPortFrom(n.IP, cluster.PortPatroni).String() + "/patroni"
		if err := jsonget.Get(ctx, patroniClient, url, &st); err != nil {
			errs = append(errs, fmt.Errorf("patroni %s: %w", n.Name, err))
			continue
		}
		if st.FailsafeModeIsActive {
			errs = append(errs, fmt.Errorf("patroni %s in failsafe mode", n.Name))
		}
		limit := time.Duration(2*p.Config.Patroni.LoopWait+2) * time.Second
		if seen := time.Since(time.Unix(st.DCSLastSeen, 0)); seen > limit {
			errs = append(errs, fmt.Errorf("patroni %s last reached etcd %s ago", n.Name, seen.Round(time.Second)))
		}
	}
	return errors.Join(errs...)
}

// NodeData is one node's copy of Table.
type NodeData struct {
	Node  string
	Count int64
	Sum   int64
	Hash  string // md5 of the ordered sequence numbers
}

func (d NodeData) same(o NodeData) bool {
	return d.Count == o.Count && d.Sum == o.Sum && d.Hash == o.Hash
}

func (d NodeData) String() string {
	return fmt.Sprintf("%s: %d rows, sum %d, md5 %s", d.Node, d.Count, d.Sum, d.Hash)
}

// Check is the state of the data after a drill.
type Check struct {
	Nodes []NodeData
	// Lost are acknowledged sequence numbers missing from the leader.
	Lost []int64
	// Unacked is the number of rows on the leader whose insert was not
	// acknowledged (committed, but the answer was lost): harmless.
	Unacked int
	// Identical is true when every node has exactly the leader's rows.
	Identical bool
}

// CheckData waits until every replica has replayed the leader's current
// WAL, then compares every node's rows with the leader's and the leader's
// with the acknowledged sequence numbers. The writer must be stopped.
func CheckData(ctx context.Context, p *cluster.Plan, superPassword, database, leader string, acked []int64) (Check, error) {
	var ck Check
	lconn, err := connectNode(ctx, leader, superPassword, database)
	if err != nil {
		return ck, err
	}
	defer lconn.Close(context.WithoutCancel(ctx))
	var lsn string
	if err := lconn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		return ck, fmt.Errorf("leader %s: %w", leader, err)
	}
	rows, err := lconn.Query(ctx, `SELECT seq FROM `+Table)
	if err != nil {
		return ck, fmt.Errorf("leader %s: %w", leader, err)
	}
	present, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return ck, fmt.Errorf("leader %s: %w", leader, err)
	}
	have := make(map[int64]bool, len(present))
	for _, s := range present {
		have[s] = true
	}
	ackedSet := make(map[int64]bool, len(acked))
	for _, s := range acked {
		ackedSet[s] = true
		if !have[s] {
			ck.Lost = append(ck.Lost, s)
		}
	}
	for _, s := range present {
		if !ackedSet[s] {
			ck.Unacked++
		}
	}
	ck.Identical = true
	var ref NodeData
	for _, n := range p.ByRole(cluster.RolePostgres) {
		d, err := nodeData(ctx, n.Name, superPassword, database, lsn, n.Name == leader)
		if err != nil {
			return ck, err
		}
		ck.Nodes = append(ck.Nodes, d)
		if n.Name == leader {
			ref = d
		}
	}
	for _, d := range ck.Nodes {
		if !d.same(ref) {
			ck.Identical = false
		}
	}
	return ck, nil
}

// nodeData waits (on a replica) until lsn is replayed, then fingerprints
// the node's rows.
func nodeData(ctx context.Context, node, password, database, lsn string, leader bool) (NodeData, error) {
	d := NodeData{Node: node}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	conn, err := connectNode(ctx, node, password, database)
	if err != nil {
		return d, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for !leader {
		var done bool
		err := conn.QueryRow(ctx, `SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)`, lsn).Scan(&done)
		if err != nil {
			return d, fmt.Errorf("%s: replay position: %w", node, err)
		}
		if done {
			break
		}
		select {
		case <-ctx.Done():
			return d, fmt.Errorf("%s has not replayed the leader's WAL up to %s: %w", node, lsn, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	err = conn.QueryRow(ctx, `SELECT count(*), coalesce(sum(seq), 0)::bigint,
	md5(coalesce(string_agg(seq::text, ',' ORDER BY seq), '')) FROM `+Table).Scan(&d.Count, &d.Sum, &d.Hash)
	if err != nil {
		return d, fmt.Errorf("%s: read %s: %w", node, Table, err)
	}
	return d, nil
}

// connectNode logs in to a PostgreSQL node as the superuser over
// 127.0.0.1, from inside the node's network namespace.
func connectNode(ctx context.Context, node, password, database string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig("host=127.0.0.1 port=" + strconv.Itoa(cluster.PortPostgres) +
		" sslmode=disable connect_timeout=5 application_name=pgha-drill-verify")
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password, cfg.Database = cluster.SuperUser, password, database
	// The writer logs in as the app role, whose tables land in the first
	// schema of its search_path ("$user", then public).
	cfg.RuntimeParams["search_path"] = cluster.AppUser + ", public"
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return local.DialInNode(ctx, node, network, addr)
	}
	// A node that just rejoined may still be restarting PostgreSQL: retry
	// for a while before calling it a failure.
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			return conn, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("connect to %s: %w", node, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Up brings a local cluster up once the host is free: it waits (up to
// wait) while another local cluster is up, whether its owner took the host
// lock or only local's claim.
func Up(ctx context.Context, opts local.Options, wait time.Duration) (*local.Cluster, error) {
	deadline := time.Now().Add(wait)
	for {
		if err := WaitHostFree(ctx, time.Until(deadline)); err != nil {
			return nil, err
		}
		c, err := local.Up(ctx, opts)
		if err == nil {
			if err := useCluster(c); err != nil {
				return c, err
			}
		}
		if !errors.Is(err, local.ErrRangeInUse) || time.Now().After(deadline) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
}

// WaitHostFree waits until no local cluster's namespaces exist on this
// host, up to timeout. Callers hold the host lock first; this covers a
// cluster brought up by someone who did not take it.
func WaitHostFree(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		entries, err := os.ReadDir("/run/netns")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		var ours []string
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), nsPrefix) {
				ours = append(ours, e.Name())
			}
		}
		if len(ours) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("another local cluster is up on this host (namespaces %s) and did not go away in %s", strings.Join(ours, ", "), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
}
