package local

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/render"
)

// privateDirs are directories every node gets its own copy of, besides
// those render.Dirs and render.Files name: scratch space and runtime state
// that nodes sharing one root filesystem must not share.
var privateDirs = []string{"/run", "/tmp"}

// nodeBinds returns the directories of node n that are mounted over the
// shared root filesystem: render.Dirs, the parents of render.Files and
// privateDirs, without those already inside another, sorted.
func nodeBinds(n cluster.Node, files []render.File) []string {
	var dirs []string
	for _, d := range render.Dirs(n) {
		dirs = append(dirs, d.Path)
	}
	for _, f := range files {
		dirs = append(dirs, path.Dir(f.Path))
	}
	dirs = append(dirs, privateDirs...)
	slices.Sort(dirs)
	dirs = slices.Compact(dirs)
	var out []string
	for _, d := range dirs {
		inside := slices.ContainsFunc(out, func(p string) bool { return strings.HasPrefix(d, p+"/") })
		if !inside {
			out = append(out, d)
		}
	}
	return out
}

// prepareNode writes node n's own directories and files under its node
// directory, at the paths render gives them on EC2, plus the secrets its
// services read.
func (c *Cluster) prepareNode(n cluster.Node) error {
	users, err := readPasswd(c.st.RootFS)
	if err != nil {
		return err
	}
	owner := func(name string) (account, error) {
		a, ok := users[name]
		if !ok {
			return account{}, fmt.Errorf("user %s not in %s/etc/passwd", name, c.st.RootFS)
		}
		return a, nil
	}
	base := c.nodeDir(n.Name)
	var files []render.File
	if n.Role != cluster.RoleApp {
		if files, err = c.nodeFiles(n); err != nil {
			return err
		}
	}
	for _, d := range nodeBinds(n, files) {
		// The shared root needs a mount point; /etc directories start
		// as a copy of the package's (haproxy's errors/, for instance).
		rootDir := filepath.Join(c.st.RootFS, d)
		if err := os.MkdirAll(rootDir, 0o755); err != nil {
			return err
		}
		own := filepath.Join(base, d)
		if err := os.MkdirAll(own, 0o755); err != nil {
			return err
		}
		if strings.HasPrefix(d, "/etc/") {
			if out, err := exec.Command("cp", "-a", rootDir+"/.", own+"/").CombinedOutput(); err != nil {
				return fmt.Errorf("copy %s: %w: %s", rootDir, err, out)
			}
		}
		if d == "/tmp" {
			if err := os.Chmod(own, 0o1777); err != nil {
				return err
			}
		}
	}
	for _, d := range render.Dirs(n) {
		a, err := owner(d.Owner)
		if err != nil {
			return err
		}
		p := filepath.Join(base, d.Path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		if err := os.Chown(p, a.uid, a.gid); err != nil {
			return err
		}
		if err := os.Chmod(p, d.Mode); err != nil {
			return err
		}
	}
	for _, f := range files {
		a, err := owner(f.Owner)
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(base, f.Path), []byte(f.Content), f.Mode, a); err != nil {
			return err
		}
	}
	// What the boot script fetches from Secrets Manager on EC2.
	if vars := render.SecretEnv(n.Role); len(vars) > 0 {
		var b strings.Builder
		for _, v := range vars {
			pw, err := c.Secret(v.Secret)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "%s=%s\n", v.Name, pw)
		}
		if err := writeFile(filepath.Join(base, render.EnvFile), []byte(b.String()), 0o600, account{}); err != nil {
			return err
		}
	}
	if n.Role == cluster.RoleApp {
		pw, err := c.Secret(cluster.SecretApp)
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(base, render.AppPasswordFile), []byte(pw), 0o600, account{}); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(p string, content []byte, mode os.FileMode, a account) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, content, mode); err != nil {
		return err
	}
	if err := os.Chmod(p, mode); err != nil {
		return err
	}
	return os.Chown(p, a.uid, a.gid)
}

