package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/render"
)

// Fault is a failure Fault injects, or heals.
type Fault string

// The faults.
const (
	// Kill SIGKILLs every process of a node's system, systemd and
	// systemd-nspawn included: the host crashes and stays down until
	// healed, when it boots again from its disk.
	Kill Fault = "kill"
	// Stop SIGSTOPs every process of a node's system: the host hangs.
	Stop Fault = "stop"
	// Cont SIGCONTs them again.
	Cont Fault = "cont"
	// Isolate sets the router side of a node's link, or of a region's
	// link to the core router, down.
	Isolate Fault = "isolate"
	// Reboot shuts a node's system down in order (systemd stops every
	// unit) and boots it again from its disk and data volume.
	Reboot Fault = "reboot"
	// KillPostgres SIGKILLs PostgreSQL's postmaster on a PostgreSQL node
	// (its backends exit with it); Patroni stays and acts on it.
	KillPostgres Fault = "kill-postgres"
	// KillPatroni SIGKILLs Patroni on a PostgreSQL node and keeps systemd
	// from starting it again until healed (a drop-in for this boot sets
	// Restart=no): PostgreSQL goes on running with no Patroni to demote
	// it, as with a Patroni that crashes at every start.
	KillPatroni Fault = "kill-patroni"
	// FillVolume fills a PostgreSQL node's data volume (PostgreSQL's
	// data and its WAL, in pg_wal, share it): one file takes every free
	// byte, as a runaway table or WAL kept for a lost replica would.
	FillVolume Fault = "fill-volume"
	// Heal undoes any fault on a node or region: links up, SIGCONT, a
	// node whose system is down booted again (a crashed host powered on),
	// Patroni started again after KillPatroni, and the space FillVolume
	// took freed (on EC2: the EBS volume grown, the file system resized).
	Heal Fault = "heal"
)

// Faults lists every fault.
var Faults = []Fault{Kill, Stop, Cont, Isolate, Reboot, KillPostgres, KillPatroni, FillVolume, Heal}

// Shell commands of the process faults, run in the node.
const (
	killPostgresCmd = "kill -KILL \"$(head -n 1 " + render.DataDir + "/postmaster.pid)\""
	// A drop-in for this boot (/run) keeps systemd from restarting it.
	killPatroniCmd = "mkdir -p " + patroniFaultDir + " && printf '[Service]\\nRestart=no\\n' >" + patroniFaultDir + "/fault.conf && systemctl daemon-reload && systemctl kill --signal=KILL --kill-whom=main " + render.PatroniUnit
	// healPatroniCmd starts Patroni again where KillPatroni left it down.
	healPatroniCmd = "if [ -e " + patroniFaultDir + "/fault.conf ]; then rm " + patroniFaultDir + "/fault.conf && systemctl daemon-reload && systemctl reset-failed " + render.PatroniUnit +
		" && systemctl start " + render.PatroniUnit + "; fi"
	patroniFaultDir = "/run/systemd/system/" + render.PatroniUnit + ".d"
)

// rebootGrace bounds a node's orderly shutdown in Reboot.
const rebootGrace = 60 * time.Second

// LeaderTarget is the target naming the current leader.
const LeaderTarget = "leader"

// target is what a fault applies to: nodes, a region, or a region's S3.
type target struct {
	nodes  []cluster.Node
	region string // set when the target is a whole region
	s3     string // set when the target is a data region's S3 endpoint
}

// S3Target names data region region's S3 endpoint as a target: Isolate
// makes it unreachable (its packets are dropped, as in an outage: clients
// time out), Heal brings it back.
func S3Target(region string) string { return "s3." + region }

