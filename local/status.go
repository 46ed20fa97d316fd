package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/jsonget"
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
	Leader  bool   `json:"leader"`  // holds Patroni's leader lock
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

// Member is a PostgreSQL node as Patroni's GET /cluster lists it.
type Member struct {
	Name  string          `json:"name"`
	Role  string          `json:"role"`  // "leader", "replica", "sync_standby", ...
	State string          `json:"state"` // "running", "streaming", ...
	Host  string          `json:"host"`
	Lag   json.RawMessage `json:"lag,omitempty"`
}

// patroniCluster is the body of GET /cluster.
type patroniCluster struct {
	Members []Member `json:"members"`
}

func patroniURL(ip netip.Addr, path string) string {
	return "https://" + netip.AddrPortFrom(ip, cluster.PortPatroni).String() + path
}

// Members returns the PostgreSQL nodes as Patroni sees them, asking each
// reachable node's REST API in turn.
func (c *Cluster) Members(ctx context.Context) ([]Member, error) {
	httpClient, err := c.HTTPClient(2 * time.Second)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, n := range c.plan.ByRole(cluster.RolePostgres) {
		if c.cutOff(n) {
			continue
		}
		if _, stopped := nsProcStates(nodeNS(n.Name)); stopped > 0 {
			continue
		}
		var pc patroniCluster
		if err := jsonget.Get(ctx, httpClient, patroniURL(n.IP, "/cluster"), &pc); err != nil {
			errs = append(errs, err)
			continue
		}
		return pc.Members, nil
	}
	if errs == nil {
		return nil, errors.New("no PostgreSQL node is reachable")
	}
	return nil, fmt.Errorf("no Patroni answered: %w", errors.Join(errs...))
}

// Leader returns the name of the node holding the leader lock.
func (c *Cluster) Leader(ctx context.Context) (string, error) {
	ms, err := c.Members(ctx)
	if err != nil {
		return "", err
	}
	if l := leaderOf(ms); l != "" {
		return l, nil
	}
	return "", errors.New("the cluster has no leader")
}

func leaderOf(ms []Member) string {
	for _, m := range ms {
		if m.Role == "leader" || m.Role == "standby_leader" {
			return m.Name
		}
	}
	return ""
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
	members, _ := c.Members(ctx) // nodes show "unknown" when none answers
	byName := map[string]Member{}
	for _, m := range members {
		byName[m.Name] = m
	}
	st := Status{Nodes: []NodeStatus{}, HAProxy: []HAProxyStatus{}, App: []AppStatus{}}
	for _, n := range c.plan.Nodes {
		running, stopped := nsProcStates(nodeNS(n.Name))
		m, listed := byName[n.Name]
		ns := NodeStatus{
			Name: n.Name, Role: string(n.Role), Region: n.Region, Address: n.IP.String(),
			Leader: listed && (m.Role == "leader" || m.Role == "standby_leader"),
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
