package healthcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/pki"
	"github.com/pgha/pgha/render"
)

// EnvSettings is the environment variable that holds the Settings, as JSON,
// in the Lambda.
const EnvSettings = "PGHA_HEALTHCHECK"

// Default timeouts of one check. The Lambda runs every minute; a check with
// every node black-holed still ends within a few seconds.
const (
	DefaultNodeTimeout  = 2 * time.Second // each Patroni node, both requests
	DefaultAppTimeout   = 2 * time.Second // each app's GET /readyz
	DefaultWriteTimeout = 3 * time.Second // the write check through one HAProxy
)

// Member is a PostgreSQL node whose Patroni REST API is asked.
type Member struct {
	Name   string `json:"name"`   // Patroni member name, e.g. "pg1"
	Region string `json:"region"` // AWS region of the node
	URL    string `json:"url"`    // Patroni REST API base URL, e.g. "https://10.11.3.10:8008"
}

// App is an app instance whose GET /readyz is probed and which is restarted
// when the cluster is ready and it is not.
type App struct {
	Name       string `json:"name"`       // plan node name, e.g. "app1"
	InstanceID string `json:"instanceId"` // EC2 instance id (the node name locally)
	URL        string `json:"url"`        // base URL, e.g. "http://10.11.0.40:5000"
}

// Settings is what a Checker needs from the plan, as the CDK construct
// passes it to the Lambda in EnvSettings. Durations are in milliseconds so
// the JSON stays readable in the console.
type Settings struct {
	// Cluster is the cluster's name (Config.Name).
	Cluster string `json:"cluster"`
	// Region is the region the checker runs in; it restarts only the apps
	// of this region and writes through this region's HAProxy first.
	Region string `json:"region"`
	// Members are all regions' PostgreSQL nodes.
	Members []Member `json:"members"`
	// HAProxy are the write endpoints ("host:port"), this region's first.
	HAProxy []string `json:"haproxy"`
	// Apps are this region's app instances.
	Apps []App `json:"apps"`
	// Database is the database the write check connects to.
	Database string `json:"database"`
	// User is the least-privileged health-check role (cluster.HealthUser).
	User string `json:"user"`
	// SecretName is the Secrets Manager secret holding User's password.
	SecretName string `json:"secretName"`
	// TrustSecretName is the Secrets Manager secret holding the cluster
	// CA's certificates (pki.TrustSecret): Patroni's REST API and
	// PostgreSQL are verified against them.
	TrustSecretName string `json:"trustSecretName"`
	// APIUser and APISecretName are Patroni's REST API user and the secret
	// holding its password, which the unsafe endpoints (PATCH /config,
	// POST /restart, /switchover) require.
	APIUser       string `json:"apiUser"`
	APISecretName string `json:"apiSecretName"`
	// ParameterPath is the SSM Parameter Store path under which the last
	// restart of each instance is kept, e.g. "/pgha/pgha/restarts".
	ParameterPath string `json:"parameterPath"`
	// RestartBackoffMs is the least time between two restarts of one app.
	RestartBackoffMs int64 `json:"restartBackoffMs"`
	// PrimaryRegion is the first data region, where the leader belongs.
	PrimaryRegion string `json:"primaryRegion"`
	// DynamicConfig is Patroni's dynamic configuration as it should be
	// (render.DynamicConfig): set only in the primary region's checker, the
	// one that applies it. Default: none, the configuration is left alone.
	DynamicConfig json.RawMessage `json:"dynamicConfig,omitempty"`
	// BootStatusPath is where the nodes report their boot
	// (render.BootStatusPath), and BootNodes the nodes this checker watches:
	// its region's, and the witness's for the primary region's checker.
	BootStatusPath string   `json:"bootStatusPath"`
	BootNodes      []string `json:"bootNodes"`
	// VolumeStatusPath is where the PostgreSQL nodes report how full their
	// data volumes are (render.VolumeStatusPath), in the same region as
	// their boot.
	VolumeStatusPath string `json:"volumeStatusPath"`
	// BackupBucket is this region's backup bucket (cluster.BackupBucket:
	// on AWS the stack fills in the account), BackupPrefix the cluster's
	// repository in it and Stanza pgBackRest's stanza: the checker reads
	// the newest backup there. Empty in the witness region, which has none.
	BackupBucket string `json:"backupBucket,omitempty"`
	BackupPrefix string `json:"backupPrefix,omitempty"`
	Stanza       string `json:"stanza,omitempty"`
	// NodeTimeoutMs, AppTimeoutMs and WriteTimeoutMs bound each request;
	// zero means the package default.
	NodeTimeoutMs  int64 `json:"nodeTimeoutMs,omitempty"`
	AppTimeoutMs   int64 `json:"appTimeoutMs,omitempty"`
	WriteTimeoutMs int64 `json:"writeTimeoutMs,omitempty"`
}