// resolveTarget turns a target name into nodes or a region. leader is the
// current leader's name, used for LeaderTarget.
func resolveTarget(p *cluster.Plan, f Fault, name, leader string) (target, error) {
	if !slices.Contains(Faults, f) {
		return target{}, fmt.Errorf("unknown fault %q (want one of %v)", f, Faults)
	}
	if name == LeaderTarget {
		if leader == "" {
			return target{}, errors.New("the cluster has no leader to target")
		}
		name = leader
	}
	if n, ok := p.Node(name); ok {
		if (f == KillPostgres || f == KillPatroni || f == FillVolume) && n.Role != cluster.RolePostgres {
			return target{}, fmt.Errorf("%s applies to a PostgreSQL node, not to %s (%s)", f, n.Name, n.Role)
		}
		return target{nodes: []cluster.Node{n}}, nil
	}
	if region, ok := strings.CutPrefix(name, "s3."); ok && slices.ContainsFunc(p.DataRegions(), func(r cluster.RegionPlan) bool { return r.Name == region }) {
		if f != Isolate && f != Heal {
			return target{}, fmt.Errorf("%s applies to a node, not to %s's S3 (it can be isolated and healed)", f, region)
		}
		return target{s3: region}, nil
	}
	if _, ok := p.Region(name); ok {
		if f != Isolate && f != Heal {
			return target{}, fmt.Errorf("%s applies to a node, not to region %s (regions can be isolated and healed)", f, name)
		}
		return target{nodes: p.InRegion(name), region: name}, nil
	}
	var names []string
	for _, n := range p.Nodes {
		names = append(names, n.Name)
	}
	for _, r := range p.Regions {
		names = append(names, r.Name)
	}
	for _, r := range p.DataRegions() {
		names = append(names, S3Target(r.Name))
	}
	return target{}, fmt.Errorf("unknown target %q (want %s, a node, a region or a region's S3: %s)", name, LeaderTarget, strings.Join(names, ", "))
}

