// Command pgha-drill injects every fault the cluster claims to survive into
// a local cluster (package local) under write load, repeatedly, and prints
// a markdown table of RTO, failed-write window and acknowledged writes lost
// (package drill). It is `make drill`; run it as root.
//
//	sudo go run ./cmd/pgha-drill [-runs 5] [-faults leader-kill,switchover] [-dir .pgha-drill]
//
// It holds the host lock (/run/pgha-local.lock) for its whole run, since
// every local cluster uses the same addresses. It exits with status 1 when a
// run misses its targets or cannot be carried out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/drill"
	"github.com/pgha/pgha/internal/hostlock"
	"github.com/pgha/pgha/local"
)

// errMissed is returned when a run missed its targets.
var errMissed = errors.New("some runs missed their targets")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pgha-drill:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pgha-drill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.Int("runs", 5, "runs of each fault")
	faults := fs.String("faults", strings.Join(drill.Names(), ","), "comma-separated faults to inject")
	dir := fs.String("dir", ".pgha-drill", "directory of the local cluster the drills use")
	quorum := fs.Int("quorum", 0, "run on quorum commit (patroni.quorumCommit) with this synchronousNodeCount: commits wait for any N standbys; 0 keeps the configuration's synchronous mode")
	keep := fs.Bool("keep", false, "leave the last cluster up afterwards, to read its nodes' journals (pgha-local exec --dir DIR NODE journalctl ...); pgha-local down --dir DIR removes it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *runs < 1 {
		return fmt.Errorf("-runs must be at least 1, got %d", *runs)
	}
	ds, err := drill.Find(strings.Split(*faults, ","))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	unlock, err := lockHost(log)
	if err != nil {
		return err
	}
	defer unlock()

	var (
		results []drill.Result
		errs    = map[string]int{}
		ready   []string
		missed  bool
		kept    *topology
	)
	for _, witness := range []bool{false, true} {
		var group []drill.Drill
		for _, d := range ds {
			if d.Witness == witness {
				group = append(group, d)
			}
		}
		if len(group) == 0 {
			continue
		}
		if kept != nil { // only the last topology's cluster stays up
			kept.down()
			kept = nil
		}
		cfg := cluster.Default()
		name := "default topology"
		if witness {
			cfg, name = drill.WitnessConfig(), "witness topology"
		}
		if *quorum > 0 {
			cfg.Patroni.QuorumCommit, cfg.Patroni.SynchronousNodeCount = true, *quorum
			name += fmt.Sprintf(", quorum commit of %d", *quorum)
		}
		t := &topology{name: name, cfg: cfg, dir: *dir, log: log, stderr: stderr}
		for _, d := range group {
			for i := range *runs {
				if ctx.Err() != nil {
					break
				}
				c, err := t.cluster(ctx)
				if err != nil {
					t.down()
					return err
				}
				log.Info("run", "drill", d.Name, "run", i+1, "of", *runs)
				res, err := drill.Run(ctx, drill.RunConfig{Cluster: c, Log: log}, d)
				if err != nil {
					log.Error("run failed; starting a fresh cluster", "drill", d.Name, "err", err)
					errs[d.Name]++
					missed = true
					t.down()
					continue
				}
				results = append(results, res)
				if v := res.Violations(d.Targets); len(v) > 0 {
					missed = true
					log.Warn("target missed", "drill", d.Name, "run", i+1, "violations", strings.Join(v, "; "))
				}
			}
		}
		if *keep && t.c != nil {
			kept = t
		} else {
			t.down()
		}
		ready = append(ready, t.readyTimes()...)
	}

	if kept != nil {
		log.Info("the cluster is left up (-keep)", "dir", kept.dir)
	}
	sums := drill.Summarize(ds, results, errs)
	fmt.Fprintf(stdout, "\n%d run(s) of each fault, %s\n\n", *runs, time.Now().Format(time.DateTime))
	drill.WriteTable(stdout, sums)
	fmt.Fprintln(stdout)
	drill.WriteLegend(stdout, sums)
	for _, r := range ready {
		fmt.Fprintln(stdout, "- up to ready:", r)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if missed {
		return errMissed
	}
	return nil
}

// topology brings one cluster configuration up on demand and down again.
type topology struct {
	name   string
	cfg    cluster.Config
	dir    string
	log    *slog.Logger
	stderr io.Writer

	c     *local.Cluster
	ready []time.Duration
}

// cluster returns the running cluster, bringing it up first if needed.
func (t *topology) cluster(ctx context.Context) (*local.Cluster, error) {
	if t.c != nil {
		return t.c, nil
	}
	t.log.Info("bringing the cluster up", "topology", t.name, "dir", t.dir)
	if err := drill.WaitHostFree(ctx, 15*time.Minute); err != nil {
		return nil, err
	}
	start := time.Now()
	c, err := drill.Up(ctx, local.Options{Dir: t.dir, Config: &t.cfg, Log: t.stderr}, time.Minute)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	t.ready = append(t.ready, time.Since(start))
	t.c = c
	return c, nil
}

// down tears the cluster down, if up.
func (t *topology) down() {
	if t.c == nil {
		return
	}
	if err := t.c.Down(context.Background()); err != nil {
		t.log.Error("tear down", "topology", t.name, "err", err)
	}
	t.c = nil
}

func (t *topology) readyTimes() []string {
	var out []string
	for _, d := range t.ready {
		out = append(out, fmt.Sprintf("%s %.1f s", t.name, d.Seconds()))
	}
	return out
}

// lockHost takes the host lock for the whole run: one local cluster per
// host.
func lockHost(log *slog.Logger) (func(), error) {
	f, err := os.OpenFile(hostlock.Path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open host lock: %w", err)
	}
	log.Info("waiting for the host lock", "path", hostlock.Path)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("take host lock %s: %w", hostlock.Path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
