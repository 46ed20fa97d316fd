package drill

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/jsonget"
	"github.com/pgha/pgha/internal/patroni"
)

// applyTimeout bounds a configuration rollout: one PATCH and, per member,
// a restart or a switchover, each seen by the next check (every 5 s) once
// the cluster is whole again.
const applyTimeout = 4 * time.Minute

// changedConfig is cfg with max_connections raised by 10 (a setting that
// needs a restart of every member) and Patroni's maximum_lag_on_failover
// halved (one that does not), so that the drill changes something each
// time it runs on the same cluster.
func changedConfig(cfg cluster.Config) (cluster.Config, string) {
	cfg.Postgres.Parameters = maps.Clone(cfg.Postgres.Parameters)
	n, err := strconv.Atoi(cfg.Postgres.Parameters["max_connections"])
	if err != nil {
		n = 100
	}
	want := strconv.Itoa(n + 10)
	cfg.Postgres.Parameters["max_connections"] = want
	cfg.Patroni.MaximumLagOnFailover = max(cfg.Patroni.MaximumLagOnFailover/2, 65536)
	return cfg, want
}

// configChange is the config-change drill's fault: the change itself.
func configChange(ctx context.Context, r *runner) error {
	cfg, want := changedConfig(r.plan.Config)
	super, err := r.cluster.Secret(cluster.SecretSuperuser)
	if err != nil {
		return err
	}
	r.mark()
	if err := r.cluster.Apply(ctx, cfg); err != nil {
		return err
	}
	r.plan = r.cluster.Plan()
	took, err := waitConfigApplied(ctx, r.plan, super, want, applyTimeout)
	r.log.Info("configuration applied", "max_connections", want, "took", took.Round(100*time.Millisecond), "err", err)
	if err != nil {
		return err
	}
	r.waitRecovered(ctx, false)
	return nil
}

// waitConfigApplied waits until every PostgreSQL node runs with
// max_connections = want, none waits for a restart, and the DCS holds the
// plan's maximum_lag_on_failover; it returns how long that took.
func waitConfigApplied(ctx context.Context, p *cluster.Plan, superPassword, want string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = configApplied(ctx, p, superPassword, want); last == nil {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("configuration not applied after %s: %w", timeout, last)
		case <-time.After(time.Second):
		}
	}
}

func configApplied(ctx context.Context, p *cluster.Plan, superPassword, want string) error {
	for _, n := range p.ByRole(cluster.RolePostgres) {
		base := fmt.Sprintf("https://%s:%d", n.IP, cluster.PortPatroni)
		var st patroni.Status
		if err := jsonget.Get(ctx, patroniClient, base+"/patroni", &st); err != nil {
			return err
		}
		if st.PendingRestart {
			return fmt.Errorf("%s waits for a restart", n.Name)
		}
		var cfg struct {
			MaximumLagOnFailover int64 `json:"maximum_lag_on_failover"`
		}
		if err := jsonget.Get(ctx, patroniClient, base+"/config", &cfg); err != nil {
			return err
		}
		if cfg.MaximumLagOnFailover != p.Config.Patroni.MaximumLagOnFailover {
			return fmt.Errorf("%s: maximum_lag_on_failover %d, want %d", n.Name, cfg.MaximumLagOnFailover, p.Config.Patroni.MaximumLagOnFailover)
		}
		got, err := showSetting(ctx, n.Name, superPassword, "max_connections")
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s runs with max_connections %s, want %s", n.Name, got, want)
		}
	}
	return nil
}

// showSetting is a setting's value on one node, as PostgreSQL runs it.
func showSetting(ctx context.Context, node, superPassword, name string) (string, error) {
	conn, err := connectNode(ctx, node, superPassword, "postgres")
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	err = conn.QueryRow(ctx, "SELECT setting FROM pg_settings WHERE name = $1", name).Scan(&v)
	return v, err
}
