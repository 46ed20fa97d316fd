package render

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pgha/pgha/cluster"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the renderers' output")

// plans are the plans every test renders.
func plans(t *testing.T) map[string]*cluster.Plan {
	t.Helper()
	witness := cluster.Default()
	witness.Regions = []cluster.Region{
		{Name: "eu-west-3", CIDR: "10.11.0.0/16", Postgres: 2, Etcd: 2, HAProxy: 2, App: 1},
		{Name: "eu-west-1", CIDR: "10.12.0.0/16", Postgres: 2, Etcd: 2, HAProxy: 2, App: 1},
	}
	witness.Witness = &cluster.Witness{Name: "eu-central-1", CIDR: "10.13.0.0/16"}
	// Timing other than the default, so that a renderer copying defaults
	// instead of the config fails the timing test.
	witness.Patroni.TTL, witness.Patroni.LoopWait, witness.Patroni.RetryTimeout = 30, 5, 10
	witness.Patroni.SynchronousModeStrict = true
	witness.Patroni.FailsafeMode = false
	witness.Etcd.HeartbeatIntervalMs, witness.Etcd.ElectionTimeoutMs = 100, 1000
	out := map[string]*cluster.Plan{}
	for name, c := range map[string]cluster.Config{"default": cluster.Default(), "witness": witness} {
		p, err := cluster.NewPlan(c)
		if err != nil {
			t.Fatalf("plan %s: %v", name, err)
		}
		out[name] = p
	}
	return out
}

// each calls f for every node of every plan.
func each(t *testing.T, f func(t *testing.T, p *cluster.Plan, n cluster.Node)) {
	for name, p := range plans(t) {
		for _, n := range p.Nodes {
			t.Run(name+"/"+n.Name, func(t *testing.T) { f(t, p, n) })
		}
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./render -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the renderer's output; if the change is intended, run go test ./render -update and review the diff", path)
	}
}

// TestGolden pins every node's boot script (which holds all its files) and
// a manifest of each plan: files, directories, services, app environment.
func TestGolden(t *testing.T) {
	for name, p := range plans(t) {
		var manifest strings.Builder
		for _, n := range p.Nodes {
			s, err := BootScript(p, n)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name+"-"+n.Name+".boot.sh", s)
			files, err := Files(p, n)
			if err != nil {
				t.Fatal(err)
			}
			svcs, err := Services(p, n)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&manifest, "%s (%s, %s, %s)\n", n.Name, n.Role, n.Region, n.IP)
			for _, d := range Dirs(n) {
				fmt.Fprintf(&manifest, "  dir  %04o %-8s %s\n", d.Mode, d.Owner, d.Path)
			}
			for _, f := range files {
				fmt.Fprintf(&manifest, "  file %04o %-8s %s\n", f.Mode, f.Owner, f.Path)
			}
			for _, s := range svcs {
				fmt.Fprintf(&manifest, "  service %s user=%s packaged=%v\n    %q\n", s.Unit, s.User, s.Packaged, s.Command)
			}
			if n.Role == cluster.RoleApp {
				env := AppEnv(p, n)
				for _, k := range sortedKeys(env) {
					fmt.Fprintf(&manifest, "  app env %s=%s\n", k, env[k])
				}
			}
		}
		golden(t, name+".manifest", manifest.String())
	}
}

