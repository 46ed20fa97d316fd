package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/pgha/pgha/cluster"
)

// patroniConfig is the part of Patroni's YAML configuration pgha sets, in
// the order it is written. Reference:
// https://patroni.readthedocs.io/en/latest/yaml_configuration.html
type patroniConfig struct {
	Scope      string            `yaml:"scope"`
	Namespace  string            `yaml:"namespace"`
	Name       string            `yaml:"name"`
	RestAPI    patroniRestAPI    `yaml:"restapi"`
	Ctl        patroniCtl        `yaml:"ctl"`
	Etcd3      patroniEtcd3      `yaml:"etcd3"`
	Bootstrap  *patroniBootstrap `yaml:"bootstrap,omitempty"`
	Postgresql patroniPostgresql `yaml:"postgresql"`
	Watchdog   patroniWatchdog   `yaml:"watchdog"`
	Tags       patroniTags       `yaml:"tags"`
}

type patroniRestAPI struct {
	Listen         string `yaml:"listen"`
	ConnectAddress string `yaml:"connect_address"`
	Certfile       string `yaml:"certfile"`
	Keyfile        string `yaml:"keyfile"`
	// Authentication has no password: it is in PatroniSecretsConfig.
	Authentication          patroniUser `yaml:"authentication"`
	Allowlist               []string    `yaml:"allowlist"`
	AllowlistIncludeMembers bool        `yaml:"allowlist_include_members"`
}

// patroniCtl is how Patroni calls its peers' REST API (and patronictl on
// the node calls it): verifying them against the cluster CA. Patroni 4.0.7's
// PatroniRequest takes ctl.cacert, else restapi.cafile (which would also
// make the server ask clients for certificates), and the basic auth of
// ctl.authentication, else restapi's (patroni/request.py).
type patroniCtl struct {
	Cacert string `yaml:"cacert"`
}

// patroniEtcd3: Patroni's own etcd v3 client (patroni/dcs/etcd3.py) over
// TLS, with the node's certificate as its client certificate, which etcd
// requires (client-cert-auth).
type patroniEtcd3 struct {
	Protocol string   `yaml:"protocol"`
	Hosts    []string `yaml:"hosts"`
	Cacert   string   `yaml:"cacert"`
	Cert     string   `yaml:"cert"`
	Key      string   `yaml:"key"`
}

// patroniBootstrap is the static part of Patroni's bootstrap section; its
// dcs part is in BootstrapDCSFile.
type patroniBootstrap struct {
	Initdb        []any  `yaml:"initdb"`
	PostBootstrap string `yaml:"post_bootstrap"`
}

// DynamicConfig is Patroni's dynamic configuration as pgha sets it: what
// Patroni keeps in etcd (GET /config) and applies to every member. It is
// written to etcd when the cluster initialises (BootstrapDCSFile), and
// after that the health checker PATCHes /config whenever it differs (see
// healthcheck.ConfigStep): changing it never touches a node's user data.
// https://patroni.readthedocs.io/en/latest/dynamic_configuration.html
type DynamicConfig struct {
	TTL                  int   `json:"ttl"`
	LoopWait             int   `json:"loop_wait"`
	RetryTimeout         int   `json:"retry_timeout"`
	MaximumLagOnFailover int64 `json:"maximum_lag_on_failover"`
	// SynchronousMode is true, false or "quorum" (Patroni 4's quorum
	// commit).
	SynchronousMode       any                     `json:"synchronous_mode"`
	SynchronousModeStrict bool                    `json:"synchronous_mode_strict"`
	SynchronousNodeCount  int                     `json:"synchronous_node_count"`
	FailsafeMode          bool                    `json:"failsafe_mode"`
	Postgresql            DynamicConfigPostgresql `json:"postgresql"`
}

// DynamicConfigPostgresql is the postgresql section of DynamicConfig.
type DynamicConfigPostgresql struct {
	UsePgRewind bool              `json:"use_pg_rewind"`
	UseSlots    bool              `json:"use_slots"`
	Parameters  map[string]string `json:"parameters"`
	// PgHba is pg_hba.conf, the same on every member: in the DCS, a node
	// added or removed changes it on every member online (Patroni reloads
	// PostgreSQL), not in every node's user data.
	PgHba []string `json:"pg_hba"`
}

