package render

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/cluster"
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
			if strings.HasPrefix(f.Content, "#!/bin/sh") {
				scripts[filepath.Base(f.Path)] = f.Content
			}
		}
	})
	for _, want := range []string{"post-bootstrap", "ecr-login"} {
		if scripts[want] == "" {
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

	var endpoints []string
	for _, n := range p.ByRole(cluster.RoleEtcd) {
		y, err := EtcdYAML(p, n)
		if err != nil {
			t.Fatal(err)
		}
		// Same configuration but a data directory of the test's own, and no
		// 127.0.0.1 listener (the members share the namespace).
		y = bytes.Replace(y, []byte("data-dir: "+EtcdDataDir), []byte("data-dir: "+inRoot+"/"+n.Name), 1)
		y = bytes.Replace(y, []byte(",http://127.0.0.1:2379"), nil, 1)
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
		endpoints = append(endpoints, fmt.Sprintf("http://%s:2379", n.IP))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := run(t, "ip", "netns", "exec", ns, "chroot", root, "/usr/bin/etcdctl",
			"--endpoints", strings.Join(endpoints, ","), "endpoint", "health")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd cluster from the rendered configs not healthy after 30 s: %v\n%s", err, out)
		}
		time.Sleep(500 * time.Millisecond)
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
				if err := os.WriteFile(filepath.Join(dir, filepath.Base(f.Path)), []byte(f.Content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
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
	env := []string{"PGHA_APP_PASSWORD=app-secret-1", "PGHA_HEALTH_PASSWORD=health-secret-2"}
	for i := range 2 {
		out, err := asPostgres(env, "/bin/sh", inRoot+"/post-bootstrap", conn)
		if err != nil {
			t.Fatalf("post-bootstrap run %d: %v\n%s", i+1, err, out)
		}
		if strings.Contains(out, "secret") {
			t.Errorf("post-bootstrap printed a password:\n%s", out)
		}
	}
	if out, err := asPostgres(nil, "/bin/sh", inRoot+"/post-bootstrap", conn); err == nil {
		t.Errorf("post-bootstrap ran without passwords:\n%s", out)
	}
	db := p.Config.App.Database
	query := fmt.Sprintf(`SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolpassword LIKE 'SCRAM-SHA-256$%%',
		has_database_privilege(r.rolname, 'postgres', 'CONNECT'), has_database_privilege(r.rolname, '%s', 'CONNECT'),
		(SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '%s')
		FROM pg_authid r WHERE r.rolname IN ('app', 'pgha_health') ORDER BY 1`, db, db)
	out, err := asPostgres(nil, bin+"/psql", "--no-psqlrc", "-tA", conn, "-c", query)
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	want := "app|t|f|t|t|t|app\npgha_health|t|f|t|t|f|app\n"
	if out != want {
		t.Errorf("roles (name|login|super|scram|connect postgres|connect %s|owner of %s):\n%s\nwant:\n%s", db, db, out, want)
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
