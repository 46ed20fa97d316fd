package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgha/pgha/cluster"
)

// DefaultDir is where the local cluster keeps its data, relative to the
// working directory.
const DefaultDir = ".pgha-local"

// ErrNotUp is returned by Open when the directory holds no local cluster.
var ErrNotUp = errors.New("no local cluster here (run pgha-local up)")

// ErrAlreadyUp is returned by Up when the directory already holds a running
// local cluster.
var ErrAlreadyUp = errors.New("a local cluster is already up in this directory (pgha-local down first)")

// readyTimeout bounds how long Up waits for the cluster to become ready.
const readyTimeout = 4 * time.Minute

// stopGrace is how long a node gets to shut down before SIGKILL.
const stopGrace = 20 * time.Second

// Options configure Up.
type Options struct {
	// Dir holds node data, logs, secrets and state. Default: DefaultDir.
	Dir string
	// Config is the cluster to bring up. Default: cluster.Default().
	Config *cluster.Config
	// Log receives progress messages. Default: io.Discard.
	Log io.Writer
	// RootFS is the Debian 13 root filesystem, built if missing. Default:
	// DefaultRootFS.
	RootFS string
	// AppImage is the app's container image, pushed to the local
	// registry. Default: built from app/ (BuildAppImage), which needs the
	// working directory inside the module.
	AppImage *Image
	// Checker configures the health checker Up starts in each region that
	// has an app.
	Checker CheckerOptions
	// FirstRegion, when set, starts the PostgreSQL nodes of that region
	// HeadStart before the others (etcd first, as always): a test that
	// the cluster initialises in the primary region all the same.
	// Default: every node in plan order.
	FirstRegion string
	HeadStart   time.Duration
}

// state is what Open needs to find a running cluster again, kept in
// Dir/state.json.
type state struct {
	Config  cluster.Config `json:"config"`
	RootFS  string         `json:"rootfs"`
	LinkNet netip.Prefix   `json:"linkNet"`
	// Procs are each node's systemd-nspawn, by node name, and the AWS
	// side's emulator, registry and metadata service under awsNS.
	Procs map[string][]proc `json:"procs"`
	// Checkers are the health checkers, by region, and CheckerOptions how
	// they were started (Apply starts them again).
	Checkers       map[string]proc `json:"checkers,omitempty"`
	CheckerOptions CheckerOptions  `json:"checkerOptions"`
}

// Cluster is a local cluster, up or partly up. Its methods are safe for
// concurrent use.
type Cluster struct {
	dir  string
	plan *cluster.Plan
	log  io.Writer

	mu sync.Mutex // guards st; update also locks the state file
	st state
}

func (c *Cluster) net() network { return network{plan: c.plan, linkNet: c.st.LinkNet} }

// Plan returns the cluster's plan.
func (c *Cluster) Plan() *cluster.Plan { return c.plan }

// Dir returns the cluster's directory.
func (c *Cluster) Dir() string { return c.dir }

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.log, format+"\n", args...)
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

func (c *Cluster) nodeDir(node string) string { return filepath.Join(c.dir, "nodes", node) }

func (c *Cluster) secretPath(s cluster.Secret) string {
	return filepath.Join(c.dir, "secrets", string(s))
}

// saveLocked writes the state file; c.mu must be held.
func (c *Cluster) saveLocked() error {
	b, err := json.MarshalIndent(c.st, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(c.dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(c.dir))
}

// readState reads the state file. It needs no lock: the file is replaced
// by a rename, never written in place.
func readState(dir string) (state, error) {
	b, err := os.ReadFile(statePath(dir))
	if err != nil {
		return state{}, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return state{}, fmt.Errorf("read %s: %w", statePath(dir), err)
	}
	if st.Procs == nil {
		st.Procs = map[string][]proc{}
	}
	return st, nil
}

// update changes the state under the state file's lock: several processes
// write it (up, fault heal, the health checkers restarting the app), so it
// reads the file again, applies fn to it and writes the result.
func (c *Cluster) update(fn func(st *state) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(c.dir, "state.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer f.Close() // releases the lock
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock the state: %w", err)
	}
	switch st, err := readState(c.dir); {
	case err == nil:
		c.st = st
	case !errors.Is(err, os.ErrNotExist): // Up writes it first
		return err
	}
	if err := fn(&c.st); err != nil {
		return err
	}
	return c.saveLocked()
}

// reload reads the state file again, keeping what is in memory when it
// cannot be read.
func (c *Cluster) reload() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, err := readState(c.dir); err == nil {
		c.st = st
	}
}

