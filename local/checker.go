package local

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/healthcheck"
	"github.com/pgha/pgha/internal/s3objects"
	"github.com/pgha/pgha/render"
)

// CheckerCommand is the pgha-local subcommand that runs one region's health
// checker: `pgha-local checker --dir DIR --region REGION --every D
// --backoff D`, which calls RunChecker. Up starts it, detached, like the
// daemons.
const CheckerCommand = "checker"

// DefaultCheckerInterval is how often the local health checker checks. The
// Lambda runs every minute; locally the demo should not take minutes.
const DefaultCheckerInterval = 5 * time.Second

// CheckerOptions configure the health checkers Up starts: one per region
// that has an app, as on AWS (one Lambda per such region), running the
// same healthcheck.Checker on a timer, with a restarter that restarts the
// app process (RestartApp) in place of SSM Run Command and a
// healthcheck.MemoryStore in place of Parameter Store.
type CheckerOptions struct {
	// Disabled starts no health checker. Default: false.
	Disabled bool
	// Interval is the time between two checks. Default:
	// DefaultCheckerInterval.
	Interval time.Duration
	// Backoff is the least time between two restarts of one app. Default:
	// the configuration's healthCheck.restartBackoffMinutes.
	Backoff time.Duration
	// Binary is pgha-local's binary, run as `pgha-local checker`. Default:
	// built from github.com/pgha/pgha/cmd/pgha-local into Dir/bin, which
	// needs the working directory inside the module (as the app's build).
	Binary string
}

// checkerRegions are the regions with an app, in plan order.
func checkerRegions(p *cluster.Plan) []string {
	var out []string
	for _, n := range p.ByRole(cluster.RoleApp) {
		if !slices.Contains(out, n.Region) {
			out = append(out, n.Region)
		}
	}
	return out
}

// CheckerRegions are the regions whose health checker runs (those with
// an app), in plan order.
func (c *Cluster) CheckerRegions() []string { return checkerRegions(c.plan) }

func (c *Cluster) checkerLog(region string) string {
	return filepath.Join(c.dir, "logs", "checker-"+region+".log")
}