// Dynamic returns the plan's DynamicConfig.
func Dynamic(p *cluster.Plan) DynamicConfig {
	c := p.Config
	return DynamicConfig{
		// Validated by cluster: loop_wait + 2*retry_timeout <= ttl, so a
		// leader cut off from etcd demotes itself (after retry_timeout)
		// before its leader key expires (ttl).
		TTL:                   c.Patroni.TTL,
		LoopWait:              c.Patroni.LoopWait,
		RetryTimeout:          c.Patroni.RetryTimeout,
		MaximumLagOnFailover:  c.Patroni.MaximumLagOnFailover,
		SynchronousMode:       synchronousMode(c.Patroni),
		SynchronousModeStrict: c.Patroni.SynchronousModeStrict,
		// Every replica by default, so that a region which loses its
		// primary region still holds a synchronous standby Patroni may
		// promote (see cluster.Patroni).
		SynchronousNodeCount: p.SynchronousNodeCount(),
		FailsafeMode:         c.Patroni.FailsafeMode,
		Postgresql: DynamicConfigPostgresql{
			// pg_rewind turns a failed old leader back into a replica
			// instead of a full re-clone (needs wal_log_hints or data
			// checksums; we have both).
			UsePgRewind: true,
			// Slots keep WAL on the leader until every replica has it.
			UseSlots: true,
			// Settings such as max_connections or wal_level must be the
			// same on every member, so they live in the DCS.
			Parameters: parameters(c),
			PgHba:      pgHba(p),
		},
	}
}

// synchronousMode is Patroni's synchronous_mode: "quorum" for quorum
// commit, else on or off.
// https://patroni.readthedocs.io/en/latest/replication_modes.html#quorum-commit-mode
func synchronousMode(p cluster.Patroni) any {
	if p.SynchronousMode && p.QuorumCommit {
		return "quorum"
	}
	return p.SynchronousMode
}

// parameters are the cluster's PostgreSQL settings: the user's (over
// pgha's defaults, see cluster.Default) and the WAL archive's, which the
// user may not set.
func parameters(c cluster.Config) map[string]string {
	out := maps.Clone(c.Postgres.Parameters)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, archiveParameters(c))
	return out
}

// initializes reports whether node n may initialise a new cluster: only the
// primary region's nodes, so that the first leader is where the app is. A
// member whose configuration has no bootstrap section never races for the
// initialize key; it waits for a leader and clones it (Patroni's
// Ha.bootstrap: "no initialize key and node is allowed to be primary and
// has 'bootstrap' section in a configuration file").
// https://github.com/patroni/patroni/blob/v4.0.7/patroni/ha.py
func initializes(p *cluster.Plan, n cluster.Node) bool {
	r, _ := p.Region(n.Region)
	return n.Role == cluster.RolePostgres && r.Primary
}

// BootstrapDCSFile renders PatroniBootstrapConfig: bootstrap.dcs, the
// DynamicConfig Patroni writes to etcd when it initialises the cluster
// (JSON, which is YAML). On EC2 it is not in the user data: the boot script
// copies it from the SSM parameter DynamicConfigParameter, so that a change
// of a tunable setting changes a parameter, not every node's user data.
func BootstrapDCSFile(p *cluster.Plan) (string, error) {
	b, err := json.Marshal(map[string]any{"bootstrap": map[string]any{"dcs": Dynamic(p)}})
	if err != nil {
		return "", fmt.Errorf("render bootstrap dcs: %w", err)
	}
	return "# " + Header + "\n" + string(b) + "\n", nil
}

