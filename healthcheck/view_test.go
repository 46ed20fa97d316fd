package healthcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/patroni"
)

func TestReconcileCapturedHealthy(t *testing.T) {
	var probes []Probe
	for _, m := range defaultMembers {
		probes = append(probes, capturedProbe(t, "healthy", m))
	}
	v := Reconcile(probes)
	if v.Leader == nil || *v.Leader != (Leader{Name: "pg2", Region: "eu-west-3", Timeline: 1, State: "running", Confirmed: true, Ready: true}) {
		t.Fatalf("leader %+v", v.Leader)
	}
	if got := v.Healthy(); got != 3 {
		t.Errorf("healthy %d, want 3", got)
	}
	if got := v.StreamingReplicas(); got != 2 {
		t.Errorf("streaming %d, want 2", got)
	}
	if got := v.MaxLagBytes(); got != 0 {
		t.Errorf("max lag %d, want 0", got)
	}
	if len(v.Unreachable) != 0 || len(v.Notes) != 0 {
		t.Errorf("unreachable %v, notes %v", v.Unreachable, v.Notes)
	}
	roles := []string{v.Members[0].Role, v.Members[1].Role, v.Members[2].Role}
	if !slices.Equal(roles, []string{"sync_standby", "leader", "replica"}) {
		t.Errorf("roles %v", roles)
	}
}

func TestReconcile(t *testing.T) {
	healthy := func(t *testing.T) []Probe {
		var probes []Probe
		for _, m := range defaultMembers {
			probes = append(probes, capturedProbe(t, "healthy", m))
		}
		return probes
	}
	down := func(p Probe) Probe {
		return Probe{Member: p.Member, Err: errors.New("dial tcp: i/o timeout")}
	}
	tests := []struct {
		name      string
		probes    func(t *testing.T) []Probe
		leader    string
		confirmed bool
		unreach   []string
		healthy   int
		streaming int
		maxLag    int64
		notes     int
	}{
		{
			name:   "leader does not answer: named by the others, not confirmed",
			probes: func(t *testing.T) []Probe { p := healthy(t); p[1] = down(p[1]); return p },
			leader: "pg2", confirmed: false, unreach: []string{"pg2"}, healthy: 2, streaming: 2,
		},
		{
			name:   "replicas down: leader alone",
			probes: func(t *testing.T) []Probe { p := healthy(t); p[0], p[2] = down(p[0]), down(p[2]); return p },
			leader: "pg2", confirmed: true, unreach: []string{"pg1", "pg3"}, healthy: 1,
			// The leader's DCS view still says they stream until their keys expire.
			streaming: 2,
		},
		{
			name: "nobody answers",
			probes: func(t *testing.T) []Probe {
				p := healthy(t)
				for i := range p {
					p[i] = down(p[i])
				}
				return p
			},
			unreach: []string{"pg1", "pg2", "pg3"},
		},
		{
			name: "lag reported by the DCS",
			probes: func(t *testing.T) []Probe {
				p := healthy(t)
				for i := range p {
					p[i].Cluster.Members = slices.Clone(p[i].Cluster.Members)
					p[i].Cluster.Members[2].Lag = patroni.Lag{Bytes: 32 << 20}
				}
				return p
			},
			leader: "pg2", confirmed: true, healthy: 3, streaming: 2, maxLag: 32 << 20,
		},
		{
			name: "no leader key: nobody named, promotion pending",
			probes: func(t *testing.T) []Probe {
				p := healthy(t)
				for i := range p {
					p[i].Cluster.Members = slices.Clone(p[i].Cluster.Members)
					p[i].Cluster.Members[1].Role = "replica"
				}
				p[1].Patroni.Role = "replica"
				return p
			},
			healthy: 3, streaming: 2,
		},
		{
			name: "members disagree on the leader",
			probes: func(t *testing.T) []Probe {
				p := healthy(t)
				p[2].Cluster = &patroni.Cluster{Members: slices.Clone(p[2].Cluster.Members)}
				p[2].Cluster.Members[1].Role = "replica"
				p[2].Cluster.Members[2].Role = "leader"
				return p
			},
			leader: "pg2", confirmed: true, healthy: 3, streaming: 2, notes: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Reconcile(tt.probes(t))
			switch {
			case tt.leader == "" && v.Leader != nil:
				t.Errorf("leader %+v, want none", v.Leader)
			case tt.leader != "" && (v.Leader == nil || v.Leader.Name != tt.leader || v.Leader.Confirmed != tt.confirmed):
				t.Errorf("leader %+v, want %s confirmed=%v", v.Leader, tt.leader, tt.confirmed)
			}
			if !slices.Equal(v.Unreachable, tt.unreach) {
				t.Errorf("unreachable %v, want %v", v.Unreachable, tt.unreach)
			}
			if v.Healthy() != tt.healthy || v.StreamingReplicas() != tt.streaming || v.MaxLagBytes() != tt.maxLag {
				t.Errorf("healthy %d streaming %d lag %d, want %d %d %d", v.Healthy(), v.StreamingReplicas(), v.MaxLagBytes(), tt.healthy, tt.streaming, tt.maxLag)
			}
			if len(v.Notes) != tt.notes {
				t.Errorf("notes %q, want %d", v.Notes, tt.notes)
			}
		})
	}
}

