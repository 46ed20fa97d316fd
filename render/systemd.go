package render

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/pgha/pgha/cluster"
)

// unitOptions are the systemd-only parts of a unit; the local cluster,
// which runs Service.Command without systemd, does not need them.
type unitOptions struct {
	After             []string  // also Wants=, except for Requires
	Requires          []string  // units that must run too
	RequiresMountsFor string    // a path whose mount must be up first
	Pre               []unitCmd // ExecStartPre=
	Reload            []string  // ExecReload=
	Stop              []string  // ExecStop=
	KillMode          string    // "" for systemd's default (control-group)
	TimeoutStartSec   int       // 0 for systemd's default
	TimeoutStopSec    int       // 0 for systemd's default
	Extra             []string  // more [Service] lines
}

type unitCmd struct {
	Argv    []string
	MayFail bool // prefix "-": a failure does not stop the unit starting
}

var unitTmpl = parse("templates/unit.service")

// Unit renders service s's systemd unit file, to be written at
// /etc/systemd/system/<s.Unit>. Packaged services have no unit of ours.
func Unit(s Service) (string, error) {
	if s.Packaged {
		return "", fmt.Errorf("render unit %s: the Debian package provides it", s.Unit)
	}
	var buf bytes.Buffer
	if err := unitTmpl.Execute(&buf, map[string]any{"Header": Header, "S": s, "U": s.unit}); err != nil {
		return "", fmt.Errorf("render unit %s: %w", s.Unit, err)
	}
	return buf.String(), nil
}