type patroniPostgresql struct {
	Listen         string                 `yaml:"listen"`
	ConnectAddress string                 `yaml:"connect_address"`
	DataDir        string                 `yaml:"data_dir"`
	BinDir         string                 `yaml:"bin_dir"`
	Pgpass         string                 `yaml:"pgpass"`
	UseUnixSocket  bool                   `yaml:"use_unix_socket"`
	Authentication map[string]patroniUser `yaml:"authentication"`
	Parameters     map[string]string      `yaml:"parameters"`
	// CreateReplicaMethods: a new or rebuilt replica restores the newest
	// backup and the archived WAL after it, and streams only the rest
	// from the leader; pg_basebackup from the leader when there is no
	// backup yet or the restore fails.
	// https://patroni.readthedocs.io/en/latest/replica_bootstrap.html
	CreateReplicaMethods []string          `yaml:"create_replica_methods"`
	PgBackRest           patroniMethod     `yaml:"pgbackrest"`
	Basebackup           map[string]string `yaml:"basebackup"`
	// RecoveryConf: a replica that the leader's WAL has left behind
	// (past its slot and wal_keep_size) fetches it from the archive.
	RecoveryConf map[string]string `yaml:"recovery_conf"`
}

// patroniMethod is a replica creation method of Patroni's: a command run
// with no arguments (no_params), into the data directory as it is
// (keep_data: a delta restore reuses what is there).
type patroniMethod struct {
	Command  string `yaml:"command"`
	KeepData bool   `yaml:"keep_data"`
	NoParams bool   `yaml:"no_params"`
}

// patroniUser has no password field on purpose: the boot script writes
// the passwords to PatroniSecretsConfig, which Patroni merges over this
// file. Sslmode and Sslrootcert make Patroni's replication and pg_rewind
// connections verify the leader's certificate (verify-full: the CA and
// the leader's address), as primary_conninfo and pg_rewind's source.
type patroniUser struct {
	Username    string `yaml:"username"`
	Sslmode     string `yaml:"sslmode,omitempty"`
	Sslrootcert string `yaml:"sslrootcert,omitempty"`
}

type patroniWatchdog struct {
	Mode         string `yaml:"mode"`
	Device       string `yaml:"device"`
	SafetyMargin int    `yaml:"safety_margin"`
}

type patroniTags struct {
	FailoverPriority int `yaml:"failover_priority"`
}

