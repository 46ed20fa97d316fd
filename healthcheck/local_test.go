package healthcheck_test

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/healthcheck"
	"github.com/pgha/pgha/internal/hostlock"
	"github.com/pgha/pgha/local"
)

var capture = flag.Bool("capture", false, "save the Patroni answers of each phase of TestLocalCluster under internal/patroni/testdata/patroni-4.0.7/local-<phase>")

// TestLocalCluster runs the Patroni client and the readiness check against
// the real cluster of the local harness (PostgreSQL 17, Patroni 4.0.7, etcd,
// HAProxy from Debian 13): healthy; leader killed; failover in progress;
// recovered with a new leader; the old leader back as a replica.
func TestLocalCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole local cluster")
	}
	skipOrFail := func(reason string) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatal(reason)
		}
		t.Skip(reason)
	}
	if os.Geteuid() != 0 {
		skipOrFail("the local cluster needs root (network namespaces)")
	}
	hostlock.Lock(t) // one local cluster per machine
	ctx := context.Background()
	c, err := local.Up(ctx, local.Options{Dir: t.TempDir(), Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Down(context.Background()); err != nil {
			t.Error(err)
		}
	})

	plan := c.Plan()
	s, err := healthcheck.SettingsFromPlan(plan, plan.Primary().Name, nil)
	if err != nil {
		t.Fatal(err)
	}
	password, err := c.Secret(cluster.SecretHealth)
	if err != nil {
		t.Fatal(err)
	}
	// Patroni and PostgreSQL speak TLS with the cluster's CA.
	tlsCfg, err := c.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	writes := &healthcheck.PGWriteChecker{
		Addrs: s.HAProxy, User: s.User, Database: s.Database,
		Password: healthcheck.StaticPassword(password), Timeout: 2 * time.Second,
		TLS: &tls.Config{RootCAs: tlsCfg.RootCAs},
	}
	var restarts []string
	checker := healthcheck.NewChecker(s, writes, healthcheck.RestarterFunc(func(_ context.Context, a healthcheck.App) error {
		restarts = append(restarts, a.Name) // dry run: the app is not touched
		return nil
	}), &healthcheck.MemoryStore{})
	checker.Patroni = healthcheck.NewPatroniClient(tlsCfg.RootCAs, "", "", s.NodeTimeout())
	check := func() healthcheck.Report {
		t.Helper()
		r, err := checker.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// waitFor checks every second until cond holds, and returns every
	// report seen.
	waitFor := func(what string, limit time.Duration, cond func(healthcheck.Report) bool) []healthcheck.Report {
		t.Helper()
		var seen []healthcheck.Report
		deadline := time.Now().Add(limit)
		for {
			r := check()
			seen = append(seen, r)
			if cond(r) {
				return seen
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s; last: ready=%v %s; members %+v", what, limit, r.Decision.Ready, r.Decision.Reason, r.Observation.View.Members)
			}
			time.Sleep(time.Second)
		}
	}

	// Healthy.
	r := waitFor("all three members streaming", time.Minute, func(r healthcheck.Report) bool {
		return r.Decision.Ready && r.Observation.View.Healthy() == 3 && r.Observation.View.StreamingReplicas() == 2
	})[0]
	r = check()
	v := r.Observation.View
	old := *v.Leader
	t.Logf("healthy: %s; check took %s", r.Decision.Reason, r.Duration)
	if !old.Confirmed || old.Timeline < 1 || len(v.Unreachable) != 0 || v.MaxLagBytes() > 1<<20 {
		t.Fatalf("healthy view %+v", v)
	}
	saveAnswers(t, checker.Patroni.HTTP, "healthy", s.Members)

	// Leader killed: its key outlives it for up to ttl; the check must
	// see that the leader does not answer and hold.
	killed, err := c.Fault(ctx, local.Kill, local.LeaderTarget)
	if err != nil {
		t.Fatal(err)
	}
	if len(killed) != 1 || killed[0] != old.Name {
		t.Fatalf("killed %v, want the leader %s", killed, old.Name)
	}
	start := time.Now()
	r = check()
	saveAnswers(t, checker.Patroni.HTTP, "leader-killed", s.Members)
	t.Logf("leader %s killed: ready=%v: %s (check took %s)", old.Name, r.Decision.Ready, r.Decision.Reason, r.Duration)
	if r.Decision.Ready || len(r.Decision.Restarts()) != 0 {
		t.Fatalf("ready right after the leader was killed: %s", r.Decision.Reason)
	}
	if r.Duration > 2*healthcheck.DefaultNodeTimeout+healthcheck.DefaultWriteTimeout {
		t.Errorf("check took %s with the leader dead", r.Duration)
	}

	// Failover in progress, then recovered with a new leader.
	reasons := map[string]bool{}
	captured := false
	seen := waitFor("a new leader accepting writes", 90*time.Second, func(r healthcheck.Report) bool {
		if !r.Decision.Ready {
			reasons[r.Decision.Reason] = true
			if len(r.Decision.Restarts()) != 0 {
				t.Errorf("restart decided while not ready: %+v", r.Decision)
			}
			if !captured && !strings.Contains(r.Decision.Reason, "did not answer") {
				saveAnswers(t, checker.Patroni.HTTP, "failover", s.Members)
				captured = true
			}
		}
		return r.Decision.Ready
	})
	r = seen[len(seen)-1]
	v = r.Observation.View
	t.Logf("recovered after %s: %s; reasons seen while not ready: %q", time.Since(start).Round(time.Second), r.Decision.Reason, slices.Sorted(maps.Keys(reasons)))
	if v.Leader.Name == old.Name || v.Leader.Timeline <= old.Timeline {
		t.Errorf("new leader %+v, old %+v: want another member on a later timeline", v.Leader, old)
	}
	if !slices.Contains(v.Unreachable, old.Name) {
		t.Errorf("unreachable %v, want the killed %s", v.Unreachable, old.Name)
	}
	saveAnswers(t, checker.Patroni.HTTP, "recovered", s.Members)

	// The old leader back, as a streaming replica.
	if _, err := c.Fault(ctx, local.Heal, old.Name); err != nil {
		t.Fatal(err)
	}
	waitFor("the old leader streaming again", 2*time.Minute, func(r healthcheck.Report) bool {
		if !r.Decision.Ready {
			t.Errorf("not ready while the old leader comes back: %s", r.Decision.Reason)
		}
		for _, m := range r.Observation.View.Members {
			if m.Name == old.Name {
				return m.Streaming && r.Observation.View.Healthy() == 3
			}
		}
		return false
	})
	saveAnswers(t, checker.Patroni.HTTP, "old-leader-back", s.Members)
	t.Logf("restarts decided (dry run): %v", restarts)
}

// saveAnswers writes each member's raw GET /patroni and /cluster bodies
// under internal/patroni/testdata when -capture is given, asking with client (the checker's,
// which trusts the cluster CA).
func saveAnswers(t *testing.T, client *http.Client, phase string, members []healthcheck.Member) {
	t.Helper()
	if !*capture {
		return
	}
	dir := filepath.Join("..", "internal", "patroni", "testdata", "patroni-4.0.7", "local-"+phase)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		for _, ep := range []string{"patroni", "cluster"} {
			resp, err := client.Get(m.URL + "/" + ep)
			if err != nil {
				continue // unreachable: no file
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				continue
			}
			name := fmt.Sprintf("%s-%s.json", m.Name, ep)
			if err := os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
