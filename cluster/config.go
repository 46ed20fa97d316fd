package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ContextKey is the cdk.json context key that holds the configuration.
const ContextKey = "pgha"

// Ports fixed by the design (DESIGN.md).
const (
	PortPostgres     = 5432
	PortPatroni      = 8008
	PortEtcdClient   = 2379
	PortEtcdPeer     = 2380
	PortHAProxyWrite = 5000
	PortHAProxyRead  = 5001
	PortHAProxyStats = 7000
	PortApp          = 5000
	// PortPgBackRest is pgBackRest's TLS server on PostgreSQL nodes: a
	// backup taken on a standby reaches the leader through it.
	PortPgBackRest = 8432
)

// Database roles created by the cluster's bootstrap. Their passwords live in
// Secrets Manager (on AWS) or in root-only files (locally), never in config.
const (
	SuperUser       = "postgres"
	ReplicationUser = "replicator"
	AppUser         = "app"
	HealthUser      = "pgha_health"
)

// Config is the whole cluster as the user describes it under the `pgha`
// context key. Every field has a default (see Default); a key that is set
// replaces the default, except Postgres.Parameters, which is merged.
type Config struct {
	// Name is the cluster's name: Patroni's scope, the pgha:cluster tag and
	// the prefix of AWS resource names. Default: "pgha".
	Name string `json:"name"`
	// Regions are the data regions; the first is the primary region, whose
	// PostgreSQL nodes are preferred on failover. Default: eu-west-3
	// (10.11.0.0/16, 2 PostgreSQL, 2 etcd, 1 HAProxy, 1 app) and eu-west-1
	// (10.12.0.0/16, 1 PostgreSQL, 1 etcd, 1 HAProxy).
	Regions []Region `json:"regions"`
	// Witness is an optional third region holding one etcd member, so that
	// etcd keeps its quorum when either data region is lost. Default: none.
	Witness *Witness `json:"witness,omitempty"`
	// Instances sets EC2 instance types, architecture and volume sizes.
	Instances Instances `json:"instances"`
	// Postgres holds PostgreSQL settings.
	Postgres Postgres `json:"postgres"`
	// Patroni holds Patroni's timing and replication mode.
	Patroni Patroni `json:"patroni"`
	// Etcd holds etcd's Raft timing.
	Etcd Etcd `json:"etcd"`
	// App configures the hello API.
	App App `json:"app"`
	// HealthCheck configures the health-checking Lambda and its alarms.
	HealthCheck HealthCheck `json:"healthCheck"`
	// HAProxy configures the HAProxy nodes.
	HAProxy HAProxy `json:"haproxy"`
	// TLS configures the cluster's certificates.
	TLS TLS `json:"tls"`
	// Backup configures backups and the WAL archive.
	Backup Backup `json:"backup"`
}

// Backup configures pgBackRest's backups and WAL archive: one repository
// per data region, an S3 bucket, so that losing a region keeps the
// backups. Every backup goes to every repository, taken from a healthy
// standby when there is one; WAL is archived from the leader to every
// repository.
type Backup struct {
	// FullSchedule is when full backups run, in UTC: days and a time of
	// day, as in systemd's calendar events ("Sun 01:00", "Mon,Thu 02:30",
	// "Mon..Fri 23:00", or "03:00" for every day). Default: "Sun 01:00".
	FullSchedule string `json:"fullSchedule"`
	// DiffSchedule is when differential backups (what changed since the
	// last full one) run, in the same form; "" for none. Default:
	// "Mon..Sat 01:00".
	DiffSchedule string `json:"diffSchedule"`
	// RetentionDays is the point-in-time recovery window: any time in the
	// last RetentionDays days can be restored. pgBackRest keeps the full
	// backups (with their differentials and WAL) this needs and expires
	// the older ones; the buckets keep deleted objects as many days more.
	// Default: 14.
	RetentionDays int `json:"retentionDays"`
	// ArchiveTimeoutSeconds bounds how old the newest archived WAL can be
	// while the leader writes (PostgreSQL's archive_timeout): the most a
	// restore from the archive alone can miss. Default: 60.
	ArchiveTimeoutSeconds int `json:"archiveTimeoutSeconds"`
	// ArchiveAlarmMinutes raises the archive alarm when no WAL has been
	// archived for this long, or archiving fails. Default: 10.
	ArchiveAlarmMinutes int `json:"archiveAlarmMinutes"`
	// BackupAlarmHours raises the backup alarm when a repository's newest
	// backup is older than this. Default: 30 (a daily backup missed).
	BackupAlarmHours int `json:"backupAlarmHours"`
}

