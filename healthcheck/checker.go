package healthcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Checker runs one check of the cluster at a time (Check). Its fields are
// set once; a Checker is safe for use by one goroutine at a time.
type Checker struct {
	// Members are all regions' PostgreSQL nodes.
	Members []Member
	// Apps are the app instances this checker may restart.
	Apps []App
	// Patroni asks the members. Default: a PatroniClient with
	// DefaultNodeTimeout.
	Patroni *PatroniClient
	// AppProber asks the apps. Default: an AppProber with DefaultAppTimeout.
	AppProber *AppProber
	// Writes checks that the leader accepts writes through HAProxy.
	Writes WriteChecker
	// Restarter restarts an app instance.
	Restarter Restarter
	// Store remembers restarts across runs.
	Store Store
	// Backoff is the least time between two restarts of one app.
	Backoff time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Desired is Patroni's dynamic configuration as it should be (JSON,
	// render.DynamicConfig): each check brings the cluster one step closer
	// (see ConfigStep). Default: nil, the configuration is left alone.
	Desired json.RawMessage
	// ActionTimeout bounds each configuration action.
	// Default: DefaultActionTimeout.
	ActionTimeout time.Duration
	// PrimaryRegion is the region the leader belongs in. Default: "", no
	// such check.
	PrimaryRegion string
	// Boots reads the nodes' boot statuses. Default: nil, not checked.
	Boots BootReader
	// BootNodes are the nodes whose boot status is checked
	// (Settings.BootNodes).
	BootNodes []string
	// Archive reads the WAL archive's status on the leader. Default: nil,
	// not checked.
	Archive ArchiveChecker
	// Backups reads the newest backup of the region's repository.
	// Default: nil, not checked.
	Backups BackupReader
	// Volumes reads how full the PostgreSQL nodes' data volumes are.
	// Default: nil, not checked.
	Volumes VolumeReader
}

// NewChecker builds a Checker from settings with the given dependencies.
func NewChecker(s Settings, w WriteChecker, r Restarter, st Store) *Checker {
	return &Checker{
		Members:       s.Members,
		Apps:          s.Apps,
		Patroni:       &PatroniClient{Timeout: s.NodeTimeout()},
		AppProber:     &AppProber{Timeout: s.AppTimeout()},
		Writes:        w,
		Restarter:     r,
		Store:         st,
		Backoff:       s.Backoff(),
		Desired:       s.DynamicConfig,
		PrimaryRegion: s.PrimaryRegion,
	}
}

// Report is the outcome of one check: what was seen, what was decided, what
// was done.
type Report struct {
	Start       time.Time     `json:"start"`
	Duration    time.Duration `json:"duration"`
	Observation Observation   `json:"observation"`
	Decision    Decision      `json:"decision"`
	// Restarted are the instance ids restarted by this check.
	Restarted []string `json:"restarted,omitempty"`
	// Config is what was done about the dynamic configuration, when the
	// checker manages it.
	Config *ConfigStep `json:"config,omitempty"`
	// LeaderAway is true when a running leader is outside the primary
	// region.
	LeaderAway bool `json:"leaderAway,omitempty"`
	// BootsChecked is true when the nodes' boot statuses were read;
	// BootsNotOK are then the nodes whose boot is not "ok" (BootsNotOK).
	BootsChecked bool     `json:"bootsChecked,omitempty"`
	BootsNotOK   []string `json:"bootsNotOk,omitempty"`
	// Archive is the WAL archive's status, when it was read.
	Archive *ArchiveStatus `json:"archive,omitempty"`
	// BackupChecked is true when the region's repository was read;
	// NewestBackup is then when its newest backup finished (zero: none).
	BackupChecked bool      `json:"backupChecked,omitempty"`
	NewestBackup  time.Time `json:"newestBackup,omitzero"`
	// Volumes is the percent in use of each PostgreSQL node's data volume
	// that reported it, when they were read.
	Volumes map[string]float64 `json:"volumes,omitempty"`
	// Errors are failures to act (store, restart, configuration); they are
	// also returned by Check.
	Errors []string `json:"errors,omitempty"`
}

