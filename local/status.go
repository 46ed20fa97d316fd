package local

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/jsonget"
	"github.com/pgha/pgha/internal/patroni"
)

// Node states reported by Status besides Patroni's own member states
// ("running", "streaming", "starting", "stopped", "crashed", "creating
// replica", ...), which PostgreSQL nodes report while reachable.
const (
	// StateRunning: the node's system runs (etcd, HAProxy and app nodes).
	StateRunning = "running"
	// StateDown: the node's system is down (killed, or not booted).
	StateDown = "down"
	// StateFrozen: the node's processes are stopped with SIGSTOP.
	StateFrozen = "frozen"
	// StateIsolated: the node, or its whole region, is cut off the network.
	StateIsolated = "isolated"
	// StateUnknown: a PostgreSQL node whose daemons run but that no
	// reachable Patroni lists yet.
	StateUnknown = "unknown"
)

// Status is the cluster seen from the root namespace. Its JSON form is
// `pgha-local status --json`; the keys are stable.
type Status struct {
	Nodes   []NodeStatus    `json:"nodes"`
	HAProxy []HAProxyStatus `json:"haproxy"`
	App     []AppStatus     `json:"app"`
	// Checker are the health checkers, one per region with an app.
	Checker []CheckerStatus `json:"checker"`
}

// NodeStatus is one node.
type NodeStatus struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Region  string `json:"region"`
	Address string `json:"address"` // the node's IP
	State   string `json:"state"`   // see the State constants
	Leader  bool   `json:"leader"`  // holds Patroni's leader key
}

// HAProxyStatus is one HAProxy node's endpoints, "ip:port".
type HAProxyStatus struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	Write  string `json:"write"` // the leader
	Read   string `json:"read"`  // the replicas
}

// AppStatus is one app node's URL.
type AppStatus struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	URL    string `json:"url"`
}

func patroniURL(ip netip.Addr, path string) string {
	return "https://" + netip.AddrPortFrom(ip, cluster.PortPatroni).String() + path
}

// Patroni returns the cluster as Patroni's GET /cluster describes it,
// asking each reachable PostgreSQL node's REST API in turn.
func (c *Cluster) Patroni(ctx context.Context) (patroni.Cluster, error) {
	httpClient, err := c.HTTPClient(2 * time.Second)
	if err != nil {
		return patroni.Cluster{}, err
	}
	var errs []error
	for _, n := range c.plan.ByRole(cluster.RolePostgres) {
		if c.cutOff(n) {
			continue
		}
		if _, stopped := nsProcStates(nodeNS(n.Name)); stopped > 0 {
			continue
		}
		var pc patroni.Cluster
		if err := jsonget.Get(ctx, httpClient, patroniURL(n.IP, "/cluster"), &pc); err != nil {
			errs = append(errs, err)
			continue
		}
		return pc, nil
	}
	if errs == nil {
		return patroni.Cluster{}, errors.New("no PostgreSQL node is reachable")
	}
	return patroni.Cluster{}, fmt.Errorf("no Patroni answered: %w", errors.Join(errs...))
}

// Members returns the PostgreSQL nodes as Patroni's GET /cluster lists
// them (see Patroni).
func (c *Cluster) Members(ctx context.Context) ([]patroni.Member, error) {
	pc, err := c.Patroni(ctx)
	return pc.Members, err
}

// Leader returns the name of the node holding the leader key
// (patroni.Member.HoldsLeaderKey), running or not.
func (c *Cluster) Leader(ctx context.Context) (string, error) {
	pc, err := c.Patroni(ctx)
	if err != nil {
		return "", err
	}
	if l, ok := pc.LeaderKeyHolder(); ok {
		return l.Name, nil
	}
	return "", errors.New("the cluster has no leader")
}

// cutOff reports whether node n or its region is cut off the network.
func (c *Cluster) cutOff(n cluster.Node) bool {
	return !linkUp(regionNS(n.Region), nodeVeth(n.ID)) || c.regionCutOff(n.Region)
}

func (c *Cluster) regionCutOff(region string) bool {
	for i, r := range c.plan.Regions {
		if r.Name == region {
			return !linkUp(coreNS, regionVeth(i))
		}
	}
	return false
}

// Status reports every node, the HAProxy endpoints, the app URLs and the
// health checkers.
func (c *Cluster) Status(ctx context.Context) (Status, error) {
	pc, _ := c.Patroni(ctx) // nodes show "unknown" when none answers
	st := Status{Nodes: []NodeStatus{}, HAProxy: []HAProxyStatus{}, App: []AppStatus{}}
	for _, n := range c.plan.Nodes {
		running, stopped := nsProcStates(nodeNS(n.Name))
		m, _ := pc.Member(n.Name)
		ns := NodeStatus{
			Name: n.Name, Role: string(n.Role), Region: n.Region, Address: n.IP.String(),
			Leader: m.HoldsLeaderKey(),
		}
		ns.State = nodeState(nsExists(nodeNS(n.Name)) && c.cutOff(n), running, stopped, n.Role == cluster.RolePostgres, m.State)
		st.Nodes = append(st.Nodes, ns)
		switch n.Role {
		case cluster.RoleHAProxy:
			st.HAProxy = append(st.HAProxy, HAProxyStatus{
				Name: n.Name, Region: n.Region,
				Write: netip.AddrPortFrom(n.IP, cluster.PortHAProxyWrite).String(),
				Read:  netip.AddrPortFrom(n.IP, cluster.PortHAProxyRead).String(),
			})
		case cluster.RoleApp:
			st.App = append(st.App, AppStatus{Name: n.Name, Region: n.Region, URL: appURL(n)})
		}
	}
	st.Checker = c.checkerStatus()
	return st, nil
}

// nodeState decides a node's state: a network cut first, then frozen or
// dead processes, then Patroni's view of a PostgreSQL node.
func nodeState(cutOff bool, running, stopped int, postgres bool, patroniState string) string {
	switch {
	case cutOff:
		return StateIsolated
	case running == 0 && stopped > 0:
		return StateFrozen
	case running == 0:
		return StateDown
	case !postgres:
		return StateRunning
	case patroniState != "":
		return patroniState
	default:
		return StateUnknown
	}
}

// Memory returns the memory each node uses, and the AWS side (key
// "aws"): the proportional set size (Pss) of every process of its network
// namespace, in bytes.
func (c *Cluster) Memory() map[string]int64 {
	out := map[string]int64{}
	sum := func(ns string) int64 {
		var total int64
		for _, pid := range nsPIDs(ns) {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 3 && f[0] == "Pss:" {
					kb, _ := strconv.ParseInt(f[1], 10, 64)
					total += kb * 1024
				}
			}
		}
		return total
	}
	for _, n := range c.plan.Nodes {
		out[n.Name] = sum(nodeNS(n.Name))
	}
	out[awsProcs] = sum(awsNS)
	return out
}
