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
)

// Secrets lists every secret.
var Secrets = []Secret{SecretSuperuser, SecretReplication, SecretApp, SecretHealth}

// SecretName is the secret's name in Secrets Manager, the same in every
// region it is replicated to: "<cluster>/<secret>", e.g. "pgha/superuser".
func (c Config) SecretName(s Secret) string { return c.Name + "/" + string(s) }

// SecretsFor lists the secrets a node of the given role needs at boot.
func SecretsFor(r Role) []Secret {
	switch r {
	case RolePostgres:
		return []Secret{SecretSuperuser, SecretReplication, SecretApp, SecretHealth}
	case RoleApp:
		return []Secret{SecretApp}
	default:
		return nil
	}
}