// startCheckers starts a health checker in each region that has an app, in
// its namespace in the region's private subnet (checkerNS), and records
// them.
func (c *Cluster) startCheckers(opts CheckerOptions) error {
	for _, region := range checkerRegions(c.plan) {
		l := launch{
			service: "checker",
			argv: []string{"ip", "netns", "exec", checkerNS(region), opts.Binary, CheckerCommand, "--dir", c.dir, "--region", region,
				"--every", opts.Interval.String(), "--backoff", opts.Backoff.String()},
			env:     []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			logFile: c.checkerLog(region),
		}
		c.logf("starting the health checker of %s (every %s; log %s)", region, opts.Interval, l.logFile)
		p, err := l.start()
		if err != nil {
			return err
		}
		err = c.update(func(st *state) error {
			if st.Checkers == nil {
				st.Checkers = map[string]proc{}
			}
			st.Checkers[region] = p
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// stopCheckers stops the recorded health checkers: SIGTERM, then SIGKILL
// after a grace period.
func (c *Cluster) stopCheckers(ctx context.Context) error {
	c.reload()
	c.mu.Lock()
	var ps []proc
	for _, p := range c.st.Checkers {
		ps = append(ps, p)
	}
	c.mu.Unlock()
	anyAlive := func() bool { return slices.ContainsFunc(ps, proc.alive) }
	signal := func(sig syscall.Signal) {
		for _, p := range ps {
			if p.alive() {
				_ = syscall.Kill(p.PID, sig)
			}
		}
	}
	wait := func(d time.Duration) bool {
		deadline := time.Now().Add(d)
		for anyAlive() {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return false
			}
			time.Sleep(100 * time.Millisecond)
		}
		return true
	}
	signal(syscall.SIGTERM)
	if wait(stopGrace) {
		return nil
	}
	signal(syscall.SIGKILL)
	if wait(5 * time.Second) {
		return nil
	}
	return errors.New("a health checker still runs after SIGKILL")
}

// RestartApp restarts the app of app node name the way the Lambda does on
// AWS: it runs render.AppRestartCommand, the command SSM Run Command sends,
// as root in the node's system. It is the local health checker's
// healthcheck.Restarter.
func (c *Cluster) RestartApp(ctx context.Context, name string) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	if n.Role != cluster.RoleApp {
		return fmt.Errorf("%s is not an app node", name)
	}
	_, err = c.Exec(ctx, name, "/bin/sh", "-c", render.AppRestartCommand)
	return err
}

// RunChecker is the health checker of one region, the body of `pgha-local
// checker`: it runs healthcheck.Checker every opts.Interval until ctx ends,
// as the Lambda does every minute, restarting the region's apps with
// RestartApp. Each check writes one CloudWatch EMF document and one JSON
// log line (healthcheck.Report.Log) to out.
func RunChecker(ctx context.Context, dir, region string, opts CheckerOptions, out io.Writer) error {
	c, err := Open(dir)
	if err != nil {
		return err
	}
	s, err := healthcheck.SettingsFromPlan(c.plan, region, nil)
	if err != nil {
		return err
	}
	if opts.Backoff > 0 {
		s.RestartBackoffMs = opts.Backoff.Milliseconds()
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultCheckerInterval
	}
	if err := s.Validate(); err != nil {
		return err
	}
	password, err := c.Secret(cluster.SecretHealth)
	if err != nil {
		return err
	}
	apiPassword, err := c.Secret(cluster.SecretPatroniAPI)
	if err != nil {
		return err
	}
	roots, err := c.caPool()
	if err != nil {
		return err
	}
	writes := &healthcheck.PGWriteChecker{
		Addrs: s.HAProxy, User: s.User, Database: s.Database,
		Password: healthcheck.StaticPassword(password), Timeout: s.WriteTimeout(),
		TLS: &tls.Config{RootCAs: roots},
	}
	restarter := healthcheck.RestarterFunc(func(ctx context.Context, a healthcheck.App) error {
		return c.RestartApp(ctx, a.Name)
	})
	// The checker is not restarted while the cluster is up, so its memory
	// of the restarts can live in it.
	checker := healthcheck.NewChecker(s, writes, restarter, &healthcheck.MemoryStore{})
	checker.Patroni = healthcheck.NewPatroniClient(roots, s.APIUser, apiPassword, s.NodeTimeout())
	checker.Archive = writes
	checker.Volumes = c
	if s.Stanza != "" {
		client, err := c.S3Client(region)
		if err != nil {
			return err
		}
		checker.Backups = healthcheck.RepositoryReader{
			Objects: s3objects.Bucket{Client: client, Name: c.BackupBucket(region)}, Prefix: s.BackupPrefix, Stanza: s.Stanza,
		}
	}
	log := slog.New(slog.NewJSONHandler(out, nil)).With("cluster", s.Cluster, "region", region)
	var apps []string
	for _, a := range s.Apps {
		apps = append(apps, a.Name)
	}
	log.Info("health checker started", "interval", opts.Interval.String(), "backoff", s.Backoff().String(), "apps", apps)
	checker.Run(ctx, opts.Interval, func(r healthcheck.Report, _ error) {
		if err := healthcheck.WriteEMF(out, s.Cluster, region, r); err != nil {
			log.Error("write EMF", "err", err)
		}
		r.Log(ctx, log)
	})
	log.Info("health checker stopped")
	return nil
}

// CheckerRun is one check as a health checker logged it.
type CheckerRun struct {
	Time   time.Time                 `json:"time"`
	Ready  bool                      `json:"ready"`
	Reason string                    `json:"reason"`
	Apps   []healthcheck.AppDecision `json:"apps"`
	// Restarted are the instance ids (locally, node names) restarted.
	Restarted []string `json:"restarted"`
	Errors    []string `json:"errors"`
	// Archive is the WAL archive's status, and NewestBackup the newest
	// backup in the region's repository (zero: none, or not read).
	Archive      *healthcheck.ArchiveStatus `json:"archive"`
	NewestBackup time.Time                  `json:"newestBackup"`
	// Volumes is the percent in use of each PostgreSQL node's data volume,
	// as the nodes report it; VolumeFull is set when the leader's is full.
	Volumes    map[string]float64 `json:"volumes"`
	VolumeFull string             `json:"volumeFull"`
}

// checkLogMsg is the message of healthcheck.Report.Log's line.
const checkLogMsg = "health check"

// parseCheckerRuns reads the checks from a checker's log, skipping the
// other lines (EMF documents, start and stop). partial is the length of an
// unfinished last line, left to read later.
func parseCheckerRuns(b []byte) (runs []CheckerRun, partial int) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return runs, len(b)
		}
		line := b[:i]
		b = b[i+1:]
		var r struct {
			Msg string `json:"msg"`
			CheckerRun
		}
		if json.Unmarshal(line, &r) == nil && r.Msg == checkLogMsg {
			runs = append(runs, r.CheckerRun)
		}
	}
	return runs, 0
}

