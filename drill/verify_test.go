package drill

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/patroni"
)

// observed is pg1's recorded GET /cluster in a phase of the Patroni 4.0.7
// fixtures (internal/patroni/testdata), as Observe returns it from plan
// p: the fixtures' pg1, pg2, pg3 renamed to p's PostgreSQL nodes in order.
func observed(t *testing.T, p *cluster.Plan, phase string) View {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "internal", "patroni", "testdata", "patroni-4.0.7", phase, "pg1-cluster.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v View
	if err := json.Unmarshal(b, &v.Cluster); err != nil {
		t.Fatal(err)
	}
	pgs := p.ByRole(cluster.RolePostgres)
	v.From = pgs[0].Name
	for i, m := range v.Members {
		n, err := strconv.Atoi(strings.TrimPrefix(m.Name, "pg"))
		if err != nil || n < 1 || n > len(pgs) {
			t.Fatalf("fixture member %q", m.Name)
		}
		v.Members[i].Name = pgs[n-1].Name
	}
	return v
}

// TestViewWhole checks what the drills pass to patroni.Cluster.Whole: the
// plan's PostgreSQL nodes and, in synchronous mode only, its number of
// synchronous standbys.
func TestViewWhole(t *testing.T) {
	plan := func(t *testing.T, synchronous bool, syncCount int) *cluster.Plan {
		cfg := cluster.Default()
		cfg.Patroni.SynchronousMode = synchronous
		cfg.Patroni.SynchronousNodeCount = syncCount
		p, err := cluster.NewPlan(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name        string
		phase       string
		synchronous bool
		syncCount   int
		want        string // "" when whole
	}{
		{"healthy", "healthy", true, 1, ""},
		{"rejects too few synchronous standbys", "healthy", true, 2, "1 synchronous standbys of 2"},
		{"asynchronous: no synchronous standby needed", "local-failover", false, 2, "euw3-pg1 running, euw1-pg1 not listed"},
		{"rejects a replica not yet streaming", "local-old-leader-back", true, 1, "euw1-pg1 starting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := plan(t, tt.synchronous, tt.syncCount)
			err := observed(t, p, tt.phase).Whole(p)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("not whole: %v", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("whole: %v, want %q", err, tt.want)
			}
		})
	}
	v := observed(t, plan(t, true, 1), "healthy")
	if l, ok := v.Leader(); !ok || l.Name != "euw3-pg2" || v.SyncStandby() != "euw3-pg1" {
		t.Errorf("leader %+v %v, sync standby %q; want euw3-pg2, euw3-pg1", l, ok, v.SyncStandby())
	}
	if m, ok := v.Member("euw1-pg1"); !ok || m.Role != patroni.RoleReplica {
		t.Errorf("euw1-pg1 %+v %v", m, ok)
	}
}