// ParameterPath is where the restarts of a cluster's apps are remembered in
// SSM Parameter Store: "/pgha/<cluster>/restarts".
func ParameterPath(clusterName string) string { return "/pgha/" + clusterName + "/restarts" }

// SettingsFromPlan derives a region's checker settings from the plan.
// instanceIDs maps each app node's name to its instance id (on AWS a CDK
// token resolved at deploy; locally the node name); an app node missing
// from it gets its node name as instance id.
func SettingsFromPlan(p *cluster.Plan, region string, instanceIDs map[string]string) (Settings, error) {
	if _, ok := p.Region(region); !ok {
		return Settings{}, fmt.Errorf("healthcheck: region %q is not in the plan", region)
	}
	c := p.Config
	s := Settings{
		Cluster:          c.Name,
		Region:           region,
		Database:         "postgres",
		User:             cluster.HealthUser,
		SecretName:       c.SecretName(cluster.SecretHealth),
		TrustSecretName:  pki.TrustSecret(c),
		APIUser:          cluster.PatroniAPIUser,
		APISecretName:    c.SecretName(cluster.SecretPatroniAPI),
		ParameterPath:    ParameterPath(c.Name),
		RestartBackoffMs: (time.Duration(c.HealthCheck.RestartBackoffMinutes) * time.Minute).Milliseconds(),
		PrimaryRegion:    p.Primary().Name,
	}
	s.BootStatusPath, s.VolumeStatusPath = render.BootStatusPath(c), render.VolumeStatusPath(c)
	if r, _ := p.Region(region); !r.Witness {
		s.BackupPrefix, s.Stanza = c.BackupPrefix(), c.Stanza()
	}
	for _, n := range p.Nodes {
		r, _ := p.Region(n.Region)
		if n.Region == region || r.Witness && region == p.Primary().Name {
			s.BootNodes = append(s.BootNodes, n.Name)
		}
	}
	if region == p.Primary().Name {
		dcs, err := json.Marshal(render.Dynamic(p))
		if err != nil {
			return Settings{}, fmt.Errorf("healthcheck: %w", err)
		}
		s.DynamicConfig = dcs
	}
	for _, n := range p.ByRole(cluster.RolePostgres) {
		s.Members = append(s.Members, Member{Name: n.Name, Region: n.Region, URL: "https://" + netip.AddrPortFrom(n.IP, cluster.PortPatroni).String()})
	}
	for _, n := range p.HAProxyOrder(region) {
		s.HAProxy = append(s.HAProxy, netip.AddrPortFrom(n.IP, cluster.PortHAProxyWrite).String())
	}
	for _, n := range p.ByRole(cluster.RoleApp) {
		if n.Region != region {
			continue
		}
		id := instanceIDs[n.Name]
		if id == "" {
			id = n.Name
		}
		s.Apps = append(s.Apps, App{Name: n.Name, InstanceID: id, URL: httpURL(n.IP, cluster.PortApp)})
	}
	return s, nil
}

func httpURL(ip netip.Addr, port int) string {
	return "http://" + netip.AddrPortFrom(ip, uint16(port)).String()
}

// ParseSettings decodes and validates Settings from JSON.
func ParseSettings(data []byte) (Settings, error) {
	var s Settings
	if err := json.Unmarshal(data, &s); err != nil {
		return Settings{}, fmt.Errorf("healthcheck settings: %w", err)
	}
	return s, s.Validate()
}

// Validate reports the first missing or invalid setting.
func (s Settings) Validate() error {
	switch {
	case s.Cluster == "":
		return errors.New("healthcheck settings: cluster is empty")
	case s.Region == "":
		return errors.New("healthcheck settings: region is empty")
	case len(s.Members) == 0:
		return errors.New("healthcheck settings: no PostgreSQL members")
	case len(s.HAProxy) == 0:
		return errors.New("healthcheck settings: no HAProxy address")
	case s.RestartBackoffMs <= 0:
		return fmt.Errorf("healthcheck settings: restartBackoffMs must be positive, got %d", s.RestartBackoffMs)
	}
	for _, a := range s.Apps {
		if a.InstanceID == "" || a.URL == "" {
			return fmt.Errorf("healthcheck settings: app %q needs an instance id and a URL", a.Name)
		}
	}
	return nil
}

// Backoff is RestartBackoffMs as a duration.
func (s Settings) Backoff() time.Duration { return ms(s.RestartBackoffMs, 0) }

// NodeTimeout is the per-node Patroni timeout.
func (s Settings) NodeTimeout() time.Duration { return ms(s.NodeTimeoutMs, DefaultNodeTimeout) }

// AppTimeout is the per-app /readyz timeout.
func (s Settings) AppTimeout() time.Duration { return ms(s.AppTimeoutMs, DefaultAppTimeout) }

// WriteTimeout is the write check's timeout per HAProxy.
func (s Settings) WriteTimeout() time.Duration { return ms(s.WriteTimeoutMs, DefaultWriteTimeout) }

func ms(v int64, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return time.Duration(v) * time.Millisecond
}
