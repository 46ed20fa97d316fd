package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/render"
)

// Every node is a Debian 13 system booted by systemd-nspawn, with systemd
// as PID 1, on its own overlay of the node image (nodeDir/upper is its
// disk, kept until Down), in its network namespace. cloud-init finds the
// node's user data, render.UserData byte for byte, in a NoCloud seed
// and runs it on the first boot, once per instance, as on EC2. A
// PostgreSQL node's data volume is nodeDir/volume, mounted at
// render.DataMount.
//
// systemd-nspawn runs in the root namespace (ip netns exec would hide
// the cgroup mounts it needs) and joins the node's network namespace;
// every process of the node's system is in that namespace.

// nodeService is the one proc recorded per node: its systemd-nspawn.
const nodeService = "node"

// mountOverlay mounts, at dir/root, an overlay of lower with dir/upper and
// dir/work, unless it is mounted already.
func mountOverlay(lower, dir string) error {
	root := filepath.Join(dir, "root")
	for _, d := range []string{root, filepath.Join(dir, "upper"), filepath.Join(dir, "work")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if isMount(root) {
		return nil
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount the overlay %s: %w", root, err)
	}
	return nil
}

// isMount reports whether p is a mount point.
func isMount(p string) bool {
	var st, parent syscall.Stat_t
	if syscall.Stat(p, &st) != nil || syscall.Stat(filepath.Dir(p), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// unmountOverlay unmounts dir/root when it is mounted.
func unmountOverlay(dir string) error { return unmount(filepath.Join(dir, "root")) }

// unmount unmounts the file system at p, when one is mounted there.
func unmount(p string) error {
	if !isMount(p) {
		return nil
	}
	if err := unix.Unmount(p, 0); err != nil {
		// A process that still holds it goes away soon after.
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", p, err)
		}
	}
	return nil
}

func (c *Cluster) nodeRoot(node string) string { return filepath.Join(c.nodeDir(node), "root") }

// VolumeSize is the size of a PostgreSQL node's data volume: a tmpfs,
// so that it can fill up as an EBS volume does (FillVolume) without
// filling the host's disk. It takes memory only for what is written.
const VolumeSize = "2g"

// mountVolume mounts a data volume at dir, unless it is mounted already.
func mountVolume(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if isMount(dir) {
		return nil
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+VolumeSize+",mode=0755"); err != nil {
		return fmt.Errorf("mount the data volume %s: %w", dir, err)
	}
	return nil
}

// nodeVolume is a PostgreSQL node's data volume (EC2: its EBS volume), a
// tmpfs of VolumeSize.
func (c *Cluster) nodeVolume(node string) string { return filepath.Join(c.nodeDir(node), "volume") }

// seedDir is cloud-init's NoCloud seed in a node's root.
const seedDir = "/var/lib/cloud/seed/nocloud"

// instanceID is node n's EC2-style instance ID.
func instanceID(n cluster.Node) string { return "i-pgha" + strings.ReplaceAll(n.Name, "-", "") }

// caBundle is the system's CA bundle (Debian's ca-certificates), which
// curl, the AWS CLI and podman read.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// prepareNode mounts node n's disk and writes into it what EC2 gives an
// instance before its first boot: the user data (as cloud-init's seed),
// its hostname, and (the local image's own) the names of AWS's endpoints
// and trust in the cluster CA that serves them.
func (c *Cluster) prepareNode(n cluster.Node) error {
	dir := c.nodeDir(n.Name)
	if err := mountOverlay(c.st.RootFS, dir); err != nil {
		return err
	}
	root := c.nodeRoot(n.Name)
	userData, err := render.UserData(c.plan, n)
	if err != nil {
		return err
	}
	meta := fmt.Sprintf("instance-id: %s\nlocal-hostname: %s\n", instanceID(n), n.Name)
	ca, err := os.ReadFile(c.tls().CA)
	if err != nil {
		return err
	}
	bundle, err := os.ReadFile(filepath.Join(c.st.RootFS, caBundle))
	if err != nil {
		return err
	}
	hosts := fmt.Sprintf("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n%s %s\n", n.IP, n.Name) +
		awsHosts(c.plan, c.st.LinkNet)
	for _, f := range []struct {
		path    string
		content []byte
		mode    os.FileMode
	}{
		{seedDir + "/meta-data", []byte(meta), 0o600},
		{seedDir + "/user-data", userData, 0o600},
		{"/etc/hostname", []byte(n.Name + "\n"), 0o644},
		{"/etc/hosts", []byte(hosts), 0o644},
		{"/usr/local/share/ca-certificates/pgha-local-aws.crt", ca, 0o644},
		{caBundle, append(bundle, ca...), 0o644},
	} {
		if err := writeFile(filepath.Join(root, f.path), f.content, f.mode, account{}); err != nil {
			return err
		}
	}
	if n.Role == cluster.RolePostgres {
		users, err := readPasswd(c.st.RootFS)
		if err != nil {
			return err
		}
		pg, ok := users["postgres"]
		if !ok {
			return fmt.Errorf("no user postgres in %s/etc/passwd", c.st.RootFS)
		}
		if err := mountVolume(c.nodeVolume(n.Name)); err != nil {
			return err
		}
		if err := os.Chown(c.nodeVolume(n.Name), pg.uid, pg.gid); err != nil {
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

// bootLaunch is how node n boots: systemd-nspawn with systemd as PID 1,
// its console (where journald copies every unit's messages) appended to
// logs/NODE.log.
func (c *Cluster) bootLaunch(n cluster.Node) launch {
	argv := []string{"systemd-nspawn", "--quiet", "--boot",
		"--directory=" + c.nodeRoot(n.Name), "--machine=" + n.Name,
		// No systemd on the host to register with or to run a scope.
		"--register=no", "--keep-unit",
		"--network-namespace-path=/run/netns/" + nodeNS(n.Name),
		// /etc/hosts and the seed say what EC2 would: nothing of the host's.
		"--resolv-conf=off", "--timezone=off", "--link-journal=no",
		"--setenv=SYSTEMD_COLORS=0",
	}
	if n.Role == cluster.RolePostgres {
		argv = append(argv, "--bind="+c.nodeVolume(n.Name)+":"+render.DataMount)
	}
	return launch{
		service: nodeService, argv: argv,
		env:     []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		logFile: c.nodeLog(n.Name),
	}
}

// nodeLog is node n's console: its boot and every unit's messages.
func (c *Cluster) nodeLog(node string) string {
	return filepath.Join(c.dir, "logs", node+".log")
}

// startNode boots node n and records its systemd-nspawn.
func (c *Cluster) startNode(n cluster.Node) error {
	p, err := c.bootLaunch(n).start()
	if err != nil {
		return err
	}
	return c.update(func(st *state) error {
		st.Procs[n.Name] = []proc{p}
		return nil
	})
}

// nodeUp reports whether node n's system runs (its systemd-nspawn lives).
func nodeUp(st state, node string) bool {
	return slices.ContainsFunc(st.Procs[node], proc.alive)
}

// restartDead boots node n again when its system is not running, as a
// crashed host that is powered on again: from the same disk and volume.
// It looks and starts under the state's lock.
func (c *Cluster) restartDead(n cluster.Node) error {
	return c.update(func(st *state) error {
		if nodeUp(*st, n.Name) {
			return nil
		}
		// What a killed system left (it should be nothing).
		signalNS(nodeNS(n.Name), syscall.SIGKILL)
		waitNSEmpty(context.Background(), nodeNS(n.Name), 10*time.Second)
		c.logf("booting %s", n.Name)
		p, err := c.bootLaunch(n).start()
		if err != nil {
			return err
		}
		st.Procs[n.Name] = []proc{p}
		return nil
	})
}

// shutdownNode shuts node n's system down in order (systemd-nspawn passes
// SIGTERM on to systemd as a power-off request), killing what is left
// after grace.
func (c *Cluster) shutdownNode(ctx context.Context, name string, grace time.Duration) error {
	ps := c.procs(name)
	for _, p := range ps {
		if p.alive() {
			_ = syscall.Kill(p.PID, syscall.SIGTERM)
		}
	}
	signalNS(nodeNS(name), syscall.SIGCONT) // a frozen node cannot shut down
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !slices.ContainsFunc(ps, proc.alive) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range ps {
		if p.alive() {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
	signalNS(nodeNS(name), syscall.SIGKILL)
	if !waitNSEmpty(context.WithoutCancel(ctx), nodeNS(name), 10*time.Second) {
		return fmt.Errorf("processes %v still in %s after SIGKILL", nsPIDs(nodeNS(name)), nodeNS(name))
	}
	return nil
}

// nodeInit returns the pid, in the root namespace, of node n's systemd:
// the child of its systemd-nspawn.
func (c *Cluster) nodeInit(name string) (int, error) {
	for _, p := range c.procs(name) {
		if !p.alive() {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.PID, p.PID))
		if err != nil {
			return 0, err
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("%s is not running", name)
}

// Exec runs argv inside node name's system (all its namespaces, as root)
// and returns its combined output: `systemctl is-active pgha-patroni`,
// `journalctl -u haproxy`.
func (c *Cluster) Exec(ctx context.Context, name string, argv ...string) ([]byte, error) {
	if _, err := c.node(name); err != nil {
		return nil, err
	}
	pid, err := c.nodeInit(name)
	if err != nil {
		return nil, err
	}
	args := append([]string{"--target", strconv.Itoa(pid), "--all", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root"}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s on %s: %w: %s", strings.Join(argv, " "), name, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// UnitsActive reports, for each of node name's render.Services units,
// whether systemd has it active.
func (c *Cluster) UnitsActive(ctx context.Context, name string) (map[string]bool, error) {
	n, err := c.node(name)
	if err != nil {
		return nil, err
	}
	svcs, err := render.Services(c.plan, n)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, s := range svcs {
		_, err := c.Exec(ctx, name, "systemctl", "is-active", "--quiet", s.Unit)
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			return nil, err
		}
		out[s.Unit] = err == nil
	}
	return out, nil
}