// Check observes the cluster and the apps, decides, and restarts the apps
// the decision names. The returned error reports failures to read or write
// the restart memory or to restart; an unready cluster is not an error.
func (c *Checker) Check(ctx context.Context) (Report, error) {
	now := c.now()
	r := Report{Start: now}

	// Patroni and the apps at once: the check is bounded by the slower of
	// the two timeouts, not by the number of nodes.
	var probes []Probe
	var apps []AppStatus
	var wg sync.WaitGroup
	wg.Go(func() { probes = c.Patroni.ProbeAll(ctx, c.Members) })
	wg.Go(func() { apps = c.AppProber.ProbeAll(ctx, c.Apps) })
	wg.Wait()

	o := Observation{View: Reconcile(probes), Apps: apps}
	if o.View.Leader.Running() && c.Writes != nil {
		o.WriteChecked = true
		if err := c.Writes.CheckWrites(ctx); err != nil {
			o.WriteErr = err.Error()
		}
	}
	var errs []error
	if ready, _ := ClusterReady(o.View, o.WriteChecked, o.WriteErr); ready {
		for i, a := range o.Apps {
			if a.Ready {
				continue
			}
			t, err := c.Store.LastRestart(ctx, a.App)
			if err != nil {
				o.Apps[i].StoreErr = err.Error()
				errs = append(errs, fmt.Errorf("read last restart of %s: %w", a.App.InstanceID, err))
				continue
			}
			o.Apps[i].LastRestart = t
		}
	}
	r.Observation = o
	r.Decision = Decide(o, now, c.Backoff)

	for _, a := range r.Decision.Restarts() {
		// Remember first: if the restart is then lost, the app waits one
		// backoff; the other order could restart it every minute when the
		// store fails.
		if err := c.Store.RecordRestart(ctx, a, now); err != nil {
			errs = append(errs, fmt.Errorf("record restart of %s: %w", a.InstanceID, err))
			continue
		}
		if err := c.Restarter.Restart(ctx, a); err != nil {
			errs = append(errs, fmt.Errorf("restart %s (%s): %w", a.Name, a.InstanceID, err))
			continue
		}
		r.Restarted = append(r.Restarted, a.InstanceID)
	}
	if c.Desired != nil {
		r.Config = c.applyConfig(ctx, c.Desired, probes, o.View)
		if r.Config.Err != "" {
			errs = append(errs, fmt.Errorf("dynamic configuration: %s", r.Config.Err))
		}
	}
	if c.Boots != nil {
		if st, err := c.Boots.BootStatuses(ctx); err != nil {
			errs = append(errs, fmt.Errorf("read boot statuses: %w", err))
		} else {
			r.BootsChecked, r.BootsNotOK = true, BootsNotOK(c.BootNodes, st)
		}
	}
	if c.Archive != nil && o.View.Leader.Running() {
		if st, err := c.Archive.ArchiveStatus(ctx); err != nil {
			errs = append(errs, fmt.Errorf("read the WAL archive's status: %w", err))
		} else {
			r.Archive = &st
		}
	}
	if c.Backups != nil {
		if t, err := c.Backups.NewestBackup(ctx); err != nil {
			errs = append(errs, fmt.Errorf("read the backup repository: %w", err))
		} else {
			r.BackupChecked, r.NewestBackup = true, t
		}
	}
	if c.Volumes != nil {
		if st, err := c.Volumes.VolumeStatuses(ctx); err != nil {
			errs = append(errs, fmt.Errorf("read the data volumes' use: %w", err))
		} else {
			r.Volumes = VolumesUsed(st)
		}
	}
	r.LeaderAway = c.PrimaryRegion != "" && o.View.Leader.Running() && o.View.Leader.Region != c.PrimaryRegion
	for _, err := range errs {
		r.Errors = append(r.Errors, err.Error())
	}
	r.Duration = c.now().Sub(now)
	return r, errors.Join(errs...)
}

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// LogAttrs are the fields of the check's one structured log line.
func (r Report) LogAttrs() []slog.Attr {
	v := r.Observation.View
	attrs := []slog.Attr{
		slog.Bool("ready", r.Decision.Ready),
		slog.String("reason", r.Decision.Reason),
	}
	if v.Leader != nil {
		attrs = append(attrs, slog.Group("leader",
			slog.String("name", v.Leader.Name),
			slog.String("region", v.Leader.Region),
			slog.Int64("timeline", v.Leader.Timeline),
			slog.String("state", v.Leader.State),
			slog.Bool("confirmed", v.Leader.Confirmed)))
	}
	attrs = append(attrs,
		slog.Any("primaries", v.Primaries),
		slog.Int("healthyMembers", v.Healthy()),
		slog.Int("streamingReplicas", v.StreamingReplicas()),
		slog.Int64("maxLagBytes", v.MaxLagBytes()),
		slog.Any("members", v.Members),
	)
	if len(v.Unreachable) > 0 {
		attrs = append(attrs, slog.Any("unreachable", v.Unreachable))
	}
	if len(v.Notes) > 0 {
		attrs = append(attrs, slog.Any("notes", v.Notes))
	}
	if r.Observation.WriteErr != "" {
		attrs = append(attrs, slog.String("writeError", r.Observation.WriteErr))
	}
	if r.LeaderAway {
		attrs = append(attrs, slog.String("leaderAway", fmt.Sprintf("the leader %s is in %s, outside the primary region: switch back with patronictl switchover", v.Leader.Name, v.Leader.Region)))
	}
	if r.Config != nil {
		attrs = append(attrs, slog.Any("config", r.Config))
	}
	if len(r.BootsNotOK) > 0 {
		attrs = append(attrs, slog.Any("bootsNotOk", r.BootsNotOK))
	}
	if r.Archive != nil {
		attrs = append(attrs, slog.Any("archive", r.Archive))
	}
	if r.BackupChecked {
		attrs = append(attrs, slog.Time("newestBackup", r.NewestBackup))
	}
	if r.Volumes != nil {
		attrs = append(attrs, slog.Any("volumes", r.Volumes))
		if v.Leader != nil && r.Volumes[v.Leader.Name] >= VolumeFullPercent {
			attrs = append(attrs, slog.String("volumeFull", fmt.Sprintf("the leader %s's data volume is full: writes that need space fail; grow the volume (README: a data volume full)", v.Leader.Name)))
		}
	}
	attrs = append(attrs,
		slog.Any("apps", r.Decision.Apps),
		slog.Any("restarted", r.Restarted),
		slog.Int64("durationMs", r.Duration.Milliseconds()),
	)
	if len(r.Errors) > 0 {
		attrs = append(attrs, slog.Any("errors", r.Errors))
	}
	return attrs
}

// Log writes the check's one structured log line: level INFO when the
// cluster is ready and nothing failed, WARN when it is not ready, ERROR
// when an action failed.
func (r Report) Log(ctx context.Context, l *slog.Logger) {
	level := slog.LevelInfo
	switch {
	case len(r.Errors) > 0:
		level = slog.LevelError
	case !r.Decision.Ready:
		level = slog.LevelWarn
	}
	l.LogAttrs(ctx, level, "health check", r.LogAttrs()...)
}

// Run checks now and then every interval until ctx is done, handing each
// report to report (which may be nil). It is the local cluster's timer; on
// AWS the schedule runs one Check per invocation.
func (c *Checker) Run(ctx context.Context, every time.Duration, report func(Report, error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		r, err := c.Check(ctx)
		if report != nil && ctx.Err() == nil {
			report(r, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
