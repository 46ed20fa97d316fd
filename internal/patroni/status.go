package patroni

// Roles a node gives itself in GET /patroni, besides RoleReplica and
// RoleStandbyLeader.
const (
	// RolePrimary: it runs the writable primary.
	RolePrimary = "primary"
	// RoleMaster is RolePrimary's name before Patroni 4.
	RoleMaster = "master"
	// RoleUninitialized: it has no data directory yet.
	RoleUninitialized = "uninitialized"
)

// Status is the body of GET /patroni: a node's own view of itself. Patroni
// answers 200 when PostgreSQL runs and 503 otherwise, with the same
// document.
type Status struct {
	// State is PostgreSQL's state: "running", "starting", "stopped",
	// "crashed", ...
	State string `json:"state"`
	// Role is RolePrimary (RoleMaster before Patroni 4), RoleReplica,
	// RoleStandbyLeader or RoleUninitialized.
	Role     string `json:"role"`
	Timeline int64  `json:"timeline"`
	XLog     struct {
		Location         int64 `json:"location"`          // primary
		ReceivedLocation int64 `json:"received_location"` // replica
		ReplayedLocation int64 `json:"replayed_location"` // replica
	} `json:"xlog"`
	// ReplicationState is a replica's WAL receiver state ("streaming",
	// "in archive recovery"), from Patroni 3.0.4.
	ReplicationState string `json:"replication_state"`
	// Replication are the primary's WAL senders (pg_stat_replication).
	Replication []struct {
		ApplicationName string `json:"application_name"`
		State           string `json:"state"`
		SyncState       string `json:"sync_state"`
	} `json:"replication"`
	ServerVersion int64 `json:"server_version"`
	Patroni       struct {
		Version string `json:"version"`
		Scope   string `json:"scope"`
		Name    string `json:"name"`
	} `json:"patroni"`
	Pause bool `json:"pause"`
	// PendingRestart is true when a changed setting waits for PostgreSQL
	// to restart.
	PendingRestart bool `json:"pending_restart"`
	// DCSLastSeen is when the node last reached the DCS, in Unix seconds.
	DCSLastSeen int64 `json:"dcs_last_seen"`
	// FailsafeModeIsActive is true while the leader keeps running without
	// the DCS because every member answered it (failsafe_mode).
	FailsafeModeIsActive bool `json:"failsafe_mode_is_active"`
}

// RunsAsPrimary reports whether the node says itself that it runs the
// writable primary: state "running" and role "primary" (or "master"). A nil
// Status, a node that did not answer, does not.
func (s *Status) RunsAsPrimary() bool {
	return s != nil && s.State == StateRunning && (s.Role == RolePrimary || s.Role == RoleMaster)
}

// Streaming reports whether the node says itself that its WAL receiver
// streams: state "running" and replication_state "streaming". A nil Status
// does not.
func (s *Status) Streaming() bool {
	return s != nil && s.State == StateRunning && s.ReplicationState == StateStreaming
}

// Ready reports whether leader is ready as the health checker means it
// (which then still tries a write through HAProxy): leader holds the
// leader key and runs (Member.LeaderRunning), and own, its own answer to
// GET /patroni (nil when it gave none), says it runs as the primary
// (Status.RunsAsPrimary). A leader whose key outlives it (it does not
// answer) or that is still being promoted (it says "replica") is not
// ready.
func Ready(leader Member, own *Status) bool {
	return leader.LeaderRunning() && own.RunsAsPrimary()
}
