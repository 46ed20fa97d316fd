package drill

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/hostlock"
	"github.com/pgha/pgha/local"
)

// TestDrills runs every drill of the default topology once, on one cluster,
// and asserts its targets. `make drill` repeats them.
func TestDrills(t *testing.T) {
	var ds []Drill
	for _, d := range Drills {
		if !d.Witness {
			ds = append(ds, d)
		}
	}
	runDrills(t, cluster.Default(), ds)
}

// TestRegionDrill cuts the primary region off a cluster with a witness
// region, once.
func TestRegionDrill(t *testing.T) {
	var ds []Drill
	for _, d := range Drills {
		if d.Witness {
			ds = append(ds, d)
		}
	}
	runDrills(t, WitnessConfig(), ds)
}

// runDrills brings a cluster up with cfg and runs each drill once, as a
// subtest, on that cluster; a drill that could not be carried out stops the
// rest, since the cluster may be broken.
func runDrills(t *testing.T, cfg cluster.Config, ds []Drill) {
	requireLocal(t)
	hostlock.Lock(t)
	ctx := t.Context()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	c, err := Up(ctx, local.Options{Dir: filepath.Join(t.TempDir(), "cluster"), Config: &cfg, Log: t.Output()}, 15*time.Minute)
	if err != nil {
		t.Fatalf("local.Up: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Down(context.Background()); err != nil {
			t.Errorf("Down: %v", err)
		}
	})
	for _, d := range ds {
		ok := t.Run(d.Name, func(t *testing.T) {
			res, err := Run(ctx, RunConfig{Cluster: c, Log: log}, d)
			if err != nil {
				t.Fatalf("drill %s: %v", d.Name, err)
			}
			t.Logf("%s: RTO %s, failed-write window %s, %d failed of %d attempts, %d acknowledged, %d lost, leader %s→%s, timeline %d→%d, rejoined %v",
				d.Name, fmtDur(res.Outage.RTO), fmtDur(res.Outage.Window), res.Outage.Failed, res.Attempts, res.Acks, res.Lost(),
				res.LeaderBefore, res.LeaderAfter, res.TimelineBefore, res.TimelineAfter, res.Rejoined)
			if res.AppRequests > 0 {
				t.Logf("app: %d of %d requests failed", res.AppFailures, res.AppRequests)
			}
			for _, v := range res.Violations(d.Targets) {
				t.Error(v)
			}
		})
		if !ok {
			// Whether the cluster is whole again is checked by the next
			// drill; only a drill that could not finish is fatal.
			if _, err := WaitWhole(ctx, c.Plan(), wholeTimeout); err != nil {
				t.Fatalf("stopping: %v", err)
			}
		}
	}
}

// requireLocal skips the test when this machine cannot run a local
// cluster, or fails it under CI.
func requireLocal(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("drills take minutes: skipped with -short")
	}
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces, mounts, chroot)")
	}
	if _, err := os.Stat(filepath.Join(local.DefaultRootFS, "usr/bin/patroni")); err != nil {
		if _, err := exec.LookPath("debootstrap"); err != nil {
			missing = append(missing, "the Debian 13 root filesystem "+local.DefaultRootFS+" or debootstrap to build it")
		}
	}
	if missing == nil {
		return
	}
	err := errors.New("the local cluster needs " + strings.Join(missing, " and "))
	if os.Getenv("CI") != "" {
		t.Fatal(err)
	}
	t.Skip(err)
}
