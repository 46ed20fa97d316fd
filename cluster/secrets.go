package cluster

// Secret is one of the cluster's passwords. On AWS each is a Secrets
// Manager secret generated at deploy time and named by SecretName; nodes read
// them at boot. Locally they are files under the local cluster's directory.
type Secret string

// The cluster's secrets.
const (
	SecretSuperuser   Secret = "superuser"   // PostgreSQL superuser (postgres)
	SecretReplication Secret = "replication" // replication user (replicator)
	SecretApp         Secret = "app"         // the app's database role (app)
	SecretHealth      Secret = "health"      // the health checker's role (pgha_health)
	// Patroni's REST API user (PatroniAPIUser), which its unsafe endpoints
	// (PATCH /config, POST /switchover, /restart, ...) require.
	SecretPatroniAPI Secret = "patroni-api"
	// HAProxy's statistics page user (HAProxyStatsUser).
	SecretHAProxyStats Secret = "haproxy-stats"
)

// PatroniAPIUser and HAProxyStatsUser are the user names of
// SecretPatroniAPI and SecretHAProxyStats.
const (
	PatroniAPIUser   = "pgha"
	HAProxyStatsUser = "pgha"
)

// Secrets lists every secret.
var Secrets = []Secret{SecretSuperuser, SecretReplication, SecretApp, SecretHealth, SecretPatroniAPI, SecretHAProxyStats}

// SecretName is the secret's name in Secrets Manager, the same in every
// region it is replicated to: "<cluster>/<secret>", e.g. "pgha/superuser".
func (c Config) SecretName(s Secret) string { return c.Name + "/" + string(s) }

// SecretsFor lists the secrets a node of the given role reads: a
// PostgreSQL node its Patroni's passwords at boot, and the app's and the
// health checker's once, when it bootstraps the cluster.
func SecretsFor(r Role) []Secret {
	switch r {
	case RolePostgres:
		return []Secret{SecretSuperuser, SecretReplication, SecretPatroniAPI, SecretApp, SecretHealth}
	case RoleHAProxy:
		return []Secret{SecretHAProxyStats}
	case RoleApp:
		return []Secret{SecretApp}
	default:
		return nil
	}
}
