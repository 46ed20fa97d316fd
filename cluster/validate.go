package cluster

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var (
	nameRE         = regexp.MustCompile(`^[a-z][a-z0-9-]{0,23}$`)
	regionRE       = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$`)
	instanceTypeRE = regexp.MustCompile(`^([a-z]+[0-9]+)([a-z-]*)\.[a-z0-9]+$`)
	parameterRE    = regexp.MustCompile(`^[a-z_][a-z0-9_.]*$`)
	databaseRE     = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	amiRE          = regexp.MustCompile(`^ami-([0-9a-f]{8}|[0-9a-f]{17})$`)
)

// managedParameters are PostgreSQL settings that pgha and Patroni set
// themselves; overriding them would break replication or the renderers.
var managedParameters = []string{
	"listen_addresses", "port", "data_directory", "hba_file", "ident_file",
	"config_file", "unix_socket_directories", "synchronous_standby_names",
	"primary_conninfo", "primary_slot_name", "restore_command",
	// The WAL archive (backup.archiveTimeoutSeconds sets archive_timeout).
	"archive_mode", "archive_command", "archive_library", "archive_timeout",
	"recovery_target_timeline", "cluster_name", "log_directory",
	// Set per node by the renderer, where they override shared settings.
	"logging_collector", "log_filename", "log_rotation_age", "log_truncate_on_rotation",
	// TLS, set per node by the renderer: turning it off or pointing it at
	// other files would break every client's verify-full.
	"ssl", "ssl_cert_file", "ssl_key_file", "ssl_ca_file", "ssl_min_protocol_version",
}

// Per role and region, the plan has room for this many nodes.
const maxPerRole = 10

// Validate checks the whole configuration and reports every problem, each
// naming the field (as a path under `pgha`) and the value.
func (c Config) Validate() error {
	v := &validator{}
	if !nameRE.MatchString(c.Name) {
		v.addf("name", c.Name, "must be 1-24 lowercase letters, digits or '-', starting with a letter")
	}
	if len(c.Regions) == 0 {
		v.addf("regions", "[]", "must list at least one region")
	}
	var all []namedCIDR
	regionNames := map[string]string{}
	regionCodes := map[string]string{}
	checkRegion := func(field, name, cidr string, azs []string) {
		if !regionRE.MatchString(name) {
			v.addf(field+".name", name, "is not an AWS region name (like eu-west-3)")
		} else if prev, dup := regionNames[name]; dup {
			v.addf(field+".name", name, "is already used by "+prev)
		} else if prev, dup := regionCodes[RegionCode(name)]; dup {
			// Node names start with the code: they would collide.
			v.addf(field+".name", name, "has the same short code "+RegionCode(name)+" as "+prev)
		} else {
			regionNames[name] = field
			regionCodes[RegionCode(name)] = name
		}
		p, err := netip.ParsePrefix(cidr)
		switch {
		case err != nil || !p.Addr().Is4():
			v.addf(field+".cidr", cidr, "is not an IPv4 CIDR")
		case p.Masked() != p:
			v.addf(field+".cidr", cidr, "has host bits set (did you mean "+p.Masked().String()+"?)")
		case p.Bits() < 16 || p.Bits() > 21:
			v.addf(field+".cidr", cidr, "must be a /16 to a /21 (the plan needs six /24 subnets)")
		case !isPrivate(p):
			v.addf(field+".cidr", cidr, "must be inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
		default:
			for _, o := range all {
				if o.p.Overlaps(p) {
					v.addf(field+".cidr", cidr, "overlaps "+o.field+" "+o.p.String())
				}
			}
			all = append(all, namedCIDR{field + ".cidr", p})
		}
		if azs != nil {
			if len(azs) != 3 {
				v.addf(field+".availabilityZones", fmt.Sprint(azs), "must list exactly 3 zones")
			}
			for i, az := range azs {
				if !strings.HasPrefix(az, name) || len(az) != len(name)+1 || az[len(name)] < 'a' || az[len(name)] > 'z' {
					v.addf(fmt.Sprintf("%s.availabilityZones[%d]", field, i), az, "is not a zone of "+name)
				}
			}
			if len(azs) == 3 && (azs[0] == azs[1] || azs[1] == azs[2] || azs[0] == azs[2]) {
				v.addf(field+".availabilityZones", fmt.Sprint(azs), "must name 3 different zones")
			}
		}
	}

	var pg, etcd, haproxy, app int
	for i, r := range c.Regions {
		f := fmt.Sprintf("regions[%d]", i)
		checkRegion(f, r.Name, r.CIDR, r.AvailabilityZones)
		for _, n := range []struct {
			key   string
			count int
		}{{"postgres", r.Postgres}, {"etcd", r.Etcd}, {"haproxy", r.HAProxy}, {"app", r.App}} {
			if n.count < 0 || n.count > maxPerRole {
				v.addf(f+"."+n.key, fmt.Sprint(n.count), fmt.Sprintf("must be between 0 and %d", maxPerRole))
			}
		}
		if r.App > 0 && r.HAProxy == 0 {
			v.addf(f+".haproxy", "0", "must be at least 1 where app instances run (the app connects through its region's HAProxy)")
		}
		pg += r.Postgres
		etcd += r.Etcd
		haproxy += r.HAProxy
		app += r.App
	}
	if len(c.Regions) > 0 && c.Regions[0].Postgres < 1 {
		v.addf("regions[0].postgres", fmt.Sprint(c.Regions[0].Postgres), "must be at least 1: the first region is the primary")
	}
	if c.Witness != nil {
		checkRegion("witness", c.Witness.Name, c.Witness.CIDR, c.Witness.AvailabilityZones)
		etcd++
	}
	if pg < 2 {
		v.addf("regions[*].postgres", fmt.Sprint(pg), "PostgreSQL nodes in all must be at least 2, or there is nothing to fail over to")
	}
	if etcd < 3 || etcd%2 == 0 {
		v.addf("regions[*].etcd", fmt.Sprint(etcd), "etcd needs an odd number of members, at least 3 (a witness counts as one)")
	}
	if haproxy < 1 {
		v.addf("regions[*].haproxy", fmt.Sprint(haproxy), "at least one HAProxy is needed to reach the leader")
	}
	if c.Witness != nil && etcd >= 3 && etcd%2 == 1 {
		for i, r := range c.Regions {
			if 2*r.Etcd >= etcd {
				v.addf(fmt.Sprintf("regions[%d].etcd", i), fmt.Sprint(r.Etcd),
					fmt.Sprintf("holds a majority of the %d etcd members: losing %s would lose quorum, which the witness exists to prevent", etcd, r.Name))
			}
		}
	}

	c.Instances.validate(v)
	for _, region := range sortedKeys(c.Instances.Images) {
		field := "instances.images." + region
		if _, ok := regionNames[region]; !ok {
			v.addf(field, region, "is not one of the cluster's regions")
		}
		if ami := c.Instances.Images[region]; !amiRE.MatchString(ami) {
			v.addf(field, ami, "is not an AMI id (like ami-0123456789abcdef0)")
		}
	}
	c.Postgres.validate(v, c.Patroni.SynchronousMode)
	c.Patroni.validate(v)
	if n := c.Patroni.SynchronousNodeCount; n < 0 || (pg >= 2 && n > pg-1) {
		v.addf("patroni.synchronousNodeCount", fmt.Sprint(n), fmt.Sprintf("must be between 0 (every replica) and the %d replicas", max(pg-1, 0)))
	}
	c.Etcd.validate(v)
	c.validateConnections(v)
	c.Backup.validate(v)
	if c.TLS.Rotation < 0 {
		v.addf("tls.rotation", fmt.Sprint(c.TLS.Rotation), "must not be negative")
	}
	if !databaseRE.MatchString(c.App.Database) || c.App.Database == "postgres" || strings.HasPrefix(c.App.Database, "template") {
		v.addf("app.database", c.App.Database, "must be a lowercase identifier other than postgres and template*")
	}
	for i, s := range c.App.AllowedCIDRs {
		if p, err := netip.ParsePrefix(s); err != nil || p.Masked() != p {
			v.addf(fmt.Sprintf("app.allowedCidrs[%d]", i), s, "is not a CIDR without host bits")
		}
	}
	if app == 0 && len(c.App.AllowedCIDRs) > 0 {
		v.addf("app.allowedCidrs", fmt.Sprint(c.App.AllowedCIDRs), "is set but no region runs an app instance")
	}
	if c.HealthCheck.LagAlarmBytes <= 0 {
		v.addf("healthCheck.lagAlarmBytes", fmt.Sprint(c.HealthCheck.LagAlarmBytes), "must be positive")
	}
	if c.HealthCheck.LeaderAwayMinutes < 1 || c.HealthCheck.LeaderAwayMinutes > 1440 {
		v.addf("healthCheck.leaderAwayMinutes", fmt.Sprint(c.HealthCheck.LeaderAwayMinutes), "must be between 1 and 1440")
	}
	if c.HealthCheck.VolumeAlarmPercent < 1 || c.HealthCheck.VolumeAlarmPercent > 99 {
		v.addf("healthCheck.volumeAlarmPercent", fmt.Sprint(c.HealthCheck.VolumeAlarmPercent), "must be between 1 and 99")
	}
	if c.HealthCheck.RestartBackoffMinutes < 1 || c.HealthCheck.RestartBackoffMinutes > 1440 {
		v.addf("healthCheck.restartBackoffMinutes", fmt.Sprint(c.HealthCheck.RestartBackoffMinutes), "must be between 1 and 1440")
	}
	return v.err()
}

func (in Instances) validate(v *validator) {
	if in.Architecture != "arm64" && in.Architecture != "x86_64" {
		v.addf("instances.architecture", in.Architecture, `must be "arm64" or "x86_64"`)
	}
	for _, t := range []struct{ key, value string }{
		{"postgres", in.Postgres}, {"etcd", in.Etcd}, {"haproxy", in.HAProxy}, {"app", in.App},
	} {
		m := instanceTypeRE.FindStringSubmatch(t.value)
		if m == nil {
			v.addf("instances."+t.key, t.value, "is not an EC2 instance type (like t4g.medium)")
			continue
		}
		arm := strings.HasPrefix(m[2], "g")
		if arm && in.Architecture == "x86_64" || !arm && in.Architecture == "arm64" {
			v.addf("instances."+t.key, t.value, "does not run on instances.architecture "+in.Architecture)
		}
	}
	if in.DataVolumeGiB < 1 || in.DataVolumeGiB > 16384 {
		v.addf("instances.dataVolumeGiB", fmt.Sprint(in.DataVolumeGiB), "must be between 1 and 16384")
	}
	if in.RootVolumeGiB < 8 || in.RootVolumeGiB > 16384 {
		v.addf("instances.rootVolumeGiB", fmt.Sprint(in.RootVolumeGiB), "must be between 8 and 16384")
	}
}

func (p Postgres) validate(v *validator, synchronous bool) {
	for _, k := range sortedKeys(p.Parameters) {
		val := p.Parameters[k]
		field := "postgres.parameters." + k
		switch {
		case !parameterRE.MatchString(k):
			v.addf(field, k, "is not a PostgreSQL setting name")
		case slices.Contains(managedParameters, k):
			v.addf(field, val, "is managed by pgha and cannot be set")
		case strings.ContainsAny(val, "\n\r\x00") || val == "":
			v.addf(field, val, "must be a non-empty single-line value")
		default:
			if why := unsafeParameter(k, val, synchronous); why != "" {
				v.addf(field, val, why)
			}
		}
	}
}

// unsafeParameter says why setting k = val would void "0 acknowledged
// writes lost" (or lock roles out), or "" when it does not. Values are
// read as PostgreSQL reads them: case-insensitive, booleans as any unique
// prefix of on/off, true/false, yes/no, or 1/0.
// https://www.postgresql.org/docs/17/config-setting.html
func unsafeParameter(k, val string, synchronous bool) string {
	v := strings.ToLower(strings.TrimSpace(strings.Trim(val, `'"`)))
	switch k {
	case "fsync":
		if pgFalse(v) {
			return "must not be off: an OS crash or power loss on the leader would lose or corrupt acknowledged writes"
		}
	case "full_page_writes":
		if pgFalse(v) {
			return "must not be off: a crash during a page write would leave torn pages that WAL replay cannot repair"
		}
	case "synchronous_commit":
		if synchronous && (v == "local" || pgFalse(v)) {
			return "must not be off or local while patroni.synchronousMode is true: the leader would acknowledge commits no standby has, and a failover would lose them"
		}
	case "password_encryption":
		if v == "md5" {
			return "must be scram-sha-256: pg_hba.conf accepts only scram-sha-256, so roles given md5 passwords could not log in"
		}
	}
	return ""
}