// HAProxy configures the HAProxy nodes.
type HAProxy struct {
	// ServerMaxConn is the most connections one HAProxy node opens to one
	// PostgreSQL node; more clients wait in HAProxy's queue. All HAProxy
	// nodes together must stay within max_connections less the reserved
	// slots, so that clients cannot use up the slots of the superuser, of
	// Patroni and of the health checker. Default: 40.
	ServerMaxConn int `json:"serverMaxConn"`
}

// TLS configures the cluster's certificates (see package pki).
type TLS struct {
	// Rotation is a counter: raising it makes the next deploy issue every
	// node certificate again, with new keys; the nodes install them within
	// a day, or at once with their tls-refresh script. Default: 0.
	Rotation int `json:"rotation"`
}

// Region is one data region and how many nodes of each role it runs.
type Region struct {
	// Name is the AWS region, e.g. "eu-west-3".
	Name string `json:"name"`
	// CIDR is the VPC's IPv4 range, a private /16 to /21.
	CIDR string `json:"cidr"`
	// AvailabilityZones are the three zones the VPC spans. Default: the
	// region name followed by a, b and c.
	AvailabilityZones []string `json:"availabilityZones,omitempty"`
	// Postgres is the number of PostgreSQL + Patroni nodes.
	Postgres int `json:"postgres"`
	// Etcd is the number of etcd members.
	Etcd int `json:"etcd"`
	// HAProxy is the number of HAProxy nodes.
	HAProxy int `json:"haproxy"`
	// App is the number of app instances.
	App int `json:"app"`
}

// Witness is a region that holds a single etcd member and nothing else.
type Witness struct {
	// Name is the AWS region, e.g. "eu-central-1".
	Name string `json:"name"`
	// CIDR is the VPC's IPv4 range, a private /16 to /21.
	CIDR string `json:"cidr"`
	// AvailabilityZones as in Region. Default: name + a, b, c.
	AvailabilityZones []string `json:"availabilityZones,omitempty"`
}

// Instances sets the EC2 side of the nodes.
type Instances struct {
	// Architecture is "arm64" or "x86_64" and must match the instance
	// types (Graviton families such as t4g are arm64). Default: "arm64".
	Architecture string `json:"architecture"`
	// Postgres is the PostgreSQL nodes' instance type. Default: "t4g.medium".
	Postgres string `json:"postgres"`
	// Etcd is the etcd nodes' instance type. Default: "t4g.small".
	Etcd string `json:"etcd"`
	// HAProxy is the HAProxy nodes' instance type. Default: "t4g.small".
	HAProxy string `json:"haproxy"`
	// App is the app instances' type. Default: "t4g.small".
	App string `json:"app"`
	// DataVolumeGiB is the size of each PostgreSQL node's data volume.
	// Default: 50.
	DataVolumeGiB int `json:"dataVolumeGiB"`
	// RootVolumeGiB is the size of every instance's root volume. Default: 16.
	RootVolumeGiB int `json:"rootVolumeGiB"`
	// Images pins the AMI per region ({"eu-west-3": "ami-..."}). A region
	// without one takes Debian 13's latest AMI from Debian's SSM public
	// parameter at each deploy — and a new image there means CloudFormation
	// replaces the instances, which their fixed IPs and termination
	// protection refuse: pin the images after the first deploy.
	// Default: none.
	Images map[string]string `json:"images,omitempty"`
}

// Postgres holds PostgreSQL settings.
type Postgres struct {
	// Parameters are postgresql.conf settings, merged over pgha's defaults
	// (see Default). Settings pgha manages itself (listen_addresses, port,
	// data_directory, hba_file, ...) are rejected.
	Parameters map[string]string `json:"parameters"`
}

