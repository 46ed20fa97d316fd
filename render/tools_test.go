package render

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/motoserver"
	"github.com/pgha/pgha/pki"
)

// These tests validate rendered files with the real tools: shellcheck from
// the host, and haproxy, patroni and etcd from the Debian 13 root
// filesystem the local cluster runs (env PGHA_ROOTFS, default
// /var/cache/pgha/rootfs/trixie). Outside CI they skip when a tool is
// missing; in CI (env CI set) that is a failure.

func need(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

func rootfs(t *testing.T, tool string) string {
	t.Helper()
	root := os.Getenv("PGHA_ROOTFS")
	if root == "" {
		root = "/var/cache/pgha/rootfs/trixie"
	}
	if _, err := os.Stat(filepath.Join(root, tool)); err != nil {
		need(t, "no %s in the Debian 13 root %s (set PGHA_ROOTFS): %v", tool, root, err)
	}
	if os.Geteuid() != 0 {
		need(t, "chroot into %s needs root", root)
	}
	return root
}

// tempInRoot makes a directory inside root, removed when the test ends, and
// returns its path on the host and inside the root.
func tempInRoot(t *testing.T, root string) (host, inRoot string) {
	t.Helper()
	host, err := os.MkdirTemp(filepath.Join(root, "tmp"), "pgha-render-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(host) })
	return host, strings.TrimPrefix(host, root)
}

// writeFile writes content to path with mode, making its directories.
func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// tlsFiles writes what tls-refresh installs, for every node of p: a CA of
// the test's own in host/tls/ca.crt and, for a node with a certificate,
// its node.crt and node.key in host/tls/<node>/. conf rewrites a rendered
// file's TLS paths to those (inRoot is host as the chroot sees it).
func tlsFiles(t *testing.T, p *cluster.Plan, host, inRoot string) (conf func(node string, text []byte) []byte) {
	t.Helper()
	ca, err := pki.NewCA(p.Config.Name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(host, "tls")
	write := func(path, content string, mode os.FileMode) { writeFile(t, path, content, mode) }
	write(filepath.Join(dir, "ca.crt"), ca.CertPEM(), 0o644)
	var etcdIPs []netip.Addr
	for _, n := range p.ByRole(cluster.RoleEtcd) {
		etcdIPs = append(etcdIPs, n.IP)
	}
	for _, id := range pki.Identities(p) {
		// The test's members share one namespace, so a member may dial a
		// peer from another member's address, and etcd checks a peer's
		// certificate against the address it comes from: each names all.
		if n, _ := p.Node(id.Name); n.Role == cluster.RoleEtcd {
			id.IPs = append(id.IPs, etcdIPs...)
		}
		text, err := ca.Issue(id, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		crt, key := pki.Split(text)
		write(filepath.Join(dir, id.Name, "node.crt"), crt, 0o644)
		write(filepath.Join(dir, id.Name, "node.key"), key, 0o644)
	}
	return func(node string, text []byte) []byte {
		text = bytes.ReplaceAll(text, []byte(CAFile), []byte(inRoot+"/tls/ca.crt"))
		text = bytes.ReplaceAll(text, []byte(CertFile), []byte(inRoot+"/tls/"+node+"/node.crt"))
		return bytes.ReplaceAll(text, []byte(KeyFile), []byte(inRoot+"/tls/"+node+"/node.key"))
	}
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	// A daemon the command leaves running must not hold the test up.
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		need(t, "shellcheck is not installed: %v", err)
	}
	dir := t.TempDir()
	scripts := map[string]string{}
	each(t, func(t *testing.T, p *cluster.Plan, n cluster.Node) {
		s, err := BootScript(p, n)
		if err != nil {
			t.Fatal(err)
		}
		scripts[strings.ReplaceAll(t.Name(), "/", "-")+".sh"] = s
		files, err := Files(p, n)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasPrefix(f.Content, "#!/bin/sh") || strings.HasPrefix(f.Content, "#!/bin/bash") {
				scripts[strings.ReplaceAll(t.Name(), "/", "-")+"-"+filepath.Base(f.Path)] = f.Content
			}
		}
	})
	for _, want := range []string{"post-bootstrap", "ecr-login", "backup", "tls-refresh", "app-run", "pgha-etcd-rejoin"} {
		found := false
		for name := range scripts {
			found = found || strings.HasSuffix(name, "-"+want)
		}
		if !found {
			t.Errorf("no %s script to check", want)
		}
	}
	for name, s := range scripts {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := run(t, "shellcheck", "--norc", path); err != nil {
			t.Errorf("shellcheck %s: %v\n%s", name, err, out)
		}
	}
}

func TestHAProxyAcceptsConfig(t *testing.T) {
	root := rootfs(t, "usr/sbin/haproxy")
	host, inRoot := tempInRoot(t, root)
	for name, p := range plans(t) {
		cfg, err := HAProxyCfg(p)
		if err != nil {
			t.Fatal(err)
		}
		cfg = string(tlsFiles(t, p, host, inRoot)("", []byte(cfg)))
		// The userlist the boot writes, here with a hash of a test password.
		cfg += "\nuserlist " + haproxyUserlist + "\n    user pgha password $6$pghatest$zrnyVVHALlh1B/atdVP0kssLo7i6YoXbSeDaQWnLPqm4MwOxSpjol9CqU/ZXI/wIsaFbzT6FfVVrK2WgMvONT/\n"
		if err := os.WriteFile(filepath.Join(host, name+".cfg"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, "chroot", root, "/usr/sbin/haproxy", "-c", "-V", "-f", inRoot+"/"+name+".cfg")
		if err != nil || !strings.Contains(out, "Configuration file is valid") || strings.Contains(out, "[WARNING]") {
			t.Errorf("haproxy -c %s: %v\n%s", name, err, out)
		}
	}
}

// netns creates a network namespace with lo up and ips on it, deleted when
// the test ends.
func netns(t *testing.T, ips ...string) string {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		need(t, "no ip command: %v", err)
	}
	ns := fmt.Sprintf("pgha-render-%d", os.Getpid())
	if out, err := run(t, "ip", "netns", "add", ns); err != nil {
		need(t, "ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := run(t, "ip", "netns", "delete", ns); err != nil {
			t.Errorf("ip netns delete %s: %v\n%s", ns, err, out)
		}
	})
	cmds := [][]string{{"ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"}}
	for _, ip := range ips {
		cmds = append(cmds, []string{"ip", "netns", "exec", ns, "ip", "addr", "add", ip + "/32", "dev", "lo"})
	}
	for _, c := range cmds {
		if out, err := run(t, c[0], c[1:]...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	return ns
}

// TestEtcdAndPatroniAcceptConfig starts the default plan's three etcd
// members from their rendered configurations in a throwaway network
// namespace holding their IPs, waits for a healthy cluster, then runs
// `patroni --validate-config` on every PostgreSQL node's patroni.yml there
// (it checks that etcd answers and that the node's ports are free, so it
// needs the node's IP and a live etcd).
func TestEtcdAndPatroniAcceptConfig(t *testing.T) {
	root := rootfs(t, "usr/bin/patroni")
	rootfs(t, "usr/bin/etcd")
	p := plans(t)["default"]
	var ips []string
	for _, n := range p.Nodes {
		if n.Role == cluster.RoleEtcd || n.Role == cluster.RolePostgres {
			ips = append(ips, n.IP.String())
		}
	}
	ns := netns(t, ips...)
	host, inRoot := tempInRoot(t, root)
	tlsConf := tlsFiles(t, p, host, inRoot)

	var endpoints []string
	for _, n := range p.ByRole(cluster.RoleEtcd) {
		y, err := EtcdYAML(p, n)
		if err != nil {
			t.Fatal(err)
		}
		// Same configuration but a data directory of the test's own, and no
		// 127.0.0.1 listener (the members share the namespace).
		y = bytes.Replace(y, []byte("data-dir: "+EtcdDataDir), []byte("data-dir: "+inRoot+"/"+n.Name), 1)
		y = bytes.Replace(y, []byte(",https://127.0.0.1:2379"), nil, 1)
		y = tlsConf(n.Name, y)
		conf := filepath.Join(host, n.Name+".yml")
		if err := os.WriteFile(conf, y, 0o644); err != nil {
			t.Fatal(err)
		}
		var log bytes.Buffer
		cmd := exec.Command("ip", "netns", "exec", ns, "chroot", root, "/usr/bin/etcd", "--config-file", inRoot+"/"+n.Name+".yml")
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// A lone member may ignore SIGTERM: SIGKILL, it is a throwaway.
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s log:\n%s", n.Name, log.String())
			}
		})
		endpoints = append(endpoints, fmt.Sprintf("https://%s:2379", n.IP))
	}
	// etcdctl as Patroni connects: with a PostgreSQL node's certificate.
	pg1 := p.ByRole(cluster.RolePostgres)[0].Name
	etcdctl := []string{"ip", "netns", "exec", ns, "chroot", root, "/usr/bin/etcdctl",
		"--cacert", inRoot + "/tls/ca.crt", "--cert", inRoot + "/tls/" + pg1 + "/node.crt", "--key", inRoot + "/tls/" + pg1 + "/node.key"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := run(t, etcdctl[0], append(etcdctl[1:], "--endpoints", strings.Join(endpoints, ","), "endpoint", "health")...)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd cluster from the rendered configs not healthy after 30 s: %v\n%s", err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Without a client certificate etcd refuses (client-cert-auth).
	out, err := run(t, "ip", "netns", "exec", ns, "chroot", root, "/usr/bin/etcdctl", "--cacert", inRoot+"/tls/ca.crt",
		"--dial-timeout", "2s", "--command-timeout", "3s", "--endpoints", endpoints[0], "get", "/x")
	if err == nil {
		t.Errorf("etcdctl without a client certificate was served:\n%s", out)
	}

	// Patroni reads its configuration directory as the node has it: the
	// static file and, in the primary region, the fetched bootstrap.dcs.
	for _, n := range p.ByRole(cluster.RolePostgres) {
		files, err := Files(p, n)
		if err != nil {
			t.Fatal(err)
		}
		fetched, err := Fetched(p, n)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fetched {
			files = append(files, f.File)
		}
		dir := filepath.Join(host, n.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if filepath.Dir(f.Path) == PatroniConfig {
				if err := os.WriteFile(filepath.Join(dir, filepath.Base(f.Path)), tlsConf(n.Name, []byte(f.Content)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		// What the boot writes from Secrets Manager.
		secrets := fmt.Sprintf(strings.ReplaceAll(patroniSecretsFormat, `\n`, "\n"), Header, "a", "b", "c")
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(PatroniSecretsConfig)), []byte(secrets), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, "ip", "netns", "exec", ns, "chroot", root, "/usr/bin/patroni", "--validate-config", inRoot+"/"+n.Name)
		if err != nil || regexp.MustCompile(`\S`).MatchString(out) {
			t.Errorf("patroni --validate-config %s: %v\n%s", n.Name, err, out)
		}
	}
}

// TestPostBootstrapCreatesRoles runs the rendered post-bootstrap script
// twice (it must be idempotent) against a throwaway PostgreSQL 17 from the
// Debian 13 root, as Patroni would, and checks what it created.
func TestPostBootstrapCreatesRoles(t *testing.T) {
	root := rootfs(t, "usr/lib/postgresql/17/bin/initdb")
	p := plans(t)["default"]
	script, err := PostBootstrap(p)
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := lookupUser(t, root, "postgres")
	host, inRoot := tempInRoot(t, root)
	if err := os.WriteFile(filepath.Join(host, "post-bootstrap"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(host, uid, gid); err != nil {
		t.Fatal(err)
	}
	asPostgres := func(env []string, argv ...string) (string, error) {
		args := append([]string{fmt.Sprintf("--userspec=%d:%d", uid, gid), root, "/usr/bin/env", "-i",
			"PATH=/usr/bin:/bin", "HOME=" + inRoot}, env...)
		return run(t, "chroot", append(args, argv...)...)
	}
	data, bin := inRoot+"/data", BinDir
	if out, err := asPostgres(nil, bin+"/initdb", "--auth=peer", "--username=postgres", "-D", data); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	opts := fmt.Sprintf("-c listen_addresses='' -c unix_socket_directories=%s -c dynamic_shared_memory_type=mmap", inRoot)
	if out, err := asPostgres(nil, bin+"/pg_ctl", "-D", data, "-l", inRoot+"/postgres.log", "-o", opts, "-w", "start"); err != nil {
		t.Fatalf("pg_ctl start: %v\n%s", err, out)
	}
	t.Cleanup(func() { asPostgres(nil, bin+"/pg_ctl", "-D", data, "-m", "immediate", "stop") })

	conn := fmt.Sprintf("host=%s user=postgres dbname=postgres", inRoot)
	// The script reads the passwords from Secrets Manager with the AWS CLI:
	// here Debian's moto server, which has no secrets yet.
	rootfs(t, "usr/bin/moto_server")
	endpoint := motoserver.Start(t, root)
	env := []string{"AWS_ENDPOINT_URL=" + endpoint, "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test"}
	if out, err := asPostgres(env, "/bin/sh", inRoot+"/post-bootstrap", conn); err == nil {
		t.Errorf("post-bootstrap ran without passwords:\n%s", out)
	}
	for sec, pw := range map[cluster.Secret]string{cluster.SecretApp: "app-secret-1", cluster.SecretHealth: "health-secret-2"} {
		if out, err := asPostgres(env, "/usr/bin/aws", "secretsmanager", "create-secret", "--region", p.Primary().Name,
			"--name", p.Config.SecretName(sec), "--secret-string", pw); err != nil {
			t.Fatalf("create secret: %v\n%s", err, out)
		}
	}
	for i := range 2 {
		out, err := asPostgres(env, "/bin/sh", inRoot+"/post-bootstrap", conn)
		if err != nil {
			t.Fatalf("post-bootstrap run %d: %v\n%s", i+1, err, out)
		}
		if strings.Contains(out, "secret-") {
			t.Errorf("post-bootstrap printed a password:\n%s", out)
		}
	}
	db := p.Config.App.Database
	query := fmt.Sprintf(`SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolpassword LIKE 'SCRAM-SHA-256$%%',
		has_database_privilege(r.rolname, 'postgres', 'CONNECT'), has_database_privilege(r.rolname, '%s', 'CONNECT'),
		(SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '%s'),
		has_function_privilege(r.rolname, 'pg_ls_archive_statusdir()', 'EXECUTE')
		FROM pg_authid r WHERE r.rolname IN ('app', 'pgha_health') ORDER BY 1`, db, db)
	out, err := asPostgres(nil, bin+"/psql", "--no-psqlrc", "-tA", conn, "-c", query)
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	want := "app|t|f|t|t|t|app|f\npgha_health|t|f|t|t|f|app|t\n"
	if out != want {
		t.Errorf("roles (name|login|super|scram|connect postgres|connect %s|owner of %s|reads the archive status):\n%s\nwant:\n%s", db, db, out, want)
	}
	appDB := fmt.Sprintf("host=%s user=postgres dbname=%s", inRoot, db)
	out, err = asPostgres(nil, bin+"/psql", "--no-psqlrc", "-tA", appDB, "-c",
		"SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'app'")
	if err != nil || out != "app|app\n" {
		t.Errorf("schema app in %s (name|owner) = %q, %v; want app|app", db, out, err)
	}
}

func lookupUser(t *testing.T, root, name string) (uid, gid int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) > 3 && f[0] == name {
			if _, err := fmt.Sscan(f[2]+" "+f[3], &uid, &gid); err != nil {
				t.Fatal(err)
			}
			return uid, gid
		}
	}
	t.Fatalf("no user %s in %s/etc/passwd", name, root)
	return 0, 0
}

// TestPgBackRestAcceptsConfig runs Debian 13's pgBackRest on every
// PostgreSQL node's pgbackrest.conf and the boot's buckets file: it must
// parse every option (an unknown or invalid one is an error before any
// connection), and then fail only because the buckets cannot be reached.
// systemd-analyze checks the backup timers' calendar events.
func TestPgBackRestAcceptsConfig(t *testing.T) {
	root := rootfs(t, "usr/bin/pgbackrest")
	host, inRoot := tempInRoot(t, root)
	// The nodes' files differ in addresses only: one node per plan.
	each(t, func(t *testing.T, p *cluster.Plan, n cluster.Node) {
		if n.Name != p.ByRole(cluster.RolePostgres)[0].Name {
			return
		}
		conf, err := PgBackRestConf(p, n)
		if err != nil {
			t.Fatal(err)
		}
		format, repos := PgBackRestBucketsFormat(p)
		args := []any{Header}
		for range repos {
			args = append(args, "123456789012")
		}
		buckets := fmt.Sprintf(strings.ReplaceAll(format, `\n`, "\n"), args...)
		dir := filepath.Join(host, n.Name)
		if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "pgbackrest.conf"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "conf.d", "buckets.conf"), []byte(buckets), 0o644); err != nil {
			t.Fatal(err)
		}
		in := inRoot + "/" + n.Name
		// No route to S3 here: every repository fails to connect, after
		// the whole configuration was read and checked.
		out, err := run(t, "unshare", "-n", "chroot", root, "/usr/bin/pgbackrest", "--config="+in+"/pgbackrest.conf",
			"--config-include-path="+in+"/conf.d", "--stanza="+p.Config.Stanza(), "--io-timeout=1", "--log-level-console=detail", "--output=json", "info")
		// key-type auto: the credentials come from the metadata service.
		if n := strings.Count(out, "unable to connect to '169.254.169.254:80'"); n < repos || !strings.Contains(out, fmt.Sprintf(`"key":%d`, repos)) {
			t.Errorf("pgbackrest info (%v) does not report every repository failing on the metadata service:\n%s", err, out)
		}
		for _, bad := range []string{"ERROR: [029]", "ERROR: [031]", "ERROR: [032]", "ERROR: [037]", "ERROR: [038]", "invalid", "not valid"} {
			if strings.Contains(out, bad) {
				t.Errorf("pgbackrest rejects the configuration (%s)", bad)
			}
		}
		for name, timer := range backupTimers(p, n) {
			for _, line := range strings.Split(timer, "\n") {
				if cal, ok := strings.CutPrefix(line, "OnCalendar="); ok {
					if out, err := run(t, "chroot", root, "/usr/bin/systemd-analyze", "calendar", cal); err != nil {
						t.Errorf("%s: systemd-analyze calendar %q: %v\n%s", name, cal, err, out)
					}
				}
			}
		}
	})
}
