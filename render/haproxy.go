package render

import (
	"bytes"
	"fmt"

	"github.com/pgha/pgha/cluster"
)

var haproxyTmpl = parse("templates/haproxy.cfg")

// HAProxyCfg renders haproxy.cfg (HAProxyConfig); it is the same on every
// HAProxy node. Every PostgreSQL node of every region is a server of both
// listeners; Patroni's REST API tells HAProxy which one is the leader.
func HAProxyCfg(p *cluster.Plan) (string, error) {
	var buf bytes.Buffer
	err := haproxyTmpl.Execute(&buf, map[string]any{
		"Header":   Header,
		"Write":    cluster.PortHAProxyWrite,
		"Read":     cluster.PortHAProxyRead,
		"Stats":    cluster.PortHAProxyStats,
		"Patroni":  cluster.PortPatroni,
		"Postgres": cluster.PortPostgres,
		"Nodes":    p.ByRole(cluster.RolePostgres),
	})
	if err != nil {
		return "", fmt.Errorf("render haproxy.cfg: %w", err)
	}
	return buf.String(), nil
}
