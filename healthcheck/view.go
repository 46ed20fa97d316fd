package healthcheck

import (
	"fmt"
	"slices"
	"sort"

	"github.com/pgha/pgha/internal/patroni"
)

// View is the cluster as the members' answers describe it, reconciled.
type View struct {
	// Leader is the member the DCS names leader, or nil when there is none.
	Leader *Leader `json:"leader,omitempty"`
	// Members are the plan's PostgreSQL nodes in plan order, followed by
	// any member the DCS knows that the plan does not.
	Members []MemberState `json:"members"`
	// Unreachable are the members whose REST API did not answer.
	Unreachable []string `json:"unreachable,omitempty"`
	// Primaries are the members whose own GET /patroni says they run as
	// the primary (patroni.Status.RunsAsPrimary), in plan order: one in a
	// healthy cluster, none while a failover is under way; more than one
	// is a split brain, two primaries taking writes.
	Primaries []string `json:"primaries,omitempty"`
	// Notes are disagreements between answers worth a look (two members
	// naming different leaders, two members saying they are primary).
	Notes []string `json:"notes,omitempty"`
}

// Leader is the member holding the leader key.
type Leader struct {
	Name     string `json:"name"`
	Region   string `json:"region"`
	Timeline int64  `json:"timeline"`
	// State is the leader's PostgreSQL state in the DCS ("running").
	State string `json:"state"`
	// Confirmed is true when the leader answered itself that it runs as
	// the primary; false while it is dead or still being promoted.
	Confirmed bool `json:"confirmed"`
	// Ready is patroni.Ready of the leader: running in the DCS and
	// confirmed.
	Ready bool `json:"ready"`
}

// Running reports whether there is a leader and it is ready (patroni.Ready).
func (l *Leader) Running() bool { return l != nil && l.Ready }

// MemberState is one member in the View.
type MemberState struct {
	Name   string `json:"name"`
	Region string `json:"region,omitempty"`
	// Answered is true when its REST API answered GET /patroni.
	Answered bool `json:"answered"`
	// Error is why it did not answer.
	Error string `json:"error,omitempty"`
	// Role is the DCS role (leader, sync_standby, replica) or, for a member
	// the DCS does not list, its own.
	Role string `json:"role,omitempty"`
	// State is its own PostgreSQL state when it answered, else the DCS's.
	State string `json:"state,omitempty"`
	// Streaming is true for a replica whose WAL receiver streams.
	Streaming bool  `json:"streaming"`
	Timeline  int64 `json:"timeline,omitempty"`
	// LagBytes is how far it is behind the leader; -1 when unknown, 0 for
	// the leader.
	LagBytes int64 `json:"lagBytes"`
}

// Healthy reports whether the member answered and its PostgreSQL runs.
func (m MemberState) Healthy() bool {
	return m.Answered && (m.State == patroni.StateRunning || m.State == patroni.StateStreaming)
}

// Healthy is the number of healthy members.
func (v View) Healthy() int {
	n := 0
	for _, m := range v.Members {
		if m.Healthy() {
			n++
		}
	}
	return n
}

// StreamingReplicas is the number of replicas streaming from the leader.
func (v View) StreamingReplicas() int {
	n := 0
	for _, m := range v.Members {
		if m.Streaming && (v.Leader == nil || m.Name != v.Leader.Name) {
			n++
		}
	}
	return n
}

// MaxLagBytes is the largest known replication lag of any replica, 0 when
// none is known.
func (v View) MaxLagBytes() int64 {
	var max int64
	for _, m := range v.Members {
		if m.LagBytes > max {
			max = m.LagBytes
		}
	}
	return max
}