// TestClusterReadyCaptured decides from the answers captured from the local
// cluster (Patroni 4.0.7) in each phase of TestLocalCluster, the write check
// taken as passing: only a confirmed, running leader makes it ready.
func TestClusterReadyCaptured(t *testing.T) {
	tests := []struct {
		state     string
		leader    string
		timeline  int64
		ready     bool
		reason    string
		unreach   []string
		healthy   int
		streaming int
	}{
		{"local-healthy", "pg3", 1, true, "leader pg3 (eu-west-1, timeline 1) accepts writes", nil, 3, 2},
		{"local-leader-killed", "pg3", 1, false, "leader pg3 holds the leader key but did not answer", []string{"pg3"}, 2, 0},
		{"local-failover", "pg2", 1, false, "leader pg2 does not yet run as primary (promotion in progress)", []string{"pg3"}, 2, 0},
		{"local-recovered", "pg2", 2, true, "leader pg2 (eu-west-3, timeline 2) accepts writes", []string{"pg3"}, 2, 1},
		{"local-old-leader-back", "pg2", 2, true, "leader pg2 (eu-west-3, timeline 2) accepts writes", nil, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			var probes []Probe
			for _, m := range defaultMembers {
				if _, err := os.Stat(filepath.Join(fixtures, tt.state, m.Name+"-patroni.json")); err != nil {
					probes = append(probes, Probe{Member: m, Err: errors.New("connect: connection refused")})
					continue
				}
				probes = append(probes, capturedProbe(t, tt.state, m))
			}
			v := Reconcile(probes)
			ready, reason := ClusterReady(v, v.Leader.Running(), "")
			if ready != tt.ready || !strings.Contains(reason, tt.reason) {
				t.Errorf("ready %v %q, want %v %q", ready, reason, tt.ready, tt.reason)
			}
			if v.Leader == nil || v.Leader.Name != tt.leader || v.Leader.Timeline != tt.timeline {
				t.Errorf("leader %+v, want %s on timeline %d", v.Leader, tt.leader, tt.timeline)
			}
			if !slices.Equal(v.Unreachable, tt.unreach) || v.Healthy() != tt.healthy || v.StreamingReplicas() != tt.streaming {
				t.Errorf("unreachable %v healthy %d streaming %d, want %v %d %d", v.Unreachable, v.Healthy(), v.StreamingReplicas(), tt.unreach, tt.healthy, tt.streaming)
			}
		})
	}
}

// TestPrimaries counts the members that say themselves they run as the
// primary, on the answers captured in each phase, and on the healthy
// answers with a replica that says it is primary too: a split brain.
func TestPrimaries(t *testing.T) {
	captured := func(state string) func(t *testing.T) []Probe {
		return func(t *testing.T) []Probe {
			var probes []Probe
			for _, m := range defaultMembers {
				if _, err := os.Stat(filepath.Join(fixtures, state, m.Name+"-patroni.json")); err != nil {
					probes = append(probes, Probe{Member: m, Err: errors.New("connect: connection refused")})
					continue
				}
				probes = append(probes, capturedProbe(t, state, m))
			}
			return probes
		}
	}
	tests := []struct {
		name      string
		probes    func(t *testing.T) []Probe
		primaries []string
		note      string // substring of a note, "" for none
	}{
		{"healthy", captured("healthy"), []string{"pg2"}, ""},
		{"leader killed", captured("local-leader-killed"), nil, ""},
		{"failover under way", captured("local-failover"), nil, ""},
		{"recovered", captured("local-recovered"), []string{"pg2"}, ""},
		{"split brain: a replica says it is primary too", func(t *testing.T) []Probe {
			p := captured("healthy")(t)
			p[0].Patroni.Role = patroni.RolePrimary
			return p
		}, []string{"pg1", "pg2"}, "more than one member says it is primary: [pg1 pg2]"},
		{"the only primary is not the DCS leader", func(t *testing.T) []Probe {
			p := captured("healthy")(t)
			p[0].Patroni.Role = patroni.RolePrimary
			p[1].Patroni.Role = patroni.RoleReplica
			return p
		}, []string{"pg1"}, "pg1 says it is primary but the DCS names pg2 leader"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Reconcile(tt.probes(t))
			if !slices.Equal(v.Primaries, tt.primaries) {
				t.Errorf("primaries %v, want %v", v.Primaries, tt.primaries)
			}
			notes := strings.Join(v.Notes, "; ")
			if (tt.note == "") != (notes == "") || !strings.Contains(notes, tt.note) {
				t.Errorf("notes %q, want %q", notes, tt.note)
			}
		})
	}
}

// TestSplitBrainMetric checks the whole check on the healthy answers with
// pg1 also saying it is primary: the decision still follows the DCS leader
// pg2 (its writes work), and the Primaries metric, which the split-brain
// alarm watches, is 2.
func TestSplitBrainMetric(t *testing.T) {
	var probes []Probe
	for _, m := range defaultMembers {
		probes = append(probes, capturedProbe(t, "healthy", m))
	}
	probes[0].Patroni.Role = patroni.RolePrimary
	o := Observation{View: Reconcile(probes), WriteChecked: true}
	r := Report{Observation: o, Decision: Decide(o, time.Now(), time.Minute)}
	if !r.Decision.Ready || !strings.Contains(r.Decision.Reason, "leader pg2 ") {
		t.Errorf("decision %+v, want ready with leader pg2", r.Decision)
	}
	var b bytes.Buffer
	if err := WriteEMF(&b, "pgha", "eu-west-3", r); err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := json.Unmarshal(b.Bytes(), &values); err != nil {
		t.Fatal(err)
	}
	if values[MetricPrimaries] != 2.0 || values[MetricLeaderPresent] != 1.0 {
		t.Errorf("%s = %v, %s = %v; want 2, 1", MetricPrimaries, values[MetricPrimaries], MetricLeaderPresent, values[MetricLeaderPresent])
	}
	var line bytes.Buffer
	r.Log(context.Background(), slog.New(slog.NewJSONHandler(&line, nil)))
	if !strings.Contains(line.String(), `"primaries":["pg1","pg2"]`) {
		t.Errorf("log line %s, want the primaries", line.String())
	}
}