// PatroniYAML renders the static part of Patroni's configuration
// (PatroniNodeConfig) for PostgreSQL node n: everything but the dynamic
// configuration, so it changes only with the node's identity and the
// cluster's topology.
func PatroniYAML(p *cluster.Plan, n cluster.Node) ([]byte, error) {
	if n.Role != cluster.RolePostgres {
		return nil, fmt.Errorf("render patroni.yml for %s: a %s node runs no Patroni", n.Name, n.Role)
	}
	c := p.Config
	pg := fmt.Sprintf("%s:%d", n.IP, cluster.PortPostgres)
	var etcdHosts []string
	for _, e := range p.ByRole(cluster.RoleEtcd) {
		etcdHosts = append(etcdHosts, fmt.Sprintf("%s:%d", e.IP, cluster.PortEtcdClient))
	}
	cfg := patroniConfig{
		Scope:     c.Name,
		Namespace: PatroniNamespace,
		Name:      n.Name,
		// HTTPS with the node's certificate. Anyone the security groups
		// let in may read (GET); the unsafe endpoints (POST /switchover,
		// /restart, /reinitialize, PATCH /config, ...) need the API user's
		// password and an address of a member or of the primary region's
		// checker subnets (its health checker applies the dynamic
		// configuration). Patroni answers 401 and 403.
		// https://patroni.readthedocs.io/en/latest/yaml_configuration.html#rest-api
		RestAPI: patroniRestAPI{
			Listen:                  fmt.Sprintf("%s:%d", n.IP, cluster.PortPatroni),
			ConnectAddress:          fmt.Sprintf("%s:%d", n.IP, cluster.PortPatroni),
			Certfile:                CertFile,
			Keyfile:                 KeyFile,
			Authentication:          patroniUser{Username: cluster.PatroniAPIUser},
			Allowlist:               APIAllowlist(p),
			AllowlistIncludeMembers: true,
		},
		Ctl:   patroniCtl{Cacert: CAFile},
		Etcd3: patroniEtcd3{Protocol: "https", Hosts: etcdHosts, Cacert: CAFile, Cert: CertFile, Key: KeyFile},
		Bootstrap: &patroniBootstrap{
			// Checksums catch storage corruption; Patroni passes these to
			// initdb as --encoding=UTF8 --locale=C.UTF-8 --data-checksums.
			// C.UTF-8 is built into glibc, so EC2 and a minbase root agree.
			Initdb:        []any{map[string]string{"encoding": "UTF8"}, map[string]string{"locale": "C.UTF-8"}, "data-checksums"},
			PostBootstrap: PostBootstrapScript,
		},
		Postgresql: patroniPostgresql{
			// 127.0.0.1 too, so that psql -h 127.0.0.1 works on the node.
			Listen:         fmt.Sprintf("%s,127.0.0.1:%d", n.IP, cluster.PortPostgres),
			ConnectAddress: pg,
			DataDir:        DataDir,
			BinDir:         BinDir,
			Pgpass:         PgpassFile,
			// Patroni's own connections go through the socket, where the
			// superuser is authenticated by peer (no password needed);
			// otherwise it would pick "localhost", which may be ::1.
			UseUnixSocket: true,
			Authentication: map[string]patroniUser{
				"superuser":   {Username: cluster.SuperUser, Sslmode: "verify-full", Sslrootcert: CAFile},
				"replication": {Username: cluster.ReplicationUser, Sslmode: "verify-full", Sslrootcert: CAFile},
				// No rewind user: Patroni uses the superuser for pg_rewind.
			},
			Parameters: map[string]string{
				"unix_socket_directories": SocketDir,
				// TLS 1.3 only, with the node's certificate; pg_hba.conf
				// accepts remote connections only over it (hostssl).
				// https://www.postgresql.org/docs/17/ssl-tcp.html
				"ssl":                      "on",
				"ssl_cert_file":            CertFile,
				"ssl_key_file":             KeyFile,
				"ssl_min_protocol_version": "TLSv1.3",
				"logging_collector":        "on",
				"log_directory":            LogDir,
				// One file per weekday, overwritten a week later.
				"log_filename":             "postgresql-%a.log",
				"log_truncate_on_rotation": "on",
				"log_rotation_age":         "1d",
			},
			// A fast checkpoint lets the leader start the base backup at
			// once: a replica's clone took 1.3 s instead of 6.5 s in the
			// probe (shared/notes/probe-patroni.md).
			Basebackup:           map[string]string{"checkpoint": "fast"},
			CreateReplicaMethods: []string{"pgbackrest", "basebackup"},
			PgBackRest:           patroniMethod{Command: PgBackRest(c) + " --type=standby restore", KeepData: true, NoParams: true},
			RecoveryConf:         map[string]string{"restore_command": RestoreCommand(c)},
		},
		// Patroni resets the watchdog every loop; if Patroni hangs while
		// leader, the kernel reboots the node before ttl expires (timeout =
		// ttl - safety_margin), so two primaries cannot coexist. Automatic:
		// run without it where /dev/watchdog is missing (the local cluster).
		// https://patroni.readthedocs.io/en/latest/watchdog.html
		Watchdog: patroniWatchdog{Mode: "automatic", Device: "/dev/watchdog", SafetyMargin: 5},
		// failover_priority (Patroni >= 3.2): among equally up-to-date
		// replicas, prefer those of the primary region; 0 would mean never
		// leader. It replaces nofailover: Patroni 4's --validate-config
		// rejects the two together.
		Tags: patroniTags{FailoverPriority: n.Priority},
	}
	if !initializes(p, n) {
		cfg.Bootstrap = nil
	}
	var buf bytes.Buffer
	buf.WriteString("# " + Header + "\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("render patroni.yml for %s: %w", n.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render patroni.yml for %s: %w", n.Name, err)
	}
	return buf.Bytes(), nil
}

