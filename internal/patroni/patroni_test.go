package patroni

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fixtures is where the answers recorded from Patroni 4.0.7 are (see
// testdata/README.md).
const fixtures = "testdata/patroni-4.0.7"

// members are the default cluster's PostgreSQL nodes, as the plan names
// them.
var members = []string{"pg1", "pg2", "pg3"}

// cluster decodes member's recorded GET /cluster in phase.
func cluster(t *testing.T, phase, member string) Cluster {
	t.Helper()
	var c Cluster
	decode(t, phase, member, "cluster", &c)
	return c
}

// status decodes member's recorded GET /patroni in phase, nil when it did
// not answer.
func status(t *testing.T, phase, member string) *Status {
	t.Helper()
	if _, err := os.Stat(filepath.Join(fixtures, phase, member+"-patroni.json")); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var s Status
	decode(t, phase, member, "patroni", &s)
	return &s
}

func decode(t *testing.T, phase, member, endpoint string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, phase, member+"-"+endpoint+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s %s %s: %v", phase, member, endpoint, err)
	}
}

func names(ms []Member) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// TestFixturesDecode decodes every recorded answer.
func TestFixturesDecode(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(fixtures, "*", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		phase := filepath.Base(filepath.Dir(f))
		member, endpoint, _ := strings.Cut(strings.TrimSuffix(filepath.Base(f), ".json"), "-")
		switch endpoint {
		case "cluster":
			if c := cluster(t, phase, member); len(c.Members) < 2 || c.Scope != "pgha" {
				t.Errorf("%s: %+v", f, c)
			}
		case "patroni":
			if s := status(t, phase, member); s.Patroni.Version != "4.0.7" || s.Patroni.Name != member || s.DCSLastSeen == 0 {
				t.Errorf("%s: %+v", f, s)
			}
		default:
			t.Errorf("%s: unknown endpoint %q", f, endpoint)
		}
	}
}

// TestClusterPredicates reads each phase's GET /cluster as one member
// answered it.
func TestClusterPredicates(t *testing.T) {
	tests := []struct {
		phase, from string
		holder      string // LeaderKeyHolder
		leader      string // Leader: holds the key and runs
		timeline    int64
		sync        string
		streaming   []string
	}{
		{"healthy", "pg2", "pg2", "pg2", 1, "pg1", []string{"pg1", "pg3"}},
		{"local-healthy", "pg1", "pg3", "pg3", 1, "pg2", []string{"pg1", "pg2"}},
		// The DCS still names the killed leader, running, until its key
		// expires.
		{"local-leader-killed", "pg1", "pg3", "pg3", 1, "pg2", []string{"pg1", "pg2"}},
		{"local-failover", "pg1", "pg2", "pg2", 1, "", []string{}},
		{"local-recovered", "pg2", "pg2", "pg2", 1, "", []string{}},
		{"local-old-leader-back", "pg3", "pg2", "pg2", 2, "pg1", []string{"pg1"}},
	}
	for _, tt := range tests {
		t.Run(tt.phase, func(t *testing.T) {
			c := cluster(t, tt.phase, tt.from)
			if h, ok := c.LeaderKeyHolder(); !ok || h.Name != tt.holder || !h.HoldsLeaderKey() {
				t.Errorf("leader key holder %+v %v, want %s", h, ok, tt.holder)
			}
			if l, ok := c.Leader(); !ok || l.Name != tt.leader || l.Timeline != tt.timeline || !l.LeaderRunning() {
				t.Errorf("leader %+v %v, want %s on timeline %d", l, ok, tt.leader, tt.timeline)
			}
			if got := c.SyncStandby(); got != tt.sync {
				t.Errorf("sync standby %q, want %q", got, tt.sync)
			}
			if got := names(c.StreamingReplicas()); !slices.Equal(got, tt.streaming) {
				t.Errorf("streaming replicas %v, want %v", got, tt.streaming)
			}
		})
	}
}

func TestLeaderKey(t *testing.T) {
	tests := []struct {
		name           string
		role, state    string
		holds, running bool
	}{
		{"leader running", RoleLeader, StateRunning, true, true},
		{"standby leader running", RoleStandbyLeader, StateRunning, true, true},
		{"standby leader streaming from outside", RoleStandbyLeader, StateStreaming, true, false},
		{"rejects a stopped leader", RoleLeader, StateStopped, true, false},
		{"rejects a sync standby", RoleSyncStandby, StateStreaming, false, false},
		{"rejects a replica", RoleReplica, StateRunning, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Member{Name: "pg1", Role: tt.role, State: tt.state}
			if m.HoldsLeaderKey() != tt.holds || m.LeaderRunning() != tt.running {
				t.Errorf("holds %v running %v, want %v %v", m.HoldsLeaderKey(), m.LeaderRunning(), tt.holds, tt.running)
			}
		})
	}
}

