package local

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/render"
)

// Apply changes the running cluster's configuration to cfg, the way a
// `cdk deploy` of a changed cdk.json does on AWS: the configuration the
// health checkers are given changes (on AWS, the Lambda's settings), and
// the primary region's checker then PATCHes Patroni's dynamic
// configuration and rolls the restarts it needs, one member at a time,
// the leader last (healthcheck.ConfigStep). Apply returns once the
// checkers run with cfg; the change itself reaches the nodes over the next
// checks (see ConfigApplied).
//
// Only settings that apply online may change: a change that would change
// any node's user data or files (the topology, etcd's timing, the app's
// database) is refused with the files it would change, as on AWS it would
// need new nodes.
func (c *Cluster) Apply(ctx context.Context, cfg cluster.Config) error {
	plan, err := cluster.NewPlan(cfg)
	if err != nil {
		return err
	}
	if err := sameNodes(c.plan, plan); err != nil {
		return err
	}
	c.reload()
	c.mu.Lock()
	opts := c.st.CheckerOptions
	c.mu.Unlock()
	if opts.Disabled || opts.Binary == "" {
		return fmt.Errorf("apply: the cluster in %s runs no health checker to apply the change", c.dir)
	}
	if err := c.stopCheckers(ctx); err != nil {
		return err
	}
	if err := c.update(func(st *state) error { st.Config = cfg; return nil }); err != nil {
		return err
	}
	c.plan = plan
	c.logf("configuration saved; the health checkers restart with it")
	return c.startCheckers(opts)
}

// sameNodes reports which nodes' boot scripts or files differ between two
// plans, as an error; nil when none does.
func sameNodes(old, new *cluster.Plan) error {
	var names []string
	for _, n := range old.Nodes {
		names = append(names, n.Name)
	}
	var newNames []string
	for _, n := range new.Nodes {
		newNames = append(newNames, n.Name)
	}
	if !slices.Equal(names, newNames) {
		return fmt.Errorf("apply: the nodes would change from %v to %v: a change of the topology needs new nodes (pgha-local down, then up)", names, newNames)
	}
	var changed []string
	for i, n := range old.Nodes {
		a, err := render.BootScript(old, n)
		if err != nil {
			return err
		}
		b, err := render.BootScript(new, new.Nodes[i])
		if err != nil {
			return err
		}
		if a != b {
			changed = append(changed, n.Name)
		}
	}
	if len(changed) > 0 {
		return fmt.Errorf("apply: the user data of %s would change, which no running node applies: only postgres.parameters, patroni.* and healthCheck.* apply online", strings.Join(changed, ", "))
	}
	return nil
}
