package local

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/patroni"
)

// pollInterval is how often WaitReady and the fault helpers look again.
const pollInterval = 500 * time.Millisecond

// Ready reports whether the cluster is ready: a running leader, every
// other PostgreSQL node streaming, a write through every HAProxy's write
// port accepted, and every app's GET /readyz answering 200. The error says
// what is missing.
func (c *Cluster) Ready(ctx context.Context) error {
	pc, err := c.Patroni(ctx)
	if err != nil {
		return err
	}
	if err := replicationReady(pc, len(c.plan.ByRole(cluster.RolePostgres)), c.plan.Config.Patroni.SynchronousMode); err != nil {
		return err
	}
	for _, addr := range c.HAProxyAddrs() {
		if err := c.write(ctx, addr); err != nil {
			return err
		}
	}
	for _, n := range c.plan.ByRole(cluster.RoleApp) {
		if err := checkReadyz(ctx, appURL(n)); err != nil {
			return err
		}
	}
	return nil
}

// replicationReady checks Patroni's members: a running leader
// (patroni.Cluster.Leader), want-1 streaming replicas
// (patroni.Cluster.StreamingReplicas) and, in synchronous mode, a
// synchronous standby among them. Until Patroni has named one, no replica
// may be promoted: a leader lost before then is not replaced.
func replicationReady(pc patroni.Cluster, want int, synchronous bool) error {
	if _, ok := pc.Leader(); !ok {
		return errors.New("no running leader yet")
	}
	streaming := pc.StreamingReplicas()
	if len(streaming) != want-1 {
		return fmt.Errorf("%d of %d replicas streaming", len(streaming), want-1)
	}
	if synchronous && !slices.ContainsFunc(streaming, patroni.Member.SyncStandby) {
		return errors.New("no synchronous standby yet")
	}
	return nil
}

// WaitReady waits until Ready reports the cluster ready, or ctx ends.
func (c *Cluster) WaitReady(ctx context.Context) error {
	var last error
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		last = c.Ready(rctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready: %w (%w)", last, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// ConnString returns a connection string through an HAProxy port
// ("ip:port") as the app role, to the app's database. Not as the superuser:
// the rendered pg_hba.conf accepts it only from the PostgreSQL nodes, as on
// EC2.
func (c *Cluster) ConnString(addr string) (string, error) {
	pw, err := c.Secret(cluster.SecretApp)
	if err != nil {
		return "", err
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(cluster.AppUser, pw),
		Host:     addr,
		Path:     "/" + c.plan.Config.App.Database,
		RawQuery: "sslmode=verify-full&sslrootcert=" + url.QueryEscape(c.CAFile()) + "&connect_timeout=3",
	}
	return u.String(), nil
}

// write writes a row into a scratch table through an HAProxy write port.
func (c *Cluster) write(ctx context.Context, addr string) error {
	dsn, err := c.ConnString(addr)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect through HAProxy %s: %w", addr, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS pgha_local_ready (at timestamptz NOT NULL DEFAULT now());
INSERT INTO pgha_local_ready DEFAULT VALUES`)
	if err != nil {
		return fmt.Errorf("write through HAProxy %s: %w", addr, err)
	}
	return nil
}

func checkReadyz(ctx context.Context, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("app: GET %s/readyz: %s", base, resp.Status)
	}
	return nil
}