// CheckerRuns returns every check the health checker of region logged, in
// order. The log (Dir/logs/checker-<region>.log) outlives Down.
func (c *Cluster) CheckerRuns(region string) ([]CheckerRun, error) {
	b, err := os.ReadFile(c.checkerLog(region))
	if err != nil {
		return nil, err
	}
	runs, _ := parseCheckerRuns(b)
	return runs, nil
}

// checkerTail reads the checks a checker logs as they come.
type checkerTail struct {
	path   string
	offset int64
}

func (t *checkerTail) next() []CheckerRun {
	f, err := os.Open(t.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(t.offset, io.SeekStart); err != nil {
		return nil
	}
	b, err := io.ReadAll(bufio.NewReader(f))
	if err != nil {
		return nil
	}
	runs, partial := parseCheckerRuns(b)
	t.offset += int64(len(b) - partial)
	return runs
}

// watchCheckers reports, until the returned stop is called, what the health
// checkers decide that matters while the cluster comes up: each change of
// the cluster's readiness, and each restart of an app, timed from start.
func (c *Cluster) watchCheckers(start time.Time) (stop func()) {
	regions := checkerRegions(c.plan)
	tails := make([]checkerTail, len(regions))
	ready := make([]*bool, len(regions))
	for i, r := range regions {
		tails[i].path = c.checkerLog(r)
		if fi, err := os.Stat(tails[i].path); err == nil {
			tails[i].offset = fi.Size() // only this Up's checks
		}
	}
	since := func(t time.Time) string { return "T+" + t.Sub(start).Round(100*time.Millisecond).String() }
	poll := func() {
		for i, region := range regions {
			for _, r := range tails[i].next() {
				if ready[i] == nil || *ready[i] != r.Ready {
					state := "not ready"
					if r.Ready {
						state = "ready"
					}
					c.logf("health checker %s at %s: cluster %s: %s", region, since(r.Time), state, r.Reason)
					ready[i] = &r.Ready
				}
				for _, a := range r.Apps {
					if slices.Contains(r.Restarted, a.App.InstanceID) {
						c.logf("%s restarted by the health checker at %s: %s", a.App.Name, since(r.Time), a.Reason)
					}
				}
				for _, e := range r.Errors {
					c.logf("health checker %s at %s: %s", region, since(r.Time), e)
				}
			}
		}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				poll()
				return
			case <-t.C:
				poll()
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// CheckerStatus is one region's health checker. Its JSON form is an item of
// `pgha-local status --json`'s "checker".
type CheckerStatus struct {
	Region string `json:"region"`
	State  string `json:"state"` // StateRunning or StateDown
	Log    string `json:"log"`
	// LastCheck is the time of the last check logged; "" before the first.
	LastCheck string `json:"lastCheck"`
	// Ready and Reason are the last check's view of the cluster.
	Ready  bool   `json:"ready"`
	Reason string `json:"reason"`
	// Restarts counts the app restarts logged.
	Restarts int `json:"restarts"`
}

// checkerStatus reports the recorded health checkers.
func (c *Cluster) checkerStatus() []CheckerStatus {
	c.reload()
	c.mu.Lock()
	checkers := c.st.Checkers
	c.mu.Unlock()
	out := []CheckerStatus{}
	for _, region := range checkerRegions(c.plan) {
		p, ok := checkers[region]
		if !ok {
			continue
		}
		cs := CheckerStatus{Region: region, State: StateDown, Log: c.checkerLog(region)}
		if p.alive() {
			cs.State = StateRunning
		}
		runs, _ := c.CheckerRuns(region)
		for _, r := range runs {
			cs.Restarts += len(r.Restarted)
		}
		if len(runs) > 0 {
			last := runs[len(runs)-1]
			cs.LastCheck = last.Time.Format(time.RFC3339)
			cs.Ready, cs.Reason = last.Ready, last.Reason
		}
		out = append(out, cs)
	}
	return out
}