// pgHba returns pg_hba.conf's lines. The first matching line decides, so the
// order matters. Every network login uses scram-sha-256, and only addresses
// of the cluster's own VPCs and the node itself can log in at all; from
// another host only over TLS (hostssl), on the node itself (127.0.0.1)
// also without.
// https://www.postgresql.org/docs/17/auth-pg-hba-conf.html
func pgHba(p *cluster.Plan) []string {
	const line = "%-7s %-11s %-11s %-18s %s"
	su, repl := cluster.SuperUser, cluster.ReplicationUser
	out := []string{
		// Operators: sudo -u postgres psql. Patroni itself connects here too.
		fmt.Sprintf(line, "local", "all", su, "", "peer"),
		fmt.Sprintf(line, "host", "all", su, "127.0.0.1/32", "scram-sha-256"),
		fmt.Sprintf(line, "host", "replication", repl, "127.0.0.1/32", "scram-sha-256"),
	}
	// The superuser (pg_rewind) and the replication user (streaming,
	// pg_basebackup) only from the other PostgreSQL nodes.
	for _, n := range p.ByRole(cluster.RolePostgres) {
		host := netip.PrefixFrom(n.IP, 32).String()
		out = append(out,
			fmt.Sprintf(line, "hostssl", "all", su, host, "scram-sha-256"),
			fmt.Sprintf(line, "hostssl", "replication", repl, host, "scram-sha-256"))
	}
	out = append(out,
		fmt.Sprintf(line, "host", "all", su, "all", "reject"),
		fmt.Sprintf(line, "host", "all", "all", "127.0.0.1/32", "scram-sha-256"))
	// Everyone else (app, health checker) from the cluster's VPCs.
	cidrs := p.CIDRs()
	slices.SortFunc(cidrs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	for _, c := range cidrs {
		out = append(out, fmt.Sprintf(line, "hostssl", "all", "all", c.String(), "scram-sha-256"))
	}
	for i, l := range out {
		out[i] = trimRight(l)
	}
	return out
}

func trimRight(s string) string {
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	return s
}

// APIAllowlist is where Patroni's unsafe REST endpoints may be called
// from: every PostgreSQL node, and the primary region's checker subnets,
// which hold its health checker alone (the only client that PATCHes
// /config, restarts members and switches over). The members are listed
// themselves, not only through allowlist_include_members: Patroni 4.0.7
// checks POST /failsafe, which the leader sends every member while etcd
// has no quorum, against the allowlist alone
// (@check_access(allowlist_check_members=False), patroni/api.py); without
// them failsafe mode fails and the leader demotes itself. Operators call
// the endpoints on a node (patronictl there).
func APIAllowlist(p *cluster.Plan) []string {
	var out []string
	for _, n := range p.ByRole(cluster.RolePostgres) {
		out = append(out, netip.PrefixFrom(n.IP, 32).String())
	}
	for _, s := range p.Primary().CheckerSubnets {
		out = append(out, s.String())
	}
	return out
}

// PatroniSecretsConfig is the part of Patroni's configuration that holds
// passwords (superuser, replication, REST API), written at boot from
// Secrets Manager, readable only by postgres. Patroni merges it over
// PatroniNodeConfig, so that no password is in any process's environment.
const PatroniSecretsConfig = PatroniConfig + "/30-secrets.yml"

// patroniSecretsFormat is PatroniSecretsConfig as a printf format, the same
// for bash's printf and Go's fmt (%s, and \n for a newline): the boot
// script fills in the header and the superuser, replication and REST API
// passwords (single-quoted YAML: the boot accepts no quote in a password).
const patroniSecretsFormat = `# %s\npostgresql:\n  authentication:\n    superuser:\n      password: '%s'\n    replication:\n      password: '%s'\nrestapi:\n  authentication:\n    password: '%s'\n`

var postBootstrapTmpl = parse("templates/post-bootstrap.sh")

// PostBootstrap renders PostBootstrapScript, which Patroni runs once, on the
// node that initialises the cluster, with a superuser connection URL as $1.
// Patroni 4 removed bootstrap.users, so the app and health roles are
// created here.
func PostBootstrap(p *cluster.Plan) (string, error) {
	var buf bytes.Buffer
	err := postBootstrapTmpl.Execute(&buf, map[string]any{
		"Header":       Header,
		"Region":       p.Primary().Name,
		"AppSecret":    p.Config.SecretName(cluster.SecretApp),
		"HealthSecret": p.Config.SecretName(cluster.SecretHealth),
		"Psql":         BinDir + "/psql",
		"AppUser":      cluster.AppUser,
		"HealthUser":   cluster.HealthUser,
		"Database":     p.Config.App.Database,
	})
	if err != nil {
		return "", fmt.Errorf("render post-bootstrap: %w", err)
	}
	return buf.String(), nil
}