// Open finds the local cluster kept in dir by an earlier Up, from this or
// another process.
func Open(dir string) (*Cluster, error) {
	if dir == "" {
		dir = DefaultDir
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	st, err := readState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotUp)
	}
	if err != nil {
		return nil, err
	}
	plan, err := cluster.NewPlan(st.Config)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(dir), err)
	}
	return &Cluster{dir: dir, plan: plan, log: io.Discard, st: st}, nil
}

// SetLog sends the cluster's progress messages to w.
func (c *Cluster) SetLog(w io.Writer) { c.log = w }

// Up brings the cluster up and returns when it is ready (see WaitReady).
// On failure, or when ctx is cancelled, it tears down what it created.
func Up(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Dir == "" {
		opts.Dir = DefaultDir
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.RootFS == "" {
		opts.RootFS = DefaultRootFS
	}
	cfg := cluster.Default()
	if opts.Config != nil {
		cfg = *opts.Config
	}
	plan, err := cluster.NewPlan(cfg)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := preflight(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(statePath(dir)); err == nil {
		return nil, fmt.Errorf("%s: %w", dir, ErrAlreadyUp)
	}
	if err := claim(dir); err != nil {
		return nil, err
	}
	claimed := true
	defer func() {
		if claimed {
			release(dir)
		}
	}()
	linkNet, err := chooseLinkNet(plan.CIDRs())
	if err != nil {
		return nil, err
	}
	routes, err := exec.CommandContext(ctx, "ip", "-j", "-4", "route", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("ip route: %w", err)
	}
	if err := checkRoutes(routes, append(plan.CIDRs(), linkNet)); err != nil {
		return nil, err
	}
	for _, ns := range (network{plan: plan}).namespaces() {
		if nsExists(ns) {
			return nil, fmt.Errorf("%w: network namespace %s already exists: is a local cluster up from another directory? (pgha-local down --dir there)", ErrRangeInUse, ns)
		}
	}
	if err := EnsureRootFS(ctx, opts.RootFS, opts.Log); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, plan: plan, log: opts.Log, st: state{
		Config: cfg, RootFS: opts.RootFS, LinkNet: linkNet, Procs: map[string][]proc{},
	}}
	appImage := opts.AppImage
	if len(plan.ByRole(cluster.RoleApp)) > 0 && appImage == nil {
		c.logf("building the app's image from app/Dockerfile")
		if appImage, err = BuildAppImage(ctx, "", runtime.GOARCH); err != nil {
			return nil, fmt.Errorf("build the app's image (run from inside the pgha module, or set Options.AppImage): %w", err)
		}
	}
	checker := opts.Checker
	if len(checkerRegions(plan)) == 0 {
		checker.Disabled = true
	}
	if checker.Interval <= 0 {
		checker.Interval = DefaultCheckerInterval
	}
	// pgha-local serves the metadata service and runs the health checkers.
	if checker.Binary == "" {
		checker.Binary = filepath.Join(dir, "bin", "pgha-local")
		c.logf("building pgha-local into %s", checker.Binary)
		if err := build(ctx, "github.com/pgha/pgha/cmd/pgha-local", checker.Binary); err != nil {
			return nil, fmt.Errorf("build pgha-local (run from inside the pgha module, or set Options.Checker.Binary): %w", err)
		}
	}
	// The state file exists before anything is created, so Down can
	// always find what to remove.
	if err := c.update(func(st *state) error { st.CheckerOptions = checker; return nil }); err != nil {
		return nil, err
	}
	claimed = false // Down releases it from now on
	if err := c.up(ctx, checker, opts, appImage); err != nil {
		c.logf("up failed: %v; tearing down (logs stay in %s)", err, filepath.Join(dir, "logs"))
		if derr := c.Down(context.WithoutCancel(ctx)); derr != nil {
			err = errors.Join(err, fmt.Errorf("tear down: %w", derr))
		}
		return nil, err
	}
	return c, nil
}

// startOrder is the order Up starts the nodes in: by role, or, when first
// is set, etcd, then first's PostgreSQL nodes, then the rest by role.
func startOrder(p *cluster.Plan, first string) []cluster.Node {
	var out []cluster.Node
	if first == "" {
		for _, role := range cluster.Roles {
			out = append(out, p.ByRole(role)...)
		}
		return out
	}
	out = append(out, p.ByRole(cluster.RoleEtcd)...)
	out = append(out, p.Select(first, cluster.RolePostgres)...)
	for _, role := range []cluster.Role{cluster.RolePostgres, cluster.RoleHAProxy, cluster.RoleApp} {
		for _, n := range p.ByRole(role) {
			if role != cluster.RolePostgres || n.Region != first {
				out = append(out, n)
			}
		}
	}
	return out
}

func (c *Cluster) up(ctx context.Context, checker CheckerOptions, opts Options, appImage *Image) error {
	start := time.Now()
	if err := c.writeSecrets(); err != nil {
		return err
	}
	c.logf("creating %d network namespaces (link net %s)", len(c.net().namespaces()), c.st.LinkNet)
	if err := c.net().create(ctx); err != nil {
		return err
	}
	if err := c.startAWS(ctx, checker.Binary, appImage); err != nil {
		return err
	}
	for _, n := range c.plan.Nodes {
		if err := c.prepareNode(n); err != nil {
			return fmt.Errorf("prepare %s: %w", n.Name, err)
		}
	}
	// The app starts with the database daemons, long before the cluster
	// is ready, as on EC2: it retries while the database is unavailable,
	// and the health checker restarts it if it gives up.
	order := startOrder(c.plan, opts.FirstRegion)
	for i, n := range order {
		if err := c.startNode(n); err != nil {
			return err
		}
		if opts.FirstRegion != "" && i+1 < len(order) && n.Region == opts.FirstRegion && n.Role == cluster.RolePostgres &&
			!(order[i+1].Region == opts.FirstRegion && order[i+1].Role == cluster.RolePostgres) {
			c.logf("%s's PostgreSQL nodes have a head start of %s", opts.FirstRegion, opts.HeadStart)
			select {
			case <-time.After(opts.HeadStart):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if !checker.Disabled {
		if err := c.startCheckers(checker); err != nil {
			return err
		}
		stop := c.watchCheckers(start)
		defer stop()
	}
	c.logf("nodes booting; waiting for a leader, streaming replicas, a write through HAProxy and the app")
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	return c.WaitReady(rctx)
}

// preflight checks what Up needs from the machine.
func preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("the local cluster needs root (network namespaces, mounts, systemd-nspawn): run it with sudo")
	}
	for _, tool := range []string{"ip", "unshare", "chroot", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found on PATH", tool)
		}
	}
	if _, err := exec.LookPath("systemd-nspawn"); err != nil {
		return errors.New("systemd-nspawn not found: install it with `apt-get install systemd-container` (make deps does)")
	}
	return nil
}

// build builds a command of the module as a static binary.
func build(ctx context.Context, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkg, err, strings.TrimSpace(string(b)))
	}
	return nil
}