// Patroni holds the settings that decide how fast and how safely Patroni
// fails over.
type Patroni struct {
	// TTL is the leader lock's time to live in seconds. Patroni 4 raises
	// anything below 20 to 20, so pgha rejects it instead. Default: 20.
	TTL int `json:"ttl"`
	// LoopWait is the seconds between Patroni's cycles. Default: 2.
	LoopWait int `json:"loopWait"`
	// RetryTimeout is the seconds Patroni retries etcd and PostgreSQL
	// before demoting. loop_wait + 2*retry_timeout must not exceed ttl, or
	// an isolated leader could still be writing after its lock expired.
	// Default: 9.
	RetryTimeout int `json:"retryTimeout"`
	// SynchronousMode makes every commit wait for one synchronous standby,
	// and lets Patroni promote only that standby: no acknowledged write is
	// lost on failover. Default: true.
	SynchronousMode bool `json:"synchronousMode"`
	// QuorumCommit makes synchronous mode quorum-based (Patroni 4's
	// synchronous_mode: quorum): each commit waits for any
	// SynchronousNodeCount of the standbys (synchronous_standby_names
	// "ANY n (...)"), and Patroni promotes a standby only when enough
	// of them answer to prove it holds every acknowledged write. With
	// synchronousNodeCount 1, a commit waits for the nearest standby
	// and a silent one costs no stall, but a region that loses the
	// primary region cannot take over by itself (the standby it
	// would promote may lack writes the other one acknowledged); the
	// README's trade-offs give the measured figures. Needs
	// synchronousMode. Default: false.
	QuorumCommit bool `json:"quorumCommit"`
	// SynchronousNodeCount is how many standbys confirm each commit
	// (Patroni's synchronous_node_count); 0 means every replica. Patroni
	// promotes only a synchronous standby, so a region can take over from
	// a lost primary region without losing a write only if it holds one:
	// with every replica synchronous, any survivor may take over, and
	// commits cost the round trip to the farthest replica. Patroni drops a
	// failed standby from the set (unless strict), blocking commits for
	// about a loop_wait. Default: 0 (every replica).
	SynchronousNodeCount int `json:"synchronousNodeCount"`
	// SynchronousModeStrict blocks writes when no standby is available
	// instead of falling back to asynchronous replication. Default: false.
	SynchronousModeStrict bool `json:"synchronousModeStrict"`
	// FailsafeMode keeps the leader running while etcd has no quorum, as
	// long as it can reach every other member. Default: true.
	FailsafeMode bool `json:"failsafeMode"`
	// MaximumLagOnFailover is the most a replica may lag, in bytes, to be
	// promoted. Default: 1048576.
	MaximumLagOnFailover int64 `json:"maximumLagOnFailover"`
}

// Etcd holds etcd's Raft timing. etcd's tuning guide sets the heartbeat
// near the largest round trip between members and the election timeout at
// about ten times that.
type Etcd struct {
	// HeartbeatIntervalMs is the Raft heartbeat in milliseconds. Default:
	// 200 (inter-region round trips in Europe are 10-30 ms, across
	// continents up to ~150 ms).
	HeartbeatIntervalMs int `json:"heartbeatIntervalMs"`
	// ElectionTimeoutMs is the Raft election timeout in milliseconds, at
	// least 5 times the heartbeat. Default: 2000.
	ElectionTimeoutMs int `json:"electionTimeoutMs"`
}

// App configures the hello API.
type App struct {
	// Database is the database the app uses; its owner is the app role.
	// Default: "hello".
	Database string `json:"database"`
	// AllowedCIDRs may reach the app's port 5000 from outside the VPCs.
	// Default: none (reach it through SSM port forwarding).
	AllowedCIDRs []string `json:"allowedCidrs"`
}

// HealthCheck configures the health-checking Lambda.
type HealthCheck struct {
	// LagAlarmBytes raises the lag alarm when a replica lags more than
	// this many bytes. Default: 16777216 (16 MiB).
	LagAlarmBytes int64 `json:"lagAlarmBytes"`
	// RestartBackoffMinutes is the least time between two restarts of the
	// same app instance. Default: 5.
	RestartBackoffMinutes int `json:"restartBackoffMinutes"`
	// LeaderAwayMinutes raises the leader-away alarm when the leader has
	// been outside the primary region this long (every commit then crosses
	// regions; a switchover brings it back). Default: 10.
	LeaderAwayMinutes int `json:"leaderAwayMinutes"`
	// VolumeAlarmPercent raises the volume alarm when a PostgreSQL node's
	// data volume is more than this percent full for 2 minutes: room to
	// grow the volume before writes fail. Default: 85.
	VolumeAlarmPercent int `json:"volumeAlarmPercent"`
}

