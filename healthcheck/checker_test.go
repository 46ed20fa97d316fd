package healthcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeApp is an app whose /readyz answers what ready says.
func fakeApp(t *testing.T, ready *atomic.Bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if !ready.Load() {
			http.Error(w, `{"error":"database not reachable"}`, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"status":"ready"}`))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestCheckerScenario is the original design's problem: the app starts
// before the cluster is ready; it is left alone while the cluster is not,
// restarted once when the cluster is, not again within the backoff, and
// again after it.
func TestCheckerScenario(t *testing.T) {
	var appReady, clusterUp atomic.Bool
	leaderURL := serveCaptured(t, "healthy", "pg2")
	hole := blackHole(t)
	app := App{Name: "app1", InstanceID: "i-1", URL: fakeApp(t, &appReady)}
	members := []Member{
		{Name: "pg1", Region: "eu-west-3", URL: serveCaptured(t, "healthy", "pg1")},
		{Name: "pg2", Region: "eu-west-3", URL: hole},
		{Name: "pg3", Region: "eu-west-1", URL: serveCaptured(t, "healthy", "pg3")},
	}
	var restarts []string
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	c := &Checker{
		Members:   members,
		Apps:      []App{app},
		Patroni:   &PatroniClient{Timeout: 200 * time.Millisecond},
		AppProber: &AppProber{Timeout: 200 * time.Millisecond},
		Writes: WriteCheckerFunc(func(context.Context) error {
			if !clusterUp.Load() {
				return errors.New("connection refused")
			}
			return nil
		}),
		Restarter: RestarterFunc(func(_ context.Context, a App) error { restarts = append(restarts, a.InstanceID); return nil }),
		Store:     &MemoryStore{},
		Backoff:   5 * time.Minute,
		Now:       func() time.Time { return now },
	}
	step := func(name string, wantReady bool, wantAction Action, wantRestarts int) Report {
		t.Helper()
		r, err := c.Check(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Decision.Ready != wantReady || r.Decision.Apps[0].Action != wantAction || len(restarts) != wantRestarts {
			t.Fatalf("%s: ready %v (%s), action %s, %d restarts; want %v, %s, %d",
				name, r.Decision.Ready, r.Decision.Reason, r.Decision.Apps[0].Action, len(restarts), wantReady, wantAction, wantRestarts)
		}
		now = now.Add(time.Minute)
		return r
	}

	r := step("leader pg2 not answering", false, ActionHold, 0)
	if !strings.Contains(r.Decision.Reason, "leader pg2 holds the leader key but did not answer") {
		t.Errorf("reason %q", r.Decision.Reason)
	}
	members[1].URL = leaderURL // the leader answers; writes still fail
	step("writes fail", false, ActionHold, 0)
	clusterUp.Store(true)
	step("cluster ready, app not", true, ActionRestart, 1)
	step("a minute later, still not ready", true, ActionBackoff, 1)
	now = now.Add(3 * time.Minute)
	step("five minutes after the restart", true, ActionRestart, 2)
	appReady.Store(true)
	r = step("app ready", true, ActionNone, 2)

	var log bytes.Buffer
	r.Log(context.Background(), slog.New(slog.NewJSONHandler(&log, nil)))
	var line map[string]any
	if err := json.Unmarshal(log.Bytes(), &line); err != nil || strings.Count(log.String(), "\n") != 1 {
		t.Fatalf("log is not one JSON line: %q", log.String())
	}
	if line["ready"] != true || line["leader"].(map[string]any)["name"] != "pg2" || line["msg"] != "health check" {
		t.Errorf("log line %v", line)
	}
}

func TestCheckerStoreFailsNoRestart(t *testing.T) {
	var appReady atomic.Bool
	var restarts int
	c := &Checker{
		Members:   []Member{{Name: "pg2", URL: serveCaptured(t, "healthy", "pg2")}},
		Apps:      []App{{Name: "app1", InstanceID: "i-1", URL: fakeApp(t, &appReady)}},
		Writes:    WriteCheckerFunc(func(context.Context) error { return nil }),
		Restarter: RestarterFunc(func(context.Context, App) error { restarts++; return nil }),
		Store:     failingStore{},
		Backoff:   time.Minute,
	}
	r, err := c.Check(context.Background())
	if err == nil || restarts != 0 || r.Decision.Apps[0].Action != ActionUnknown {
		t.Errorf("err %v, restarts %d, decision %+v", err, restarts, r.Decision)
	}
}

type failingStore struct{}

func (failingStore) LastRestart(context.Context, App) (time.Time, error) {
	return time.Time{}, errors.New("AccessDeniedException")
}
func (failingStore) RecordRestart(context.Context, App, time.Time) error { return errors.New("no") }

func TestWriteEMF(t *testing.T) {
	r := Report{
		Start:       time.UnixMilli(1795723000000),
		Duration:    42 * time.Millisecond,
		Observation: Observation{View: View{Leader: &Leader{Name: "pg2", State: "running", Confirmed: true, Ready: true}, Primaries: []string{"pg2"}, Members: []MemberState{{Name: "pg2", Answered: true, State: "running"}, {Name: "pg1", Answered: true, State: "streaming", Streaming: true, LagBytes: 4096}}}},
		Decision:    Decision{Ready: true},
		Restarted:   []string{"i-1"},
	}
	var b bytes.Buffer
	if err := WriteEMF(&b, "pgha", "eu-west-3", r); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		AWS struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		Cluster, Region string
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := json.Unmarshal(b.Bytes(), &values); err != nil {
		t.Fatal(err)
	}
	if doc.AWS.Timestamp != 1795723000000 || doc.Cluster != "pgha" || doc.Region != "eu-west-3" {
		t.Errorf("doc %+v", doc)
	}
	m := doc.AWS.CloudWatchMetrics[0]
	if m.Namespace != MetricNamespace || len(m.Dimensions) != 1 || strings.Join(m.Dimensions[0], ",") != "Cluster,Region" {
		t.Errorf("metrics %+v", m)
	}
	want := map[string]float64{
		MetricClusterReady: 1, MetricLeaderPresent: 1, MetricPrimaries: 1, MetricHealthyMembers: 2, MetricStreamingReplicas: 1,
		MetricMaxLagBytes: 4096, MetricRestartsIssued: 1, MetricUnreachable: 0, MetricCheckDuration: 42,
	}
	for _, d := range m.Metrics {
		if values[d.Name] != want[d.Name] {
			t.Errorf("%s = %v, want %v", d.Name, values[d.Name], want[d.Name])
		}
		delete(want, d.Name)
	}
	if len(want) > 0 {
		t.Errorf("missing metrics %v", want)
	}
}

func TestCheckerRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	c := &Checker{
		Members: []Member{{Name: "pg2", URL: serveCaptured(t, "healthy", "pg2")}},
		Writes:  WriteCheckerFunc(func(context.Context) error { return nil }),
		Store:   &MemoryStore{},
	}
	c.Run(ctx, 10*time.Millisecond, func(r Report, err error) {
		if err != nil || !r.Decision.Ready {
			t.Errorf("report %+v, %v", r.Decision, err)
		}
		if n++; n == 3 {
			cancel()
		}
	})
	if n != 3 {
		t.Errorf("%d reports, want 3", n)
	}
}
