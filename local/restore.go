package local

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/render"
)

// RestoreReport is how a point-in-time recovery went, phase by phase.
type RestoreReport struct {
	Target time.Time `json:"target"`
	// Node restored the cluster and leads it now.
	Node string `json:"node"`
	// Archived is false when no leader could switch and archive its WAL
	// first: WAL written since the last archived segment is not in the
	// archive, and the target may lie beyond it.
	Archived bool `json:"archived"`
	// Restore is from Patroni stopped to the restored node leading;
	// Backup the full backup of the new timeline into every repository;
	// Ready from there to every replica streaming.
	Restore time.Duration `json:"restore"`
	Backup  time.Duration `json:"backup"`
	Ready   time.Duration `json:"ready"`
}

// Restore brings the whole cluster back to target from the backups:
// render.RestoreScript's steps on the PostgreSQL nodes, in order (see its
// header); the first PostgreSQL node of the primary region restores and
// leads. The cluster refuses writes from the moment Patroni stops until
// the restored node leads. The data directory the restoring node had is
// kept beside the new one.
func (c *Cluster) Restore(ctx context.Context, target time.Time) (RestoreReport, error) {
	r := RestoreReport{Target: target.UTC()}
	restorer := c.plan.Select(c.plan.Primary().Name, cluster.RolePostgres)[0]
	r.Node = restorer.Name
	pgs := c.plan.ByRole(cluster.RolePostgres)
	step := func(n cluster.Node, args ...string) error {
		out, err := c.Exec(ctx, n.Name, append([]string{render.RestoreScript}, args...)...)
		if err != nil {
			return err // it names the command, the node and the script's output
		}
		c.logf("%s: %s", n.Name, out)
		return nil
	}
	at := r.Target.Format("2006-01-02 15:04:05.999999-07")
	// Refused before anything is touched: a time in the future or before
	// every backup.
	if err := step(restorer, "check", at); err != nil {
		return r, err
	}
	if leader, err := c.Leader(ctx); err == nil {
		n, _ := c.plan.Node(leader)
		if err := step(n, "archive"); err != nil {
			return r, fmt.Errorf("the leader could not archive its WAL, so the archive may not reach %s: make archiving work first (the health checker's archive status says why): %w", at, err)
		}
		r.Archived = true
	} else {
		c.logf("no leader to archive its WAL first: the restore reaches the last archived WAL at most")
	}
	start := time.Now()
	if err := c.onAll(pgs, func(n cluster.Node) error { return step(n, "stop") }); err != nil {
		return r, err
	}
	if err := step(restorer, "begin", at); err != nil {
		return r, err
	}
	c.logf("waiting for %s to restore and lead", restorer.Name)
	if err := step(restorer, "wait"); err != nil {
		return r, err
	}
	// It leads: wait until HAProxy routes writes to it.
	for c.write(ctx, c.HAProxyAddrs()[0]) != nil {
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("%s leads but takes no write through HAProxy after %s: %w", restorer.Name, time.Since(start).Round(time.Second), ctx.Err())
		case <-time.After(time.Second):
		}
	}
	r.Restore = time.Since(start)
	start = time.Now()
	if err := step(restorer, "finish"); err != nil {
		return r, err
	}
	r.Backup = time.Since(start)
	start = time.Now()
	var others []cluster.Node
	for _, n := range pgs {
		if n.Name != restorer.Name {
			others = append(others, n)
		}
	}
	if err := c.onAll(others, func(n cluster.Node) error { return step(n, "join") }); err != nil {
		return r, err
	}
	if err := c.WaitReady(ctx); err != nil {
		return r, err
	}
	r.Ready = time.Since(start)
	return r, nil
}

// onAll runs fn on every node at once.
func (c *Cluster) onAll(nodes []cluster.Node, fn func(cluster.Node) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Go(func() { errs[i] = fn(n) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// RebuildReplica removes replica node's data directory, as a lost or
// corrupted volume would, and has Patroni build it again
// (create_replica_methods: from the newest backup, else from the leader).
// It returns the method Patroni reports it used ("pgbackrest" or
// "basebackup") once the node streams again.
func (c *Cluster) RebuildReplica(ctx context.Context, node string) (string, error) {
	if _, err := c.node(node); err != nil {
		return "", err
	}
	since := time.Now().UTC().Format("2006-01-02 15:04:05")
	script := fmt.Sprintf("systemctl stop %s && rm -rf %s && systemctl start %s", render.PatroniUnit, render.DataDir, render.PatroniUnit)
	if _, err := c.Exec(ctx, node, "/bin/sh", "-c", script); err != nil {
		return "", err
	}
	for {
		out, _ := c.Exec(ctx, node, "journalctl", "-u", render.PatroniUnit, "--since", since, "--no-pager", "-o", "cat")
		if _, method, ok := strings.Cut(string(out), "replica has been created using "); ok {
			method, _, _ = strings.Cut(method, "\n")
			if ms, err := c.Members(ctx); err == nil {
				for _, m := range ms {
					if m.Name == node && m.State == "streaming" {
						return strings.TrimSpace(method), nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s was not rebuilt: %w", node, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