// nodeFiles are the files node n gets on EC2: those its boot script
// carries, and those it fetches from Parameter Store.
func (c *Cluster) nodeFiles(n cluster.Node) ([]render.File, error) {
	files, err := render.Files(c.plan, n)
	if err != nil {
		return nil, err
	}
	fetched, err := render.Fetched(c.plan, n)
	if err != nil {
		return nil, err
	}
	for _, f := range fetched {
		files = append(files, f.File)
	}
	return files, nil
}

// launches returns how to start each daemon of node n: render.Services'
// commands in the shared root with the node's own directories, except the
// app, which runs on the host's filesystem (it is a container on EC2).
func (c *Cluster) launches(n cluster.Node) ([]launch, error) {
	ns := nodeNS(n.Name)
	base := c.nodeDir(n.Name)
	logFile := func(service string) string {
		return filepath.Join(c.dir, "logs", n.Name+"-"+service+".log")
	}
	if n.Role == cluster.RoleApp {
		env := render.AppEnv(c.plan, n)
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		env["DATABASE_PASSWORD_FILE"] = filepath.Join(base, render.AppPasswordFile)
		return []launch{{
			service: "app", ns: ns, argv: []string{c.st.App},
			env: append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, envList(env)...), logFile: logFile("app"),
		}}, nil
	}
	users, err := readPasswd(c.st.RootFS)
	if err != nil {
		return nil, err
	}
	files, err := c.nodeFiles(n)
	if err != nil {
		return nil, err
	}
	var binds [][2]string
	for _, d := range nodeBinds(n, files) {
		binds = append(binds, [2]string{filepath.Join(base, d), d})
	}
	svcs, err := render.Services(c.plan, n)
	if err != nil {
		return nil, err
	}
	var out []launch
	for _, s := range svcs {
		a, ok := users[s.User]
		if !ok {
			return nil, fmt.Errorf("%s: user %s not in the root filesystem", s.Unit, s.User)
		}
		env := map[string]string{}
		if s.EnvFile != "" {
			if env, err = readEnvFile(filepath.Join(base, s.EnvFile)); err != nil {
				return nil, err
			}
		}
		// The environment systemd gives a unit with User=.
		env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
		env["HOME"] = a.home
		env["USER"] = s.User
		env["LOGNAME"] = s.User
		env["LANG"] = "C.UTF-8"
		name := strings.TrimSuffix(strings.TrimPrefix(s.Unit, "pgha-"), ".service")
		out = append(out, launch{
			service: name, ns: ns, rootfs: c.st.RootFS, binds: binds,
			uid: a.uid, gid: a.gid, env: envList(env), argv: s.Command, logFile: logFile(name),
		})
	}
	return out, nil
}

func envList(env map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// readEnvFile reads a systemd EnvironmentFile of plain KEY=value lines.
func readEnvFile(p string) (map[string]string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: not KEY=value: %q", p, line)
		}
		env[k] = v
	}
	return env, nil
}

// startNode starts every daemon of node n and records them.
func (c *Cluster) startNode(n cluster.Node) error {
	ls, err := c.launches(n)
	if err != nil {
		return err
	}
	ps, err := startAll(ls)
	if err != nil {
		return err
	}
	return c.update(func(st *state) error {
		st.Procs[n.Name] = ps
		return nil
	})
}

// startAll starts every launch, in order.
func startAll(ls []launch) ([]proc, error) {
	var ps []proc
	for _, l := range ls {
		p, err := l.start()
		if err != nil {
			return ps, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// restartDead starts again the daemons of node n that are not running, as
// systemd would on a host that reboots. It looks and starts under the
// state's lock, so that it and the health checker do not both start the
// app.
func (c *Cluster) restartDead(n cluster.Node) error {
	ls, err := c.launches(n)
	if err != nil {
		return err
	}
	return c.update(func(st *state) error {
		old := st.Procs[n.Name]
		var ps []proc
		for _, l := range ls {
			i := slices.IndexFunc(old, func(p proc) bool { return p.Service == l.service })
			if i >= 0 && old[i].alive() {
				ps = append(ps, old[i])
				continue
			}
			c.logf("starting %s on %s", l.service, n.Name)
			p, err := l.start()
			if err != nil {
				return err
			}
			ps = append(ps, p)
		}
		st.Procs[n.Name] = ps
		return nil
	})
}