func TestBootScriptFitsUserData(t *testing.T) {
	each(t, func(t *testing.T, p *cluster.Plan, n cluster.Node) {
		s, err := BootScript(p, n)
		if err != nil {
			t.Fatal(err)
		}
		u, err := UserData(p, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(u) >= MaxUserData {
			t.Errorf("user data is %d bytes, EC2's must be under %d", len(u), MaxUserData)
		}
		r, err := gzip.NewReader(bytes.NewReader(u))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(r); err != nil || string(got) != s {
			t.Errorf("the user data does not uncompress to the boot script (%v)", err)
		}
		if again, _ := UserData(p, n); !bytes.Equal(again, u) {
			t.Error("two renders of the user data differ")
		}
	})
}

// The user data holds nothing the cluster's tunable settings decide: the
// dynamic configuration and the app image are SSM parameters, read at boot.
func TestBootScriptIgnoresTunables(t *testing.T) {
	p := plans(t)["default"]
	c := p.Config
	c.Postgres.Parameters = maps.Clone(c.Postgres.Parameters)
	c.Postgres.Parameters["max_connections"] = "321"
	c.Postgres.Parameters["work_mem"] = "64MB"
	c.Patroni.TTL, c.Patroni.RetryTimeout, c.Patroni.MaximumLagOnFailover = 40, 15, 1
	c.Patroni.SynchronousModeStrict = !c.Patroni.SynchronousModeStrict
	changed, err := cluster.NewPlan(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range p.Nodes {
		a, err := BootScript(p, n)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := BootScript(changed, n)
		if a != b {
			t.Errorf("%s: the boot script changed with the tunable settings", n.Name)
		}
	}
	before, _ := BootstrapDCSFile(p)
	after, _ := BootstrapDCSFile(changed)
	if before == after || !strings.Contains(after, `"max_connections":"321"`) || !strings.Contains(after, `"ttl":40`) {
		t.Errorf("the dynamic configuration did not follow the settings:\n%s", after)
	}
}

// Only the primary region's PostgreSQL nodes may initialise the cluster: a
// Patroni without a bootstrap section waits for a leader to clone.
func TestOnlyThePrimaryRegionInitialises(t *testing.T) {
	each(t, func(t *testing.T, p *cluster.Plan, n cluster.Node) {
		if n.Role != cluster.RolePostgres {
			return
		}
		y, err := PatroniYAML(p, n)
		if err != nil {
			t.Fatal(err)
		}
		fetched, err := Fetched(p, n)
		if err != nil {
			t.Fatal(err)
		}
		var got patroniConfig
		if err := yaml.Unmarshal(y, &got); err != nil {
			t.Fatal(err)
		}
		primary := n.Region == p.Primary().Name
		if (got.Bootstrap != nil) != primary || (len(fetched) == 1) != primary {
			t.Errorf("%s in %s: bootstrap section %v, fetched %d files; want them only in the primary region %s",
				n.Name, n.Region, got.Bootstrap != nil, len(fetched), p.Primary().Name)
		}
		for _, f := range fetched {
			// As Patroni reads it: YAML.
			var tree map[string]any
			var doc struct {
				Bootstrap struct {
					DCS DynamicConfig `json:"dcs"`
				} `json:"bootstrap"`
			}
			err := yaml.Unmarshal([]byte(f.Content), &tree)
			if err == nil {
				b, _ := json.Marshal(tree)
				err = json.Unmarshal(b, &doc)
			}
			if err != nil || !reflect.DeepEqual(doc.Bootstrap.DCS, Dynamic(p)) {
				t.Errorf("%s: %s is not bootstrap.dcs = Dynamic(plan) as YAML (%v):\n%s", n.Name, f.Path, err, f.Content)
			}
			if f.Value()+"\n" != f.Content || f.Parameter != DynamicConfigParameter(p.Config) {
				t.Errorf("%s: parameter %s value %q", n.Name, f.Parameter, f.Value())
			}
		}
	})
}

func TestDynamicConfig(t *testing.T) {
	for name, p := range plans(t) {
		c, dcs := p.Config.Patroni, Dynamic(p)
		if dcs.TTL != c.TTL || dcs.LoopWait != c.LoopWait || dcs.RetryTimeout != c.RetryTimeout ||
			dcs.SynchronousMode != c.SynchronousMode || dcs.SynchronousModeStrict != c.SynchronousModeStrict ||
			dcs.FailsafeMode != c.FailsafeMode || dcs.MaximumLagOnFailover != c.MaximumLagOnFailover {
			t.Errorf("%s: dcs = %+v, want the config's %+v", name, dcs, c)
		}
		if dcs.LoopWait+2*dcs.RetryTimeout > dcs.TTL {
			t.Errorf("%s: loop_wait + 2*retry_timeout > ttl: %+v", name, dcs)
		}
		want := maps.Clone(p.Config.Postgres.Parameters)
		want["archive_mode"] = "on"
		want["archive_command"] = "/usr/bin/pgbackrest --stanza=" + p.Config.Name + " archive-push %p"
		want["archive_timeout"] = fmt.Sprint(p.Config.Backup.ArchiveTimeoutSeconds)
		if !reflect.DeepEqual(dcs.Postgresql.Parameters, want) {
			t.Errorf("%s: parameters %v, want %v", name, dcs.Postgresql.Parameters, want)
		}
	}
}

var (
	// A *password key with a value: "password: x" (YAML), "PASSWORD=x"
	// (environment, ini).
	passwordValue = regexp.MustCompile(`(?im)(?:^|[\s{,"'])([a-z_]*password)["']?(?:[ \t]*=|:[ \t])[ \t]*(\S+)`)
	// A password literal in SQL; psql's :'variable' is a reference.
	sqlPassword = regexp.MustCompile(`(?i)\bPASSWORD\s+(E?'|\$)`)
)

// No password can be in a rendered file: renderers never get one, and no
// file has a password setting with a value (the boot fills them in from
// Secrets Manager).
func TestNoPasswordInFiles(t *testing.T) {
	each(t, func(t *testing.T, p *cluster.Plan, n cluster.Node) {
		s, err := BootScript(p, n)
		if err != nil {
			t.Fatal(err)
		}
		files, err := Files(p, n)
		if err != nil {
			t.Fatal(err)
		}
		texts := map[string]string{"boot script": s}
		for _, f := range files {
			texts[f.Path] = f.Content
		}
		for name, text := range texts {
			for _, m := range passwordValue.FindAllStringSubmatch(text, -1) {
				// A reference is no value: a shell variable or command
				// substitution, or a printf verb the boot fills in.
				if v := m[2]; strings.HasPrefix(v, "$") || strings.HasPrefix(v, "'%s'") {
					continue
				}
				t.Errorf("%s sets a password: %q", name, m[0])
			}
			for _, m := range sqlPassword.FindAllString(text, -1) {
				t.Errorf("%s has a password literal: %q", name, m)
			}
		}
		if n.Role == cluster.RolePostgres {
			var tree any
			if err := yaml.Unmarshal([]byte(files[slices.IndexFunc(files, func(f File) bool { return f.Path == PatroniNodeConfig })].Content), &tree); err != nil {
				t.Fatal(err)
			}
			if path, ok := findKey(tree, "password", ""); ok {
				t.Errorf("patroni.yml has a password key at %s", path)
			}
		}
	})
}

func findKey(v any, key, path string) (string, bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			if k == key {
				return path + "." + k, true
			}
			if p, ok := findKey(child, key, path+"."+k); ok {
				return p, true
			}
		}
	case []any:
		for i, child := range v {
			if p, ok := findKey(child, key, fmt.Sprintf("%s[%d]", path, i)); ok {
				return p, true
			}
		}
	}
	return "", false
}