// validateConnections checks that the HAProxy nodes together cannot take
// the connection slots PostgreSQL keeps for the superuser (Patroni,
// pg_rewind, operators) and for roles with pg_use_reserved_connections
// (the health checker): max_connections - superuser_reserved_connections -
// reserved_connections, with PostgreSQL's defaults where they are not set.
// https://www.postgresql.org/docs/17/runtime-config-connection.html
func (c Config) validateConnections(v *validator) {
	haproxy := 0
	for _, r := range c.Regions {
		haproxy += r.HAProxy
	}
	setting := func(name string, def int) (int, bool) {
		s, ok := c.Postgres.Parameters[name]
		if !ok {
			return def, true
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 {
			v.addf("postgres.parameters."+name, s, "must be a whole number")
			return 0, false
		}
		return n, true
	}
	maxConn, ok1 := setting("max_connections", 100)
	su, ok2 := setting("superuser_reserved_connections", 3)
	res, ok3 := setting("reserved_connections", 0)
	if c.HAProxy.ServerMaxConn < 1 {
		v.addf("haproxy.serverMaxConn", fmt.Sprint(c.HAProxy.ServerMaxConn), "must be at least 1")
		return
	}
	if !ok1 || !ok2 || !ok3 {
		return
	}
	if free := maxConn - su - res; haproxy*c.HAProxy.ServerMaxConn > free {
		v.addf("haproxy.serverMaxConn", fmt.Sprint(c.HAProxy.ServerMaxConn),
			fmt.Sprintf("times the %d HAProxy nodes is %d, more than the %d slots max_connections %d leaves after %d superuser and %d reserved connections: lower it or raise postgres.parameters.max_connections",
				haproxy, haproxy*c.HAProxy.ServerMaxConn, free, maxConn, su, res))
	}
}

// pgFalse reports whether v is a PostgreSQL boolean false: a unique prefix
// of "off" (at least "of"), "false" or "no", or "0".
func pgFalse(v string) bool {
	switch {
	case v == "0":
		return true
	case len(v) >= 2 && strings.HasPrefix("off", v):
		return true
	case v != "" && (strings.HasPrefix("false", v) || strings.HasPrefix("no", v)):
		return true
	}
	return false
}

func (p Patroni) validate(v *validator) {
	if p.TTL < 20 {
		v.addf("patroni.ttl", fmt.Sprint(p.TTL), "must be at least 20 (Patroni 4 raises lower values to 20)")
	}
	if p.LoopWait < 1 {
		v.addf("patroni.loopWait", fmt.Sprint(p.LoopWait), "must be at least 1")
	}
	if p.RetryTimeout < 1 {
		v.addf("patroni.retryTimeout", fmt.Sprint(p.RetryTimeout), "must be at least 1")
	}
	if p.LoopWait+2*p.RetryTimeout > p.TTL {
		v.addf("patroni", fmt.Sprintf("loopWait %d + 2*retryTimeout %d = %d > ttl %d", p.LoopWait, p.RetryTimeout, p.LoopWait+2*p.RetryTimeout, p.TTL),
			"breaks loop_wait + 2*retry_timeout <= ttl: a leader cut off from etcd could keep writing after its lock expired")
	}
	if p.SynchronousModeStrict && !p.SynchronousMode {
		v.addf("patroni.synchronousModeStrict", "true", "needs patroni.synchronousMode true")
	}
	if p.QuorumCommit && !p.SynchronousMode {
		v.addf("patroni.quorumCommit", "true", "needs patroni.synchronousMode true")
	}
	if p.MaximumLagOnFailover < 0 {
		v.addf("patroni.maximumLagOnFailover", fmt.Sprint(p.MaximumLagOnFailover), "must not be negative")
	}
}

func (e Etcd) validate(v *validator) {
	if e.HeartbeatIntervalMs < 10 || e.HeartbeatIntervalMs > 5000 {
		v.addf("etcd.heartbeatIntervalMs", fmt.Sprint(e.HeartbeatIntervalMs), "must be between 10 and 5000")
	}
	if e.ElectionTimeoutMs < 5*e.HeartbeatIntervalMs || e.ElectionTimeoutMs > 50000 {
		v.addf("etcd.electionTimeoutMs", fmt.Sprint(e.ElectionTimeoutMs),
			fmt.Sprintf("must be at least 5 times the heartbeat (%d) and at most 50000, as etcd requires", 5*e.HeartbeatIntervalMs))
	}
}

type namedCIDR struct {
	field string
	p     netip.Prefix
}

var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
}

func isPrivate(p netip.Prefix) bool {
	for _, r := range privateRanges {
		if r.Bits() <= p.Bits() && r.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// ValidationError is one problem in the configuration.
type ValidationError struct {
	Field   string // path under `pgha`, e.g. "regions[1].cidr"
	Value   string
	Problem string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("%s.%s: %q %s", ContextKey, e.Field, e.Value, e.Problem)
}

type validator struct{ errs []error }

func (v *validator) addf(field, value, problem string) {
	v.errs = append(v.errs, &ValidationError{Field: field, Value: value, Problem: problem})
}

func (v *validator) err() error { return errors.Join(v.errs...) }

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
