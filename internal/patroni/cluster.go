package patroni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Roles of a member in GET /cluster.
const (
	// RoleLeader holds the leader key and runs the writable primary.
	RoleLeader = "leader"
	// RoleStandbyLeader holds the leader key of a standby cluster: it
	// replicates from outside the cluster and is not writable.
	RoleStandbyLeader = "standby_leader"
	// RoleSyncStandby is a synchronous standby (synchronous_mode on).
	RoleSyncStandby = "sync_standby"
	// RoleQuorumStandby is a standby of quorum commit
	// (synchronous_mode: quorum, patroni.quorumCommit).
	RoleQuorumStandby = "quorum_standby"
	// RoleReplica is any other replica.
	RoleReplica = "replica"
)

// States of a member in GET /cluster (the leader's "running"; a replica's
// "streaming" while its WAL receiver streams, "running" otherwise) and in
// GET /patroni.
const (
	StateRunning   = "running"
	StateStreaming = "streaming"
	StateStarting  = "starting"
	StateStopped   = "stopped"
	StateCrashed   = "crashed"
)

// Cluster is the body of GET /cluster: the cluster as the DCS holds it, as
// the member that answered last read it.
type Cluster struct {
	Members []Member `json:"members"`
	Scope   string   `json:"scope,omitempty"`
	// Pause is true while the cluster is in maintenance mode.
	Pause bool `json:"pause,omitempty"`
}

// Member is one member in GET /cluster.
type Member struct {
	Name string `json:"name"`
	// Role is one of the Role constants.
	Role string `json:"role"`
	// State is "running" for the leader; "streaming", "running",
	// "starting", "stopped", "crashed", "creating replica", ... for the
	// others.
	State  string `json:"state"`
	APIURL string `json:"api_url,omitempty"`
	Host   string `json:"host,omitempty"`
	Port   int    `json:"port,omitempty"`
	// Timeline is the member's PostgreSQL timeline; 0 when Patroni lists
	// none (a replica that is starting).
	Timeline int64 `json:"timeline,omitempty"`
	// Lag is a replica's lag behind the leader; zero for the leader, for
	// which Patroni lists none.
	Lag Lag `json:"lag"`
}

// HoldsLeaderKey reports whether the member holds the leader key: its role
// is "leader" or "standby_leader". It may be dead, its key not yet
// expired, or still being promoted; see LeaderRunning and Ready.
func (m Member) HoldsLeaderKey() bool {
	return m.Role == RoleLeader || m.Role == RoleStandbyLeader
}

// LeaderRunning reports whether the member holds the leader key
// (HoldsLeaderKey) and its state is "running".
func (m Member) LeaderRunning() bool {
	return m.HoldsLeaderKey() && m.State == StateRunning
}

// Streaming reports whether the member's state is "streaming": its WAL
// receiver streams from the leader (or, for a standby leader, from outside
// the cluster).
func (m Member) Streaming() bool { return m.State == StateStreaming }

// SyncStandby reports whether the member's role is "sync_standby" or, in
// quorum commit, "quorum_standby" (one of the standbys a commit may wait
// for), whatever its state.
func (m Member) SyncStandby() bool { return m.Role == RoleSyncStandby || m.Role == RoleQuorumStandby }

// Member returns the member named name.
func (c Cluster) Member(name string) (Member, bool) {
	i := slices.IndexFunc(c.Members, func(m Member) bool { return m.Name == name })
	if i < 0 {
		return Member{}, false
	}
	return c.Members[i], true
}

// LeaderKeyHolders are the members holding the leader key
// (Member.HoldsLeaderKey), in the order listed: one, or none between a
// leader's loss and the next election. More than one is a view that
// disagrees with itself.
func (c Cluster) LeaderKeyHolders() []Member {
	return c.filter(Member.HoldsLeaderKey)
}

// LeaderKeyHolder returns the first member holding the leader key
// (Member.HoldsLeaderKey), running or not.
func (c Cluster) LeaderKeyHolder() (Member, bool) {
	return c.first(Member.HoldsLeaderKey)
}