// The post-bootstrap script reads the app's and the health checker's
// passwords itself, from the primary region's Secrets Manager: no process
// on a PostgreSQL node holds them in its environment.
func TestPostBootstrapReadsItsSecrets(t *testing.T) {
	p := plans(t)["default"]
	s, err := PostBootstrap(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range []cluster.Secret{cluster.SecretApp, cluster.SecretHealth} {
		want := "--region " + p.Primary().Name + " --secret-id \"$1\""
		if !strings.Contains(s, "read_secret "+p.Config.SecretName(sec)+")") || !strings.Contains(s, want) {
			t.Errorf("post-bootstrap does not read %s from Secrets Manager in %s", p.Config.SecretName(sec), p.Primary().Name)
		}
	}
	for _, n := range p.ByRole(cluster.RolePostgres) {
		boot, err := BootScript(p, n)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(boot, "PGHA_APP_PASSWORD=") && !strings.Contains(s, "PGHA_APP_PASSWORD=$(read_secret") || strings.Contains(boot, "EnvironmentFile") {
			t.Errorf("%s's boot puts a password in an environment", n.Name)
		}
	}
}

func TestPatroniYAML(t *testing.T) {
	each(t, func(t *testing.T, p *cluster.Plan, n cluster.Node) {
		if n.Role != cluster.RolePostgres {
			if _, err := PatroniYAML(p, n); err == nil {
				t.Errorf("PatroniYAML accepted a %s node", n.Role)
			}
			return
		}
		y, err := PatroniYAML(p, n)
		if err != nil {
			t.Fatal(err)
		}
		var got patroniConfig
		if err := yaml.Unmarshal(y, &got); err != nil {
			t.Fatal(err)
		}
		if got.Scope != p.Config.Name || got.Name != n.Name || got.Tags.FailoverPriority != n.Priority || n.Priority < 1 {
			t.Errorf("scope %q name %q priority %d, want %q %q %d (> 0)", got.Scope, got.Name, got.Tags.FailoverPriority, p.Config.Name, n.Name, n.Priority)
		}
		var etcd []string
		for _, e := range p.ByRole(cluster.RoleEtcd) {
			etcd = append(etcd, e.IP.String()+":2379")
		}
		if !slices.Equal(got.Etcd3.Hosts, etcd) {
			t.Errorf("etcd3 hosts %v, want %v", got.Etcd3.Hosts, etcd)
		}
		if strings.HasPrefix(got.Postgresql.Pgpass, got.Postgresql.DataDir) || !strings.HasPrefix(LogDir, "/") ||
			strings.HasPrefix(got.Postgresql.Parameters["log_directory"], got.Postgresql.DataDir) {
			t.Error("pgpass or log_directory is inside data_dir")
		}
		checkHba(t, p, Dynamic(p).Postgresql.PgHba)
	})
}

// checkHba: only scram-sha-256 over the network, only from the cluster's
// CIDRs, PostgreSQL nodes and 127.0.0.1, only over TLS but from 127.0.0.1, and replication only for the
// replication user from PostgreSQL nodes (or the node itself).
func checkHba(t *testing.T, p *cluster.Plan, lines []string) {
	t.Helper()
	allowed := map[string]bool{"127.0.0.1/32": true}
	pgHosts := map[string]bool{"127.0.0.1/32": true}
	for _, c := range p.CIDRs() {
		allowed[c.String()] = true
	}
	for _, n := range p.ByRole(cluster.RolePostgres) {
		allowed[n.IP.String()+"/32"] = true
		pgHosts[n.IP.String()+"/32"] = true
	}
	for _, l := range lines {
		f := strings.Fields(l)
		switch {
		case f[0] == "local":
			if l != "local   all         postgres                       peer" {
				t.Errorf("pg_hba: unexpected local line %q", l)
			}
		case len(f) != 5 || f[0] != "host" && f[0] != "hostssl":
			t.Errorf("pg_hba: unexpected line %q", l)
		case f[4] == "reject":
		case f[0] == "host" && f[3] != "127.0.0.1/32":
			t.Errorf("pg_hba: %q admits another host without TLS (hostssl)", l)
		case f[4] != "scram-sha-256":
			t.Errorf("pg_hba: %q does not use scram-sha-256", l)
		case !allowed[f[3]]:
			t.Errorf("pg_hba: %q admits addresses outside the cluster", l)
		case f[1] == "replication" && (f[2] != cluster.ReplicationUser || !pgHosts[f[3]]):
			t.Errorf("pg_hba: %q admits replication beyond %s from PostgreSQL nodes", l, cluster.ReplicationUser)
		}
		if strings.Contains(l, "0.0.0.0") || strings.Contains(l, "::") {
			t.Errorf("pg_hba: %q is open to the world", l)
		}
	}
}

func TestEtcdYAML(t *testing.T) {
	each(t, func(t *testing.T, p *cluster.Plan, n cluster.Node) {
		if n.Role != cluster.RoleEtcd {
			return
		}
		y, err := EtcdYAML(p, n)
		if err != nil {
			t.Fatal(err)
		}
		var got etcdConfig
		if err := yaml.Unmarshal(y, &got); err != nil {
			t.Fatal(err)
		}
		members := strings.Split(got.InitialCluster, ",")
		for _, e := range p.ByRole(cluster.RoleEtcd) {
			if !slices.Contains(members, e.Name+"=https://"+e.IP.String()+":2380") {
				t.Errorf("initial-cluster %q lacks %s", got.InitialCluster, e.Name)
			}
		}
		if len(members) != len(p.ByRole(cluster.RoleEtcd)) {
			t.Errorf("initial-cluster has %d members, the plan %d", len(members), len(p.ByRole(cluster.RoleEtcd)))
		}
		if got.Name != n.Name || got.HeartbeatInterval != p.Config.Etcd.HeartbeatIntervalMs || got.ElectionTimeout != p.Config.Etcd.ElectionTimeoutMs {
			t.Errorf("name %q heartbeat %d election %d, want %q and the config's %+v", got.Name, got.HeartbeatInterval, got.ElectionTimeout, n.Name, p.Config.Etcd)
		}
		if got.InitialClusterToken != p.Config.Name || !strings.Contains(got.ListenClientURLs, n.IP.String()) {
			t.Errorf("token %q client URLs %q", got.InitialClusterToken, got.ListenClientURLs)
		}
		if strings.Contains(got.ListenClientURLs+got.ListenPeerURLs, "http:") {
			t.Errorf("etcd listens without TLS: %q %q", got.ListenClientURLs, got.ListenPeerURLs)
		}
		for _, sec := range []etcdTLS{got.ClientTransportSecurity, got.PeerTransportSecurity} {
			if !sec.ClientCertAuth || sec.TrustedCAFile != CAFile || sec.CertFile != CertFile || sec.KeyFile != KeyFile {
				t.Errorf("etcd transport security %+v: want client certificates of the CA required", sec)
			}
		}
	})
}

func TestHAProxyHasEveryPostgresNode(t *testing.T) {
	for name, p := range plans(t) {
		cfg, err := HAProxyCfg(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range p.ByRole(cluster.RolePostgres) {
			line := fmt.Sprintf("    server %s %s:5432 check port 8008 verifyhost %s\n", n.Name, n.IP, n.Name)
			if c := strings.Count(cfg, line); c != 2 {
				t.Errorf("%s: %q appears %d times, want 2 (primary and replicas)", name, line, c)
			}
		}
		for _, want := range []string{"bind :5000\n", "bind :5001\n", "bind :7000\n", "uri /primary\n", "uri /replica\n"} {
			if !strings.Contains(cfg, want) {
				t.Errorf("%s: haproxy.cfg lacks %q", name, want)
			}
		}
		if regexp.MustCompile(`(?m)^\s*(daemon|stats admin)`).MatchString(cfg) {
			t.Errorf("%s: haproxy.cfg daemonizes or allows stats admin", name)
		}
	}
}

// Units are rendered from Services: ExecStart is the command the local
// cluster runs.
func TestUnitsMatchServices(t *testing.T) {
	each(t, func(t *testing.T, p *cluster.Plan, n cluster.Node) {
		svcs, err := Services(p, n)
		if err != nil {
			t.Fatal(err)
		}
		files, err := Files(p, n)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range svcs {
			if !filepath.IsAbs(s.Command[0]) {
				t.Errorf("%s: command %q is not an absolute path", s.Unit, s.Command[0])
			}
			i := slices.IndexFunc(files, func(f File) bool { return f.Path == UnitDir+"/"+s.Unit })
			if s.Packaged != (i < 0) {
				t.Errorf("%s: packaged %v, unit file present %v", s.Unit, s.Packaged, i >= 0)
				continue
			}
			if s.Packaged {
				continue
			}
			u := files[i].Content
			for _, want := range []string{"ExecStart=" + strings.Join(s.Command, " ") + "\n", "User=" + s.User + "\n"} {
				if !strings.Contains(u, want) {
					t.Errorf("%s lacks %q", s.Unit, want)
				}
			}
		}
	})
}

func TestAppEnv(t *testing.T) {
	p := plans(t)["witness"]
	for _, n := range p.ByRole(cluster.RoleApp) {
		u := AppEnv(p, n)["DATABASE_URL"]
		hosts := strings.Split(strings.TrimPrefix(strings.SplitN(u, "/", 4)[2], cluster.AppUser+"@"), ",")
		if len(hosts) != len(p.ByRole(cluster.RoleHAProxy)) {
			t.Fatalf("%s: DATABASE_URL %s does not list every HAProxy", n.Name, u)
		}
		first, err := netip.ParseAddrPort(hosts[0])
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := p.Region(n.Region); !r.CIDR.Contains(first.Addr()) {
			t.Errorf("%s in %s: DATABASE_URL %s does not start with its own region's HAProxy", n.Name, n.Region, u)
		}
		if !strings.HasSuffix(u, "/"+p.Config.App.Database+"?target_session_attrs=read-write&connect_timeout=2&sslmode=verify-full&sslrootcert="+CAFile) {
			t.Errorf("DATABASE_URL %s", u)
		}
	}
}

func TestExecLine(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"/bin/a", "b"}, "/bin/a b"},
		{[]string{"/bin/a", "50%", "x y", `q"`}, `/bin/a 50%% "x y" "q\""`},
		{[]string{"/bin/a", ""}, `/bin/a ""`},
	} {
		if got := execLine(tc.in); got != tc.want {
			t.Errorf("execLine(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// The password patterns catch what they must and pass what pgha writes.
func TestPasswordPatterns(t *testing.T) {
	for _, bad := range []string{"    password: s3cret", "PATRONI_SUPERUSER_PASSWORD=abc", `{"password": "x"}`, "ALTER ROLE app PASSWORD 'x';"} {
		if !passwordValue.MatchString(bad) && !sqlPassword.MatchString(bad) {
			t.Errorf("%q is not caught", bad)
		}
	}
	for _, ok := range []string{"ALTER ROLE app WITH LOGIN PASSWORD :'app_password';", `printf '%s=%s\n' PATRONI_SUPERUSER_PASSWORD "$value"`,
		"-v /etc/pgha/app-db-password:/run/secrets/db-password:ro", `: "${PGHA_APP_PASSWORD:?}"`} {
		if passwordValue.MatchString(ok) || sqlPassword.MatchString(ok) {
			t.Errorf("%q is flagged", ok)
		}
	}
}

// The SSM agent (the only way in, and how the app is restarted) is
// installed before anything that can fail for another reason: the
// packages, the data volume, the secrets, the files.
func TestBootInstallsTheSSMAgentFirst(t *testing.T) {
	each(t, func(t *testing.T, p *cluster.Plan, n cluster.Node) {
		s, err := BootScript(p, n)
		if err != nil {
			t.Fatal(err)
		}
		agent := strings.Index(s, "\nif retry 900 ssm_agent; then")
		if agent < 0 {
			t.Fatal("the boot script does not install the SSM agent")
		}
		for _, later := range []string{"retry 0 " + AptInstall, "$(secret ", "\nput /", "mkfs.ext4 ", "retry 0 read_parameter", "systemctl enable --now docker"} {
			if i := strings.Index(s, later); i >= 0 && i < agent {
				t.Errorf("%q comes before the SSM agent's installation", later)
			}
		}
		if !strings.Contains(s, "amazon-ssm-"+n.Region+"/latest/debian_$(dpkg --print-architecture)/amazon-ssm-agent.deb") {
			t.Errorf("the agent does not come from AWS's bucket in %s", n.Region)
		}
	})
}

// TestBootRetry runs the boot script's own retry function in bash: a
// command that fails then succeeds is retried until it does; one that exits
// 199 (a failure trying again cannot fix, such as the SSM agent's bucket
// answering 404) is given up at once, even with no time limit.
func TestBootRetry(t *testing.T) {
	p, err := cluster.NewPlan(cluster.Default())
	if err != nil {
		t.Fatal(err)
	}
	script, err := BootScript(p, p.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(script, "\nretry() {\n")
	end := strings.Index(script[start+1:], "\n}\n")
	if start < 0 || end < 0 {
		t.Fatal("no retry function in the boot script")
	}
	retry := script[start+1 : start+1+end+2]
	for _, tt := range []struct {
		name, cmd, want string
	}{
		{"succeeds on the second try", `n=0; flaky() { n=$((n + 1)); ((n >= 2)); }; retry 0 flaky; echo "rc=$? tries=$n"`, "rc=0 tries=2"},
		{"199 is final", `n=0; final() { n=$((n + 1)); return 199; }; retry 0 final; echo "rc=$? tries=$n"`, "rc=1 tries=1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "bash", "-c", "log() { :; }\n"+retry+"\n"+tt.cmd).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != tt.want {
				t.Errorf("%s: %q, %v; want %q", tt.name, out, err, tt.want)
			}
		})
	}
}

// Patroni's allowlist holds every PostgreSQL node (POST /failsafe is checked
// against it alone) and the primary region's checker subnets, and no other
// node.
func TestAPIAllowlist(t *testing.T) {
	for name, p := range plans(t) {
		list := APIAllowlist(p)
		var prefixes []netip.Prefix
		for _, s := range list {
			prefixes = append(prefixes, netip.MustParsePrefix(s))
		}
		admitted := func(a netip.Addr) bool {
			return slices.ContainsFunc(prefixes, func(q netip.Prefix) bool { return q.Contains(a) })
		}
		for _, n := range p.Nodes {
			if got, want := admitted(n.IP), n.Role == cluster.RolePostgres; got != want {
				t.Errorf("%s: %s (%s, %s) admitted %v, want %v: %v", name, n.Name, n.Role, n.IP, got, want, list)
			}
		}
		for _, s := range p.Primary().CheckerSubnets {
			if !slices.Contains(list, s.String()) {
				t.Errorf("%s: the checker subnet %s is not in %v", name, s, list)
			}
		}
	}
}