// Fault injects fault f into target: a node name, LeaderTarget, or (for
// Isolate and Heal) a region name. It returns the nodes it applied to.
func (c *Cluster) Fault(ctx context.Context, f Fault, targetName string) ([]string, error) {
	leader := ""
	if targetName == LeaderTarget {
		var err error
		if leader, err = c.Leader(ctx); err != nil {
			return nil, err
		}
	}
	t, err := resolveTarget(c.plan, f, targetName, leader)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range t.nodes {
		names = append(names, n.Name)
	}
	if t.s3 != "" {
		return []string{S3Target(t.s3)}, c.cutS3(ctx, t.s3, f == Isolate)
	}
	switch f {
	case Kill:
		n := t.nodes[0]
		for _, p := range c.procs(n.Name) {
			if p.alive() {
				_ = syscall.Kill(p.PID, syscall.SIGKILL)
			}
		}
		signalNS(nodeNS(n.Name), syscall.SIGKILL)
		if !waitNSEmpty(ctx, nodeNS(n.Name), 10*time.Second) {
			return names, fmt.Errorf("processes of %s still running after SIGKILL", n.Name)
		}
	case Reboot:
		n := t.nodes[0]
		if err := c.shutdownNode(ctx, n.Name, rebootGrace); err != nil {
			return names, err
		}
		return names, c.restartDead(n)
	case KillPostgres, KillPatroni:
		cmd := killPostgresCmd
		if f == KillPatroni {
			cmd = killPatroniCmd
		}
		if _, err := c.Exec(ctx, t.nodes[0].Name, "/bin/sh", "-c", cmd); err != nil {
			return names, err
		}
	case FillVolume:
		return names, fillVolume(c.nodeVolume(t.nodes[0].Name))
	case Stop:
		signalNS(nodeNS(t.nodes[0].Name), syscall.SIGSTOP)
	case Cont:
		signalNS(nodeNS(t.nodes[0].Name), syscall.SIGCONT)
	case Isolate:
		if t.region != "" {
			return names, setLink(ctx, coreNS, regionVeth(c.regionIndex(t.region)), false)
		}
		n := t.nodes[0]
		return names, setLink(ctx, regionNS(n.Region), nodeVeth(n.ID), false)
	case Heal:
		if t.region != "" {
			i := c.regionIndex(t.region)
			if err := setLink(ctx, coreNS, regionVeth(i), true); err != nil {
				return names, err
			}
			if err := ip(ctx, c.net().regionRoute(i)...); err != nil {
				return names, err
			}
		}
		for _, n := range t.nodes {
			if err := setLink(ctx, regionNS(n.Region), nodeVeth(n.ID), true); err != nil {
				return names, err
			}
			signalNS(nodeNS(n.Name), syscall.SIGCONT)
			if n.Role == cluster.RolePostgres {
				if err := os.Remove(filepath.Join(c.nodeVolume(n.Name), fillFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return names, err
				}
			}
			if _, err := c.nodeInit(n.Name); err == nil && n.Role == cluster.RolePostgres {
				if _, err := c.Exec(ctx, n.Name, "/bin/sh", "-c", healPatroniCmd); err != nil {
					return names, err
				}
			}
			if err := c.restartDead(n); err != nil {
				return names, err
			}
		}
	}
	return names, nil
}

// fillFile is the file FillVolume writes at the root of a data volume.
const fillFile = "pgha-fill-volume"

// fillVolume allocates every free byte of the file system at volume to
// fillFile (fallocate: the blocks are taken, nothing is written), in
// chunks that halve whenever the file system refuses one: it keeps some
// space of what statfs says is free for itself.
func fillVolume(volume string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(volume, &st); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(volume, fillFile), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	end := fi.Size()
	for chunk := int64(st.Bavail) * st.Bsize; chunk >= 4096; {
		switch err := unix.Fallocate(int(f.Fd()), 0, end, chunk); {
		case err == nil:
			end += chunk
		case errors.Is(err, unix.ENOSPC):
			chunk /= 2
		default:
			return fmt.Errorf("fill %s: %w", volume, err)
		}
	}
	return nil
}

func (c *Cluster) regionIndex(region string) int {
	return slices.IndexFunc(c.plan.Regions, func(r cluster.RegionPlan) bool { return r.Name == region })
}

// Switchover moves the leader lock to node to (or, when to is "", to a
// node Patroni picks) through Patroni's REST API, and waits until the new
// leader runs. It returns the new leader and how long the change took.
func (c *Cluster) Switchover(ctx context.Context, to string) (string, time.Duration, error) {
	leader, err := c.Leader(ctx)
	if err != nil {
		return "", 0, err
	}
	if to != "" {
		n, err := c.node(to)
		if err != nil {
			return "", 0, err
		}
		if n.Role != cluster.RolePostgres {
			return "", 0, fmt.Errorf("%s is not a PostgreSQL node", to)
		}
		if to == leader {
			return "", 0, fmt.Errorf("%s already leads", to)
		}
	}
	ln, _ := c.plan.Node(leader)
	req := map[string]string{"leader": leader}
	if to != "" {
		req["candidate"] = to
	}
	body, err := json.Marshal(req)
	if err != nil {
		return "", 0, err
	}
	start := time.Now()
	post, err := http.NewRequestWithContext(ctx, http.MethodPost, patroniURL(ln.IP, "/switchover"), bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	post.Header.Set("Content-Type", "application/json")
	// As an operator on the leader does: from the node itself (a member's
	// address, which Patroni's allowlist admits), as the API user.
	pw, err := c.Secret(cluster.SecretPatroniAPI)
	if err != nil {
		return "", 0, err
	}
	post.SetBasicAuth(cluster.PatroniAPIUser, pw)
	client, err := c.HTTPClient(60 * time.Second)
	if err != nil {
		return "", 0, err
	}
	client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return DialInNode(ctx, leader, network, addr)
	}
	// Patroni answers once the switchover is done or has failed.
	resp, err := client.Do(post)
	if err != nil {
		return "", 0, fmt.Errorf("POST /switchover to %s: %w", leader, err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("POST /switchover to %s: %s: %s", leader, resp.Status, bytes.TrimSpace(msg))
	}
	for {
		if pc, err := c.Patroni(ctx); err == nil {
			if l, ok := pc.Leader(); ok && l.Name != leader && (to == "" || l.Name == to) {
				return l.Name, time.Since(start), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", time.Since(start), fmt.Errorf("switchover from %s: no new leader: %w", leader, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
