package render

import (
	"bytes"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/pgha/pgha/cluster"
)

// etcdConfig is etcd 3.5's configuration file, in the order it is written.
// Reference: https://etcd.io/docs/v3.5/op-guide/configuration/
//
// Clients and peers speak TLS 1.3 only and must show a certificate of the
// cluster CA (client-cert-auth, peer-client-cert-auth): Patroni shows its
// node's; a peer likewise.
// https://etcd.io/docs/v3.5/op-guide/security/
type etcdConfig struct {
	Name                     string   `yaml:"name"`
	DataDir                  string   `yaml:"data-dir"`
	ListenPeerURLs           string   `yaml:"listen-peer-urls"`
	ListenClientURLs         string   `yaml:"listen-client-urls"`
	InitialAdvertisePeerURLs string   `yaml:"initial-advertise-peer-urls"`
	AdvertiseClientURLs      string   `yaml:"advertise-client-urls"`
	InitialCluster           string   `yaml:"initial-cluster"`
	InitialClusterState      string   `yaml:"initial-cluster-state"`
	InitialClusterToken      string   `yaml:"initial-cluster-token"`
	HeartbeatInterval        int      `yaml:"heartbeat-interval"`
	ElectionTimeout          int      `yaml:"election-timeout"`
	AutoCompactionMode       string   `yaml:"auto-compaction-mode"`
	AutoCompactionRetention  string   `yaml:"auto-compaction-retention"`
	QuotaBackendBytes        int64    `yaml:"quota-backend-bytes"`
	Logger                   string   `yaml:"logger"`
	LogOutputs               []string `yaml:"log-outputs"`
	ClientTransportSecurity  etcdTLS  `yaml:"client-transport-security"`
	PeerTransportSecurity    etcdTLS  `yaml:"peer-transport-security"`
	TLSMinVersion            string   `yaml:"tls-min-version"`
}

// etcdTLS is one of etcd's transport-security sections. etcd reads the
// certificate and key again at every new connection, so a renewed one
// needs no restart; the trusted CA file it reads once.
type etcdTLS struct {
	CertFile       string `yaml:"cert-file"`
	KeyFile        string `yaml:"key-file"`
	TrustedCAFile  string `yaml:"trusted-ca-file"`
	ClientCertAuth bool   `yaml:"client-cert-auth"`
}

// EtcdUnit is etcd's unit on an etcd node (see Services).
const EtcdUnit = "pgha-etcd.service"

// EtcdRejoinScript replaces an etcd member whose data is lost (EtcdRejoin).
const EtcdRejoinScript = "/usr/local/sbin/pgha-etcd-rejoin"

var etcdRejoinTmpl = parse("templates/etcd-rejoin.sh")

// EtcdRejoin renders EtcdRejoinScript for etcd node n: it talks to the
// plan's other members, with n's own certificate.
func EtcdRejoin(p *cluster.Plan, n cluster.Node) (string, error) {
	var others []string
	for _, e := range p.ByRole(cluster.RoleEtcd) {
		if e.Name != n.Name {
			others = append(others, fmt.Sprintf("https://%s:%d", e.IP, cluster.PortEtcdClient))
		}
	}
	var buf bytes.Buffer
	err := etcdRejoinTmpl.Execute(&buf, map[string]any{
		"Header":   Header,
		"Script":   EtcdRejoinScript,
		"Name":     n.Name,
		"PeerURL":  fmt.Sprintf("https://%s:%d", n.IP, cluster.PortEtcdPeer),
		"LocalURL": fmt.Sprintf("https://127.0.0.1:%d", cluster.PortEtcdClient),
		"Others":   strings.Join(others, ","),
		// A quorum of the whole cluster, which the others must make up.
		"Quorum":   (len(others)+1)/2 + 1,
		"DataDir":  EtcdDataDir,
		"Config":   EtcdConfig,
		"Unit":     EtcdUnit,
		"CAFile":   CAFile,
		"CertFile": CertFile,
		"KeyFile":  KeyFile,
	})
	if err != nil {
		return "", fmt.Errorf("render etcd rejoin for %s: %w", n.Name, err)
	}
	return buf.String(), nil
}

// EtcdYAML renders etcd's configuration (EtcdConfig) for etcd node n.
func EtcdYAML(p *cluster.Plan, n cluster.Node) ([]byte, error) {
	if n.Role != cluster.RoleEtcd {
		return nil, fmt.Errorf("render etcd config for %s: a %s node runs no etcd", n.Name, n.Role)
	}
	var members []string
	for _, e := range p.ByRole(cluster.RoleEtcd) {
		members = append(members, fmt.Sprintf("%s=https://%s:%d", e.Name, e.IP, cluster.PortEtcdPeer))
	}
	peer := fmt.Sprintf("https://%s:%d", n.IP, cluster.PortEtcdPeer)
	client := fmt.Sprintf("https://%s:%d", n.IP, cluster.PortEtcdClient)
	tls := etcdTLS{CertFile: CertFile, KeyFile: KeyFile, TrustedCAFile: CAFile, ClientCertAuth: true}
	cfg := etcdConfig{
		Name:                     n.Name,
		DataDir:                  EtcdDataDir,
		ListenPeerURLs:           peer,
		ListenClientURLs:         client + fmt.Sprintf(",https://127.0.0.1:%d", cluster.PortEtcdClient),
		InitialAdvertisePeerURLs: peer,
		AdvertiseClientURLs:      client,
		// Static bootstrap: every member knows the others from the plan.
		// A member whose data is lost cannot come back this way (with
		// "new" it would take its old ID with an empty log): EtcdRejoin
		// replaces it, through `etcdctl member remove` and `member add`,
		// and sets the state to "existing" in this file.
		InitialCluster:      strings.Join(members, ","),
		InitialClusterState: "new",
		// The token keeps members of another cluster from joining this one.
		InitialClusterToken: p.Config.Name,
		// etcd's tuning guide: heartbeat about the round-trip time between
		// members (cross-region here), election timeout about 10 times it.
		// https://etcd.io/docs/v3.5/tuning/
		HeartbeatInterval: p.Config.Etcd.HeartbeatIntervalMs,
		ElectionTimeout:   p.Config.Etcd.ElectionTimeoutMs,
		// Patroni rewrites its keys every loop_wait seconds: keep one hour
		// of history and compact the rest, so the database stays small.
		AutoCompactionMode:      "periodic",
		AutoCompactionRetention: "1h",
		// etcd's default (2 GiB) made explicit: Patroni needs a few MiB,
		// and reaching the quota would make etcd read-only (an alarm).
		QuotaBackendBytes: 2 << 30,
		// To stderr, which systemd's journal (or the local cluster) keeps.
		Logger:                  "zap",
		LogOutputs:              []string{"stderr"},
		ClientTransportSecurity: tls,
		PeerTransportSecurity:   tls,
		TLSMinVersion:           "TLS1.3",
	}
	var buf bytes.Buffer
	buf.WriteString("# " + Header + "\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("render etcd config for %s: %w", n.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render etcd config for %s: %w", n.Name, err)
	}
	return buf.Bytes(), nil
}
