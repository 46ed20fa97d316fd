package render

import (
	"bytes"
	"fmt"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/pki"
)

// The TLS files of a node (see TLSRefresh). Every node has CAFile; the
// PostgreSQL and etcd nodes (pki.Identities) have their own CertFile and
// KeyFile, which serve TLS and authenticate them as clients.
const (
	TLSDir   = "/etc/pgha/tls"
	CAFile   = TLSDir + "/ca.crt"
	CertFile = TLSDir + "/node.crt"
	KeyFile  = TLSDir + "/node.key"
	// TLSRefreshScript installs the TLS files from Secrets Manager.
	TLSRefreshScript = "/usr/local/lib/pgha/tls-refresh"
	// tlsRefreshUnit runs TLSRefreshScript; its timer, every day.
	tlsRefreshUnit  = "pgha-tls-refresh.service"
	tlsRefreshTimer = "pgha-tls-refresh.timer"
)

var tlsRefreshTmpl = parse("templates/tls-refresh.sh")

// TLSRefresh renders TLSRefreshScript for node n.
func TLSRefresh(p *cluster.Plan, n cluster.Node) (string, error) {
	data := map[string]any{
		"Header":      Header,
		"Script":      TLSRefreshScript,
		"Region":      n.Region,
		"TrustSecret": pki.TrustSecret(p.Config),
		"Dir":         TLSDir,
		"CAFile":      CAFile,
		"CertFile":    CertFile,
		"KeyFile":     KeyFile,
	}
	var reload []string
	switch n.Role {
	case cluster.RolePostgres:
		data["NodeSecret"], data["KeyOwner"] = pki.NodeSecret(p.Config, n.Name), "postgres"
		// SIGHUP: Patroni 4.0.7 reloads its REST API's certificate when
		// its serial changed (RestApiServer.reload_local_certificate,
		// patroni/api.py); PostgreSQL reloads its ssl_* files on
		// pg_reload_conf() (https://www.postgresql.org/docs/17/ssl-tcp.html),
		// which Patroni's own reload does only when its configuration
		// changed. New connections get the new certificate.
		reload = []string{
			"systemctl is-active --quiet pgha-patroni.service || exit 0",
			"systemctl reload pgha-patroni.service",
			"runuser -u postgres -- " + BinDir + "/psql -h " + SocketDir + " -XAtqc 'SELECT pg_reload_conf()' >/dev/null",
			// pgBackRest's TLS server reads its files when it starts.
			"systemctl try-restart " + pgBackRestUnit,
		}
	case cluster.RoleEtcd:
		// etcd 3.5 reads its certificate and key at every new connection
		// (TLSInfo's GetCertificate, client/pkg/transport/listener.go),
		// but its trusted CAs only when it starts. The cert-rotation
		// drill checks the new certificate is served.
		data["NodeSecret"], data["KeyOwner"] = pki.NodeSecret(p.Config, n.Name), "etcd"
		reload = []string{"[[ -z $ca_changed ]] || systemctl try-restart " + EtcdUnit}
	case cluster.RoleHAProxy:
		reload = []string{"[[ -z $ca_changed ]] || systemctl try-reload-or-restart haproxy.service"}
	case cluster.RoleApp:
		// The app reads the CA when it starts.
		reload = []string{"[[ -z $ca_changed ]] || systemctl try-restart " + AppUnit}
	}
	data["Reload"] = reload
	var buf bytes.Buffer
	if err := tlsRefreshTmpl.Execute(&buf, data); err != nil {
		return "", fmt.Errorf("render tls-refresh for %s: %w", n.Name, err)
	}
	return buf.String(), nil
}

// tlsUnits are the oneshot unit that runs TLSRefreshScript and its daily
// timer (a random hour, so that nodes do not all reload at once).
func tlsUnits(n cluster.Node) (service, timer string) {
	return oneshotUnit("install "+n.Name+"'s TLS files from Secrets Manager", TLSRefreshScript),
		timerUnit("install "+n.Name+"'s renewed TLS files every day", "OnUnitActiveSec=1d\nOnBootSec=1h\nRandomizedDelaySec=1h\nPersistent=true")
}

// oneshotUnit is a oneshot service that runs exec once the network is up.
func oneshotUnit(description, exec string) string {
	return "# " + Header + "\n[Unit]\nDescription=pgha: " + description + "\n" +
		"Wants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nExecStart=" + exec + "\n"
}

// timerUnit is a timer of the [Timer] settings spec (lines), enabled with
// timers.target.
func timerUnit(description, spec string) string {
	return "# " + Header + "\n[Unit]\nDescription=pgha: " + description + "\n\n[Timer]\n" + spec + "\n\n[Install]\nWantedBy=timers.target\n"
}