// execLine formats argv for an Exec*= line. systemd splits on whitespace,
// honours quotes and expands % specifiers, so those are quoted or escaped.
// "$" is left alone: no argument of ours contains one, except a CDK token
// in an image URI, which CDK replaces before the node ever boots.
// https://www.freedesktop.org/software/systemd/man/latest/systemd.service.html#Command%20lines
func execLine(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		a = strings.ReplaceAll(a, `\`, `\\`)
		a = strings.ReplaceAll(a, "%", "%%")
		if a == "" || strings.ContainsAny(a, " \t\"';") {
			a = `"` + strings.ReplaceAll(a, `"`, `\"`) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// PatroniUnit is Patroni's (and so PostgreSQL's) unit.
const PatroniUnit = "pgha-patroni.service"

// Services returns the long-running processes of node n.
func Services(p *cluster.Plan, n cluster.Node) ([]Service, error) {
	switch n.Role {
	case cluster.RolePostgres:
		return []Service{{
			Unit:        PatroniUnit,
			Description: "pgha Patroni and PostgreSQL 17 (" + p.Config.Name + "/" + n.Name + ")",
			User:        "postgres",
			Command:     []string{"/usr/bin/patroni", PatroniConfig},
			// Follows Patroni's own unit (extras/startup-scripts/patroni.service).
			unit: unitOptions{
				After:             []string{"network-online.target"},
				RequiresMountsFor: DataMount,
				Reload:            []string{"/bin/kill", "-HUP", "$MAINPID"},
				// Patroni stops PostgreSQL itself on SIGTERM; systemd must not
				// kill the postmaster behind its back.
				KillMode:        "process",
				TimeoutStartSec: 30,
				TimeoutStopSec:  30,
			},
		}, {
			Unit:        pgBackRestUnit,
			Description: "pgBackRest's TLS server (PgBackRestConf)",
			User:        "postgres",
			Command:     []string{"/usr/bin/pgbackrest", "server"},
			Packaged:    true,
		}}, nil
	case cluster.RoleEtcd:
		return []Service{{
			Unit:        EtcdUnit,
			Description: "pgha etcd, Patroni's DCS (" + p.Config.Name + "/" + n.Name + ")",
			User:        "etcd",
			Command:     []string{"/usr/bin/etcd", "--config-file", EtcdConfig},
			// Type=simple, not notify: etcd reports ready only once it has a
			// quorum, which on first boot waits for members in other regions.
			unit: unitOptions{
				After: []string{"network-online.target"},
				// A lone member may ignore SIGTERM for 20 s or more (probe):
				// SIGKILL after a bounded wait.
				TimeoutStopSec: 20,
				Extra:          []string{"LimitNOFILE=65536"},
			},
		}}, nil
	case cluster.RoleHAProxy:
		return []Service{{
			Unit:        "haproxy.service",
			Description: "HAProxy, routing to the Patroni leader and replicas",
			User:        "root", // binds, then drops to user haproxy (haproxy.cfg)
			Command:     []string{"/usr/sbin/haproxy", "-Ws", "-f", HAProxyConfig},
			Packaged:    true,
		}}, nil
	case cluster.RoleApp:
		return []Service{{
			Unit:        AppUnit,
			Description: "pgha hello API (" + n.Name + ")",
			User:        "root",
			Command:     []string{AppRunScript},
			unit: unitOptions{
				After: []string{"network-online.target"},
				Stop:  []string{"/usr/bin/podman", "stop", AppContainer},
			},
		}}, nil
	}
	return nil, fmt.Errorf("render services for %s: unknown role %q", n.Name, n.Role)
}

var appRunTmpl = parse("templates/app-run.sh")

// AppRun renders AppRunScript for app node n: it reads the image from
// AppImageParameter and runs the container with AppEnv.
func AppRun(p *cluster.Plan, n cluster.Node) (string, error) {
	env := appEnv(p, n, containerPasswordFile, containerCAFile)
	// The node's own network: the app listens on the node's port, and no
	// bridge or NAT sits between it and the HAProxy nodes.
	run := []string{"podman", "run", "--rm", "--name", AppContainer, "--network=host"}
	for _, k := range sortedKeys(env) {
		run = append(run, "-e", k+"="+env[k])
	}
	run = append(run, "-v", AppPasswordFile+":"+containerPasswordFile+":ro", "-v", CAFile+":"+containerCAFile+":ro")
	for i, a := range run {
		run[i] = shellQuote(a)
	}
	var buf bytes.Buffer
	err := appRunTmpl.Execute(&buf, map[string]any{
		"Header":    Header,
		"Region":    n.Region,
		"Parameter": AppImageParameter(p.Config),
		"LastImage": "/var/lib/pgha/app-image",
		"ECRLogin":  ECRLoginScript,
		"Container": AppContainer,
		"Run":       strings.Join(run, " "),
	})
	if err != nil {
		return "", fmt.Errorf("render app-run for %s: %w", n.Name, err)
	}
	return buf.String(), nil
}

// shellQuote quotes s for bash when it holds anything but safe characters.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=/.:,@%+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// containerPasswordFile and containerCAFile are where the app container
// sees AppPasswordFile and CAFile.
const (
	containerPasswordFile = "/run/secrets/db-password"
	containerCAFile       = "/run/secrets/ca.crt"
)

// AppEnv is the environment of the app on node n, with the node's paths of
// its password and of the cluster CA (AppPasswordFile, CAFile); the
// container gets the same with the paths of its mounts of them (AppRun).
// DATABASE_URL lists the HAProxy nodes of the app's own region first, then
// the others; libpq-style clients try them in order and keep the first
// that accepts writes.
func AppEnv(p *cluster.Plan, n cluster.Node) map[string]string {
	return appEnv(p, n, AppPasswordFile, CAFile)
}

func appEnv(p *cluster.Plan, n cluster.Node, passwordFile, caFile string) map[string]string {
	var hosts []string
	for _, h := range p.HAProxyOrder(n.Region) {
		hosts = append(hosts, fmt.Sprintf("%s:%d", h.IP, cluster.PortHAProxyWrite))
	}
	return map[string]string{
		// verify-full through HAProxy, which passes TLS through: every
		// PostgreSQL node's certificate names every HAProxy address.
		"DATABASE_URL": fmt.Sprintf("postgres://%s@%s/%s?target_session_attrs=read-write&connect_timeout=2&sslmode=verify-full&sslrootcert=%s",
			cluster.AppUser, strings.Join(hosts, ","), p.Config.App.Database, caFile),
		"DATABASE_PASSWORD_FILE": passwordFile,
		"PORT":                   fmt.Sprint(cluster.PortApp),
	}
}