// writeSecrets generates the cluster's passwords, each in a root-only
// file, keeping any that exist.
func (c *Cluster) writeSecrets() error {
	if err := os.MkdirAll(filepath.Join(c.dir, "secrets"), 0o700); err != nil {
		return err
	}
	for _, s := range cluster.Secrets {
		path := c.secretPath(s)
		if _, err := os.Stat(path); err == nil {
			continue
		}
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(b)), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Secret returns one of the cluster's passwords.
func (c *Cluster) Secret(s cluster.Secret) (string, error) {
	b, err := os.ReadFile(c.secretPath(s))
	if err != nil {
		return "", fmt.Errorf("read secret %s: %w", s, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Down shuts every node down, stops the AWS side, deletes the namespaces
// (and with them the veths and routes), unmounts the nodes' disks and
// removes them with the secrets and state. The logs stay in Dir/logs. It
// is safe on a cluster that is half up or already down.
func (c *Cluster) Down(ctx context.Context) error {
	var errs []error
	// The health checkers first: they would restart the app.
	c.logf("stopping the health checkers")
	errs = append(errs, c.stopCheckers(ctx))
	c.logf("shutting the nodes down")
	var front, etcd []string
	for _, n := range c.plan.Nodes {
		if n.Role == cluster.RoleEtcd {
			etcd = append(etcd, n.Name)
		} else {
			front = append(front, n.Name)
		}
	}
	// Patroni releases its leader key on the way out: keep etcd up until
	// the PostgreSQL nodes are gone.
	errs = append(errs, c.shutdownAll(ctx, front), c.shutdownAll(ctx, etcd))
	c.logf("stopping the AWS side")
	errs = append(errs, c.stopAWS(ctx))
	c.logf("removing the network namespaces")
	errs = append(errs, c.net().destroy(ctx))
	for _, n := range c.plan.Nodes {
		errs = append(errs, unmountOverlay(c.nodeDir(n.Name)), unmount(c.nodeVolume(n.Name)))
	}
	errs = append(errs, unmountOverlay(c.awsDir()))
	for _, sub := range []string{"nodes", "aws", "secrets", "tls", "bin", "state.json", "state.lock"} {
		errs = append(errs, os.RemoveAll(filepath.Join(c.dir, sub)))
	}
	errs = append(errs, release(c.dir))
	return errors.Join(errs...)
}

// shutdownAll shuts several nodes down in parallel.
func (c *Cluster) shutdownAll(ctx context.Context, nodes []string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Go(func() { errs[i] = c.shutdownNode(ctx, n, stopGrace) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// HAProxyAddrs returns the "ip:port" of each HAProxy node's write port
// (the leader), in plan order.
func (c *Cluster) HAProxyAddrs() []string {
	var out []string
	for _, n := range c.plan.ByRole(cluster.RoleHAProxy) {
		out = append(out, netip.AddrPortFrom(n.IP, cluster.PortHAProxyWrite).String())
	}
	return out
}

// HAProxyReadAddrs returns the "ip:port" of each HAProxy node's read port
// (the replicas), in plan order.
func (c *Cluster) HAProxyReadAddrs() []string {
	var out []string
	for _, n := range c.plan.ByRole(cluster.RoleHAProxy) {
		out = append(out, netip.AddrPortFrom(n.IP, cluster.PortHAProxyRead).String())
	}
	return out
}

// AppURL returns the first app node's base URL, or "" when there is none.
func (c *Cluster) AppURL() string {
	apps := c.plan.ByRole(cluster.RoleApp)
	if len(apps) == 0 {
		return ""
	}
	return appURL(apps[0])
}

func appURL(n cluster.Node) string {
	return "http://" + netip.AddrPortFrom(n.IP, cluster.PortApp).String()
}

// node returns a node of the plan by name.
func (c *Cluster) node(name string) (cluster.Node, error) {
	n, ok := c.plan.Node(name)
	if !ok {
		var names []string
		for _, n := range c.plan.Nodes {
			names = append(names, n.Name)
		}
		return cluster.Node{}, fmt.Errorf("no node %q (nodes: %s)", name, strings.Join(names, ", "))
	}
	return n, nil
}

// procs returns a copy of a node's recorded processes, as the state file
// has them now (the health checker may have restarted the app).
func (c *Cluster) procs(node string) []proc {
	c.reload()
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.st.Procs[node])
}