// Reconcile turns the probes of every member into one View. It is pure.
//
// The leader is the member most answers' DCS view names leader
// (patroni.Member.HoldsLeaderKey; ties go to the earlier member in plan
// order). Its State is the one a view naming it leader gives it (its own
// view first); it is confirmed only when its own GET /patroni says it is a
// running primary, so a leader that has just died (its key not yet
// expired) or is still being promoted is not confirmed, and it is ready
// as patroni.Ready has it. Lag and DCS roles come from the leader's own
// /cluster answer when it gave one, else from the first member that
// answered.
func Reconcile(probes []Probe) View {
	var v View
	votes := map[string]int{}
	// named is each member named leader as a view naming it lists it.
	named := map[string]patroni.Member{}
	var order []string
	var dcs *patroni.Cluster
	for _, p := range probes {
		if p.Cluster == nil {
			continue
		}
		if dcs == nil {
			dcs = p.Cluster
		}
		for _, cm := range p.Cluster.LeaderKeyHolders() {
			if votes[cm.Name] == 0 {
				order = append(order, cm.Name)
			}
			votes[cm.Name]++
			if _, ok := named[cm.Name]; !ok || p.Member.Name == cm.Name {
				named[cm.Name] = cm
			}
		}
	}
	leaderName := ""
	for _, name := range order {
		if votes[name] > votes[leaderName] {
			leaderName = name
		}
	}
	if len(order) > 1 {
		v.Notes = append(v.Notes, fmt.Sprintf("members disagree on the leader: %s", describeVotes(order, votes)))
	}
	// Prefer the leader's own DCS view for roles and lag.
	for _, p := range probes {
		if p.Member.Name == leaderName && p.Cluster != nil {
			dcs = p.Cluster
		}
	}

	byName := map[string]patroni.Member{}
	if dcs != nil {
		for _, cm := range dcs.Members {
			byName[cm.Name] = cm
		}
	}
	seen := map[string]bool{}
	for _, p := range probes {
		seen[p.Member.Name] = true
		ms := MemberState{Name: p.Member.Name, Region: p.Member.Region, LagBytes: -1}
		cm, inDCS := byName[p.Member.Name]
		if inDCS {
			ms.Role, ms.State, ms.Timeline = cm.Role, cm.State, cm.Timeline
			ms.Streaming = cm.Streaming()
			if !cm.Lag.Unknown {
				ms.LagBytes = cm.Lag.Bytes
			}
		}
		if st := p.Patroni; st != nil {
			ms.Answered = true
			ms.State = st.State
			if st.Timeline != 0 {
				ms.Timeline = st.Timeline
			}
			if !inDCS {
				ms.Role = st.Role
			}
			ms.Streaming = st.Streaming()
			if st.RunsAsPrimary() {
				v.Primaries = append(v.Primaries, p.Member.Name)
			}
		} else {
			v.Unreachable = append(v.Unreachable, p.Member.Name)
			if p.Err != nil {
				ms.Error = p.Err.Error()
			} else {
				ms.Error = "no answer"
			}
		}
		if p.Member.Name == leaderName {
			ms.LagBytes = 0
			ms.Streaming = false
			lm := named[leaderName]
			v.Leader = &Leader{
				Name: leaderName, Region: p.Member.Region, Timeline: ms.Timeline, State: lm.State,
				Confirmed: p.Patroni.RunsAsPrimary(), Ready: patroni.Ready(lm, p.Patroni),
			}
		}
		v.Members = append(v.Members, ms)
	}
	// Members the DCS lists that the plan does not.
	if dcs != nil {
		var extra []patroni.Member
		for _, cm := range dcs.Members {
			if !seen[cm.Name] {
				extra = append(extra, cm)
			}
		}
		sort.Slice(extra, func(i, j int) bool { return extra[i].Name < extra[j].Name })
		for _, cm := range extra {
			ms := MemberState{Name: cm.Name, Role: cm.Role, State: cm.State, Timeline: cm.Timeline, LagBytes: -1, Streaming: cm.Streaming()}
			if !cm.Lag.Unknown {
				ms.LagBytes = cm.Lag.Bytes
			}
			v.Members = append(v.Members, ms)
			v.Notes = append(v.Notes, fmt.Sprintf("member %s is in the DCS but not in the plan", cm.Name))
			if cm.Name == leaderName {
				// Not in the plan, so not asked: neither confirmed nor ready.
				v.Leader = &Leader{Name: cm.Name, Timeline: cm.Timeline, State: named[cm.Name].State}
			}
		}
	}
	if len(v.Primaries) > 1 {
		v.Notes = append(v.Notes, fmt.Sprintf("more than one member says it is primary: %v", v.Primaries))
	}
	if v.Leader != nil && !slices.Contains(v.Primaries, v.Leader.Name) && len(v.Primaries) == 1 {
		v.Notes = append(v.Notes, fmt.Sprintf("%s says it is primary but the DCS names %s leader", v.Primaries[0], v.Leader.Name))
	}
	return v
}

func describeVotes(order []string, votes map[string]int) string {
	s := ""
	for i, name := range order {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s by %d", name, votes[name])
	}
	return s
}