// Leader returns the first member that holds the leader key and runs
// (Member.LeaderRunning).
func (c Cluster) Leader() (Member, bool) {
	return c.first(Member.LeaderRunning)
}

// SyncStandbys are the members whose role is "sync_standby" or
// "quorum_standby" (Member.SyncStandby), whatever their state.
func (c Cluster) SyncStandbys() []Member {
	return c.filter(Member.SyncStandby)
}

// SyncStandby returns the name of the first synchronous standby
// (Member.SyncStandby), or "" when there is none.
func (c Cluster) SyncStandby() string {
	m, _ := c.first(Member.SyncStandby)
	return m.Name
}

// StreamingReplicas are the members that do not hold the leader key and
// whose state is "streaming" (Member.Streaming).
func (c Cluster) StreamingReplicas() []Member {
	return c.filter(func(m Member) bool { return !m.HoldsLeaderKey() && m.Streaming() })
}

// Whole reports nil when the cluster is whole as the drills mean it, and
// otherwise what is missing:
//
//   - exactly one member holds the leader key (Member.HoldsLeaderKey), and
//     it runs (Member.LeaderRunning);
//   - every name in members other than the leader's is listed, streaming
//     (Member.Streaming) and on the leader's timeline;
//   - at least syncStandbys members are synchronous standbys
//     (SyncStandbys). In synchronous mode a commit is safe only once they
//     are chosen, and a replica that is not yet synchronous cannot be
//     promoted. Pass 0 outside synchronous mode.
func (c Cluster) Whole(members []string, syncStandbys int) error {
	holders := c.LeaderKeyHolders()
	if len(holders) != 1 {
		names := make([]string, len(holders))
		for i, m := range holders {
			names[i] = m.Name
		}
		return fmt.Errorf("%d leaders %v", len(holders), names)
	}
	leader := holders[0]
	if !leader.LeaderRunning() {
		return fmt.Errorf("leader %s not running", leader.Name)
	}
	var missing []string
	for _, name := range members {
		if name == leader.Name {
			continue
		}
		m, ok := c.Member(name)
		switch {
		case !ok:
			missing = append(missing, name+" not listed")
		case !m.Streaming():
			missing = append(missing, name+" "+m.State)
		case m.Timeline != leader.Timeline:
			missing = append(missing, fmt.Sprintf("%s on timeline %d, leader on %d", name, m.Timeline, leader.Timeline))
		}
	}
	if got := len(c.SyncStandbys()); got < syncStandbys {
		missing = append(missing, fmt.Sprintf("%d synchronous standbys of %d", got, syncStandbys))
	}
	if missing != nil {
		return errors.New(strings.Join(missing, ", "))
	}
	return nil
}

func (c Cluster) filter(keep func(Member) bool) []Member {
	var out []Member
	for _, m := range c.Members {
		if keep(m) {
			out = append(out, m)
		}
	}
	return out
}

func (c Cluster) first(match func(Member) bool) (Member, bool) {
	i := slices.IndexFunc(c.Members, match)
	if i < 0 {
		return Member{}, false
	}
	return c.Members[i], true
}

// Lag is a replica's replication lag in bytes, or Unknown: Patroni writes
// "unknown" when it has no position for the member, and nothing for the
// leader.
type Lag struct {
	Bytes   int64
	Unknown bool
}

// UnmarshalJSON accepts a number, a number in a string, "unknown" or null.
func (l *Lag) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) || len(b) == 0 {
		*l = Lag{Unknown: true}
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			*l = Lag{Bytes: n}
			return nil
		}
		*l = Lag{Unknown: true}
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("patroni lag %s: %w", b, err)
	}
	v, err := n.Int64()
	if err != nil {
		f, ferr := n.Float64()
		if ferr != nil {
			return fmt.Errorf("patroni lag %s: %w", b, err)
		}
		v = int64(f)
	}
	*l = Lag{Bytes: v}
	return nil
}

// MarshalJSON writes the lag as Patroni does.
func (l Lag) MarshalJSON() ([]byte, error) {
	if l.Unknown {
		return []byte(`"unknown"`), nil
	}
	return strconv.AppendInt(nil, l.Bytes, 10), nil
}