func TestWhole(t *testing.T) {
	edit := func(phase, from string, f func(c *Cluster)) func(t *testing.T) Cluster {
		return func(t *testing.T) Cluster {
			c := cluster(t, phase, from)
			if f != nil {
				f(&c)
			}
			return c
		}
	}
	set := func(name, role, state string) func(c *Cluster) {
		return func(c *Cluster) {
			for i := range c.Members {
				if c.Members[i].Name == name {
					c.Members[i].Role, c.Members[i].State = role, state
				}
			}
		}
	}
	tests := []struct {
		name    string
		cluster func(t *testing.T) Cluster
		sync    int
		want    string // "" when whole
	}{
		{"healthy", edit("healthy", "pg1", nil), 1, ""},
		{"healthy asynchronous", edit("healthy", "pg1", nil), 0, ""},
		{"led by a standby leader", edit("healthy", "pg1", set("pg2", RoleStandbyLeader, StateRunning)), 1, ""},
		{"the old leader's key not yet expired", edit("local-leader-killed", "pg2", nil), 1, ""},
		{"rejects a failover under way", edit("local-failover", "pg1", nil), 1, "pg1 running, pg3 not listed, 0 synchronous standbys of 1"},
		{"rejects a replica not yet streaming", edit("local-old-leader-back", "pg1", nil), 1, "pg3 starting"},
		{"rejects too few synchronous standbys", edit("healthy", "pg1", nil), 2, "1 synchronous standbys of 2"},
		{"rejects no leader", edit("healthy", "pg1", set("pg2", RoleReplica, StateRunning)), 1, "0 leaders []"},
		{"rejects two leaders", edit("healthy", "pg1", set("pg3", RoleLeader, StateRunning)), 1, "2 leaders [pg2 pg3]"},
		{"rejects a leader not running", edit("healthy", "pg1", set("pg2", RoleLeader, StateStopped)), 1, "leader pg2 not running"},
		{"rejects another timeline", edit("healthy", "pg1", func(c *Cluster) { c.Members[2].Timeline = 2 }), 1, "pg3 on timeline 2, leader on 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cluster(t).Whole(members, tt.sync)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("not whole: %v", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("whole: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestStatusPredicates(t *testing.T) {
	tests := []struct {
		phase, member      string
		primary, streaming bool
	}{
		{"healthy", "pg1", false, true},
		{"healthy", "pg2", true, false},
		{"healthy", "pg3", false, true},
		{"local-leader-killed", "pg3", false, false}, // did not answer
		{"local-failover", "pg2", false, false},      // leader key, still a replica
		{"local-recovered", "pg2", true, false},
		{"local-old-leader-back", "pg3", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.phase+"/"+tt.member, func(t *testing.T) {
			s := status(t, tt.phase, tt.member)
			if s.RunsAsPrimary() != tt.primary || s.Streaming() != tt.streaming {
				t.Errorf("primary %v streaming %v, want %v %v", s.RunsAsPrimary(), s.Streaming(), tt.primary, tt.streaming)
			}
		})
	}
	stopped := Status{State: StateStopped, Role: RolePrimary}
	master := Status{State: StateRunning, Role: RoleMaster}
	if stopped.RunsAsPrimary() || !master.RunsAsPrimary() {
		t.Errorf("stopped primary %v, running master %v", stopped.RunsAsPrimary(), master.RunsAsPrimary())
	}
}

// TestReady decides each phase as the health checker does: the leader key
// holder in a member's GET /cluster, and its own GET /patroni.
func TestReady(t *testing.T) {
	tests := []struct {
		phase, from string
		ready       bool
	}{
		{"healthy", "pg1", true},
		{"local-healthy", "pg1", true},
		{"local-leader-killed", "pg1", false}, // the leader does not answer
		{"local-failover", "pg1", false},      // the leader is still being promoted
		{"local-recovered", "pg1", true},
		{"local-old-leader-back", "pg3", true},
	}
	for _, tt := range tests {
		t.Run(tt.phase, func(t *testing.T) {
			leader, ok := cluster(t, tt.phase, tt.from).LeaderKeyHolder()
			if !ok {
				t.Fatal("no leader key holder")
			}
			if got := Ready(leader, status(t, tt.phase, leader.Name)); got != tt.ready {
				t.Errorf("ready %v, want %v", got, tt.ready)
			}
		})
	}
	t.Run("rejects a leader not running in the DCS", func(t *testing.T) {
		leader, _ := cluster(t, "healthy", "pg1").LeaderKeyHolder()
		leader.State = StateStopped
		if Ready(leader, status(t, "healthy", "pg2")) {
			t.Error("ready")
		}
	})
	t.Run("rejects a standby leader", func(t *testing.T) {
		leader := Member{Name: "pg2", Role: RoleStandbyLeader, State: StateRunning}
		if Ready(leader, &Status{State: StateRunning, Role: RoleStandbyLeader}) {
			t.Error("ready")
		}
	})
}

func TestLagJSON(t *testing.T) {
	for in, want := range map[string]Lag{`0`: {}, `1234`: {Bytes: 1234}, `"unknown"`: {Unknown: true}, `null`: {Unknown: true}, `"56"`: {Bytes: 56}, `1.5e3`: {Bytes: 1500}} {
		var l Lag
		if err := json.Unmarshal([]byte(in), &l); err != nil || l != want {
			t.Errorf("%s: %+v, %v; want %+v", in, l, err, want)
		}
	}
	c := cluster(t, "local-old-leader-back", "pg1")
	if m, _ := c.Member("pg3"); !m.Lag.Unknown {
		t.Errorf("pg3's lag %+v, want unknown", m.Lag)
	}
	if m, _ := c.Member("pg2"); m.Lag != (Lag{}) {
		t.Errorf("the leader's lag %+v, want zero", m.Lag)
	}
	b, err := json.Marshal(c.Members[2].Lag)
	if err != nil || string(b) != `"unknown"` {
		t.Errorf("marshal unknown lag: %s, %v", b, err)
	}
}
