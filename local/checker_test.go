package local

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/pgha/pgha/healthcheck"
)

// TestParseCheckerRuns reads back what RunChecker writes: each check's EMF
// document and healthcheck.Report.Log line, among other lines, the last one
// unfinished.
func TestParseCheckerRuns(t *testing.T) {
	app := healthcheck.App{Name: "app1", InstanceID: "app1", URL: "http://10.11.0.40:5000"}
	reports := []healthcheck.Report{
		{Decision: healthcheck.Decision{Ready: false, Reason: "no leader", Apps: []healthcheck.AppDecision{
			{App: app, Action: healthcheck.ActionHold, Reason: "not ready"}}}},
		{Decision: healthcheck.Decision{Ready: true, Reason: "leader pg1 accepts writes", Apps: []healthcheck.AppDecision{
			{App: app, Action: healthcheck.ActionRestart, Reason: "not ready while the cluster is ready"}}},
			Restarted: []string{"app1"}},
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil)).With("cluster", "pgha", "region", "eu-west-3")
	log.Info("health checker started")
	for _, r := range reports {
		if err := healthcheck.WriteEMF(&buf, "pgha", "eu-west-3", r); err != nil {
			t.Fatal(err)
		}
		r.Log(context.Background(), log)
	}
	complete := buf.Len()
	buf.WriteString(`{"time":"2026-11-26T20:00:00Z","msg":"health ch`)

	runs, partial := parseCheckerRuns(buf.Bytes())
	if partial != buf.Len()-complete {
		t.Errorf("partial = %d, want %d", partial, buf.Len()-complete)
	}
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2: %+v", len(runs), runs)
	}
	for i, r := range runs {
		want := reports[i]
		if r.Time.IsZero() || time.Since(r.Time) > time.Minute {
			t.Errorf("run %d: time %v", i, r.Time)
		}
		if r.Ready != want.Decision.Ready || r.Reason != want.Decision.Reason || !slices.Equal(r.Restarted, want.Restarted) {
			t.Errorf("run %d = %+v, want %+v", i, r, want)
		}
		if len(r.Apps) != 1 || r.Apps[0] != want.Decision.Apps[0] {
			t.Errorf("run %d apps = %+v, want %+v", i, r.Apps, want.Decision.Apps)
		}
	}
}

func TestCheckerRegions(t *testing.T) {
	if got := checkerRegions(defaultPlan(t)); !slices.Equal(got, []string{"eu-west-3"}) {
		t.Errorf("checkerRegions(default) = %v, want [eu-west-3]", got)
	}
}