// Default returns the configuration of the original design: two data
// regions and a dedicated three-member etcd cluster.
func Default() Config {
	return Config{
		Name: "pgha",
		Regions: []Region{
			{Name: "eu-west-3", CIDR: "10.11.0.0/16", Postgres: 2, Etcd: 2, HAProxy: 1, App: 1},
			{Name: "eu-west-1", CIDR: "10.12.0.0/16", Postgres: 1, Etcd: 1, HAProxy: 1},
		},
		Instances: Instances{
			Architecture:  "arm64",
			Postgres:      "t4g.medium",
			Etcd:          "t4g.small",
			HAProxy:       "t4g.small",
			App:           "t4g.small",
			DataVolumeGiB: 50,
			RootVolumeGiB: 16,
		},
		Postgres: Postgres{Parameters: map[string]string{
			"max_connections": "200",
			// Slots only superusers and roles granted
			// pg_use_reserved_connections (the health checker) may use,
			// so that clients cannot lock the health checker out.
			"reserved_connections":  "5",
			"shared_buffers":        "256MB",
			"password_encryption":   "scram-sha-256",
			"wal_level":             "replica",
			"wal_log_hints":         "on",
			"max_wal_senders":       "10",
			"max_replication_slots": "10",
			"wal_keep_size":         "1GB",
			"hot_standby":           "on",
			// A standby that stops answering (a region cut off, a host
			// frozen) keeps its walsender, and so its place among the
			// synchronous standbys every commit waits for, until this
			// much silence: the walsender then exits, and Patroni drops
			// the standby from synchronous_standby_names at its next
			// loop (loop_wait). PostgreSQL's default, 60 s, stalled every
			// write for 21-27 s (the member key's expiry came first); 3 s
			// bounds the stall at about 3 s + loop_wait, plus an etcd
			// election when the silent region held etcd's leader (4 s
			// stalled up to 7.9 s). The walsender asks for a reply after
			// half of it, which a live standby sends at once.
			// https://www.postgresql.org/docs/17/runtime-config-replication.html#GUC-WAL-SENDER-TIMEOUT
			"wal_sender_timeout": "3s",
		}},
		Patroni: Patroni{
			TTL:                  20,
			LoopWait:             2,
			RetryTimeout:         9,
			SynchronousMode:      true,
			FailsafeMode:         true,
			MaximumLagOnFailover: 1 << 20,
		},
		Etcd: Etcd{HeartbeatIntervalMs: 200, ElectionTimeoutMs: 2000},
		Backup: Backup{
			FullSchedule:          "Sun 01:00",
			DiffSchedule:          "Mon..Sat 01:00",
			RetentionDays:         14,
			ArchiveTimeoutSeconds: 60,
			ArchiveAlarmMinutes:   10,
			BackupAlarmHours:      30,
		},
		App:     App{Database: "hello"},
		HAProxy: HAProxy{ServerMaxConn: 40},
		HealthCheck: HealthCheck{
			LagAlarmBytes:         16 << 20,
			RestartBackoffMinutes: 5,
			LeaderAwayMinutes:     10,
			VolumeAlarmPercent:    85,
		},
	}
}

// Parse reads a configuration in JSON (the value of the `pgha` context key)
// over the defaults and validates it. Empty input, or "null", gives the
// defaults. Unknown keys are errors.
func Parse(data []byte) (Config, error) {
	c := Default()
	data = bytes.TrimSpace(data)
	if len(data) == 0 || string(data) == "null" {
		return c, c.Validate()
	}
	// Regions and witness replace the defaults whole when set.
	c.Regions = nil
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Config{}, fmt.Errorf("%s: unexpected data after the configuration object", ContextKey)
	}
	if c.Regions == nil {
		c.Regions = Default().Regions
	}
	return c, c.Validate()
}

// FromContext parses the value of the `pgha` context key as the CDK hands
// it over (already decoded from JSON, or nil when absent).
func FromContext(v any) (Config, error) {
	if v == nil {
		return Parse(nil)
	}
	if s, ok := v.(string); ok {
		return Parse([]byte(s))
	}
	data, err := json.Marshal(v)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", ContextKey, err)
	}
	return Parse(data)
}

func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return fmt.Errorf("%s.%s: got a JSON %s, want %s", ContextKey, typeErr.Field, typeErr.Value, typeErr.Type)
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("%s: invalid JSON at byte %d: %w", ContextKey, syntaxErr.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("%s: unknown key %s", ContextKey, strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return fmt.Errorf("%s: %w", ContextKey, err)
	}
}
