package render

import (
	"bytes"
	"fmt"

	"github.com/pgha/pgha/cluster"
)

var haproxyTmpl = parse("templates/haproxy.cfg")

// HAProxyStatsUsers holds the stats page's userlist, with the password's
// SHA-512 crypt hash: the boot writes it from Secrets Manager (root only),
// and haproxyDropIn makes Debian's haproxy.service load it.
const (
	HAProxyStatsUsers = "/etc/haproxy/pgha-stats-users.cfg"
	haproxyUserlist   = "stats_users"
	haproxyDropInPath = UnitDir + "/haproxy.service.d/pgha.conf"
)

// haproxyDropIn adds HAProxyStatsUsers to Debian's haproxy.service, whose
// ExecStart and configuration check (ExecReload) both end in $EXTRAOPTS;
// the -S is the unit's own default.
var haproxyDropIn = "# " + Header + "\n[Service]\nEnvironment=\"EXTRAOPTS=-S /run/haproxy-master.sock -f " + HAProxyStatsUsers + "\"\n"

// HAProxyCfg renders haproxy.cfg (HAProxyConfig); it is the same on every
// HAProxy node. Every PostgreSQL node of every region is a server of both
// listeners; Patroni's REST API tells HAProxy which one is the leader.
func HAProxyCfg(p *cluster.Plan) (string, error) {
	var buf bytes.Buffer
	err := haproxyTmpl.Execute(&buf, map[string]any{
		"Header":      Header,
		"Write":       cluster.PortHAProxyWrite,
		"Read":        cluster.PortHAProxyRead,
		"Stats":       cluster.PortHAProxyStats,
		"Patroni":     cluster.PortPatroni,
		"Postgres":    cluster.PortPostgres,
		"Nodes":       p.ByRole(cluster.RolePostgres),
		"MaxConn":     p.Config.HAProxy.ServerMaxConn,
		"CAFile":      CAFile,
		"StatsSecret": p.Config.SecretName(cluster.SecretHAProxyStats),
		"StatsUsers":  HAProxyStatsUsers,
		"Userlist":    haproxyUserlist,
	})
	if err != nil {
		return "", fmt.Errorf("render haproxy.cfg: %w", err)
	}
	return buf.String(), nil
}
