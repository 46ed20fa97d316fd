package local

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/internal/patroni"
	"github.com/pgha/pgha/render"
)

func defaultPlan(t *testing.T) *cluster.Plan {
	t.Helper()
	p, err := cluster.NewPlan(cluster.Default())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckRoutes(t *testing.T) {
	want := []netip.Prefix{netip.MustParsePrefix("10.11.0.0/16"), netip.MustParsePrefix("10.12.0.0/16")}
	tests := []struct {
		name    string
		routes  string
		wantErr string // "" for no error
	}{
		{"default route only", `[{"dst":"default","gateway":"192.0.2.1","dev":"eth0"}]`, ""},
		{"disjoint routes", `[{"dst":"default","dev":"eth0"},{"dst":"192.0.2.0/24","dev":"eth0"},{"dst":"10.13.0.0/16","dev":"x"}]`, ""},
		{"rejects the same range", `[{"dst":"10.11.0.0/16","dev":"pgha0"}]`, "10.11.0.0/16 (route 10.11.0.0/16 dev pgha0)"},
		{"rejects a wider range", `[{"dst":"10.0.0.0/8","dev":"vpn0"}]`, "10.11.0.0/16 (route 10.0.0.0/8 dev vpn0), 10.12.0.0/16 (route 10.0.0.0/8 dev vpn0)"},
		{"rejects a subnet inside", `[{"dst":"10.12.3.0/24","dev":"br0"}]`, "10.12.0.0/16 (route 10.12.3.0/24 dev br0)"},
		{"rejects a host route", `[{"dst":"10.11.3.10","dev":"tun0"}]`, "10.11.0.0/16 (route 10.11.3.10 dev tun0)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkRoutes([]byte(tt.routes), want)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkRoutes: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrRangeInUse) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("checkRoutes = %v, want ErrRangeInUse naming %s", err, tt.wantErr)
			}
		})
	}
	if err := checkRoutes([]byte("not json"), want); err == nil {
		t.Error("checkRoutes accepted invalid JSON")
	}
}

func TestChooseLinkNet(t *testing.T) {
	p := defaultPlan(t)
	got, err := chooseLinkNet(p.CIDRs())
	if err != nil || got != netip.MustParsePrefix("10.255.255.0/24") {
		t.Fatalf("chooseLinkNet(default) = %v, %v", got, err)
	}
	got, err = chooseLinkNet([]netip.Prefix{netip.MustParsePrefix("10.255.0.0/16")})
	if err != nil || got != netip.MustParsePrefix("172.31.255.0/24") {
		t.Fatalf("chooseLinkNet(10.255/16) = %v, %v", got, err)
	}
	if _, err := chooseLinkNet([]netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16"),
	}); err == nil {
		t.Error("chooseLinkNet found a range where none is free")
	}
}

func TestLinkAddrs(t *testing.T) {
	ln := netip.MustParsePrefix("10.255.255.0/24")
	for _, tt := range []struct {
		i          int
		core, peer string
	}{
		{0, "10.255.255.2/30", "10.255.255.1/30"},
		{1, "10.255.255.5/30", "10.255.255.6/30"},
		{2, "10.255.255.9/30", "10.255.255.10/30"},
	} {
		core, peer := linkAddrs(ln, tt.i)
		if core.String() != tt.core || peer.String() != tt.peer {
			t.Errorf("linkAddrs(%d) = %s, %s, want %s, %s", tt.i, core, peer, tt.core, tt.peer)
		}
	}
}

func TestNames(t *testing.T) {
	p := defaultPlan(t)
	for _, n := range p.Nodes {
		// Interface names are at most 15 bytes (IFNAMSIZ - 1).
		if v := nodeVeth(n.ID); len(v) > 15 {
			t.Errorf("veth name %q is too long", v)
		}
		if !strings.HasPrefix(nodeNS(n.Name), nsPrefix) {
			t.Errorf("namespace %q lacks the prefix", nodeNS(n.Name))
		}
	}
	nss := network{plan: p}.namespaces()
	// The core router, the AWS side, one router per region, one per node,
	// one per health checker.
	if len(nss) != 2+len(p.Regions)+len(p.Nodes)+len(checkerRegions(p)) || len(slices.Compact(slices.Sorted(slices.Values(nss)))) != len(nss) {
		t.Errorf("namespaces not the core, the AWS side and one per router, node and checker, all distinct: %v", nss)
	}
	// The checker's address is in the primary region's checker subnet,
	// and so in Patroni's allowlist, and no node has it.
	r := p.Primary()
	a := checkerAddr(r)
	if !r.CheckerSubnets[0].Contains(a.Addr()) || !slices.Contains(render.APIAllowlist(p), r.CheckerSubnets[0].String()) {
		t.Errorf("checker address %s is not in the allowlisted %s", a, r.CheckerSubnets[0])
	}
	for _, n := range p.Nodes {
		if n.IP == a.Addr() {
			t.Errorf("%s has the checker's address %s", n.Name, a)
		}
	}
}

func TestResolveTarget(t *testing.T) {
	p := defaultPlan(t)
	tests := []struct {
		name    string
		fault   Fault
		target  string
		leader  string
		want    []string
		region  string
		wantErr string
	}{
		{"node", Kill, "euw1-pg1", "euw3-pg1", []string{"euw1-pg1"}, "", ""},
		{"leader", Stop, "leader", "euw3-pg2", []string{"euw3-pg2"}, "", ""},
		{"non-postgres node", Isolate, "euw1-etcd1", "", []string{"euw1-etcd1"}, "", ""},
		{"region isolate", Isolate, "eu-west-1", "", []string{"euw1-pg1", "euw1-etcd1", "euw1-haproxy1"}, "eu-west-1", ""},
		{"region heal", Heal, "eu-west-3", "", []string{"euw3-pg1", "euw3-pg2", "euw3-etcd1", "euw3-etcd2", "euw3-haproxy1", "euw3-app1"}, "eu-west-3", ""},
		{"rejects killing a region", Kill, "eu-west-1", "", nil, "", "applies to a node"},
		{"fills a PostgreSQL node's volume", FillVolume, "leader", "euw1-pg1", []string{"euw1-pg1"}, "", ""},
		{"rejects filling an etcd node's", FillVolume, "euw3-etcd1", "", nil, "", "applies to a PostgreSQL node"},
		{"rejects an unknown target", Kill, "pg9", "", nil, "", `unknown target "pg9"`},
		{"rejects an unknown fault", "explode", "euw3-pg1", "", nil, "", `unknown fault "explode"`},
		{"rejects leader without one", Kill, "leader", "", nil, "", "no leader"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveTarget(p, tt.fault, tt.target, tt.leader)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("resolveTarget = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, n := range got.nodes {
				names = append(names, n.Name)
			}
			if !slices.Equal(names, tt.want) || got.region != tt.region {
				t.Errorf("resolveTarget = %v in region %q, want %v in %q", names, got.region, tt.want, tt.region)
			}
		})
	}
}

// TestStatusJSON pins the keys of `pgha-local status --json`.
func TestStatusJSON(t *testing.T) {
	st := Status{
		Nodes:   []NodeStatus{{Name: "pg1", Role: "postgres", Region: "eu-west-3", Address: "10.11.3.10", State: "running", Leader: true}},
		HAProxy: []HAProxyStatus{{Name: "haproxy1", Region: "eu-west-3", Write: "10.11.3.30:5000", Read: "10.11.3.30:5001"}},
		App:     []AppStatus{{Name: "app1", Region: "eu-west-3", URL: "http://10.11.0.40:5000"}},
		Checker: []CheckerStatus{{Region: "eu-west-3", State: "running", Log: "/l/checker-eu-west-3.log",
			LastCheck: "2026-11-26T20:00:00Z", Ready: true, Reason: "leader pg1 accepts writes", Restarts: 1}},
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	checkStatusShape(t, b)
	want := `{"nodes":[{"name":"pg1","role":"postgres","region":"eu-west-3","address":"10.11.3.10","state":"running","leader":true}],` +
		`"haproxy":[{"name":"haproxy1","region":"eu-west-3","write":"10.11.3.30:5000","read":"10.11.3.30:5001"}],` +
		`"app":[{"name":"app1","region":"eu-west-3","url":"http://10.11.0.40:5000"}],` +
		`"checker":[{"region":"eu-west-3","state":"running","log":"/l/checker-eu-west-3.log","lastCheck":"2026-11-26T20:00:00Z",` +
		`"ready":true,"reason":"leader pg1 accepts writes","restarts":1}]}`
	if string(b) != want {
		t.Errorf("JSON:\n got %s\nwant %s", b, want)
	}
}

// checkStatusShape checks that b has exactly the documented keys and types.
func checkStatusShape(t *testing.T, b []byte) {
	t.Helper()
	var m map[string][]map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("status JSON %s: %v", b, err)
	}
	wantKeys := map[string][]string{
		"nodes":   {"address", "leader", "name", "region", "role", "state"},
		"haproxy": {"name", "read", "region", "write"},
		"app":     {"name", "region", "url"},
		"checker": {"lastCheck", "log", "ready", "reason", "region", "restarts", "state"},
	}
	if got := slices.Sorted(maps.Keys(m)); !reflect.DeepEqual(got, []string{"app", "checker", "haproxy", "nodes"}) {
		t.Fatalf("status keys = %v", got)
	}
	for k, keys := range wantKeys {
		for _, item := range m[k] {
			if got := slices.Sorted(maps.Keys(item)); !reflect.DeepEqual(got, keys) {
				t.Errorf("%s item keys = %v, want %v", k, got, keys)
			}
			for field, v := range item {
				var ok bool
				switch field {
				case "leader", "ready":
					_, ok = v.(bool)
				case "restarts":
					_, ok = v.(float64)
				default:
					_, ok = v.(string)
				}
				if !ok {
					t.Errorf("%s.%s = %#v: wrong type", k, field, v)
				}
			}
		}
	}
}

func TestNodeState(t *testing.T) {
	tests := []struct {
		name              string
		cutOff            bool
		running, stopped  int
		postgres          bool
		patroni, expected string
	}{
		{"isolated wins", true, 2, 0, true, "streaming", StateIsolated},
		{"frozen", false, 0, 3, true, "running", StateFrozen},
		{"down", false, 0, 0, true, "running", StateDown},
		{"etcd running", false, 1, 0, false, "", StateRunning},
		{"patroni state", false, 4, 0, true, "streaming", "streaming"},
		{"not listed yet", false, 1, 0, true, "", StateUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nodeState(tt.cutOff, tt.running, tt.stopped, tt.postgres, tt.patroni); got != tt.expected {
				t.Errorf("nodeState = %q, want %q", got, tt.expected)
			}
		})
	}
}

func TestReplicationReady(t *testing.T) {
	leader := patroni.Member{Name: "pg1", Role: "leader", State: "running"}
	sync := patroni.Member{Name: "pg2", Role: "sync_standby", State: "streaming"}
	replica := patroni.Member{Name: "pg3", Role: "replica", State: "streaming"}
	starting := patroni.Member{Name: "pg3", Role: "replica", State: "starting"}
	tests := []struct {
		name    string
		members []patroni.Member
		sync    bool
		ready   bool
	}{
		{"ready", []patroni.Member{leader, sync, replica}, true, true},
		{"ready asynchronous", []patroni.Member{leader, replica, {Name: "pg2", Role: "replica", State: "streaming"}}, false, true},
		{"rejects a replica not streaming", []patroni.Member{leader, sync, starting}, true, false},
		{"rejects no leader", []patroni.Member{sync, replica}, true, false},
		{"rejects a leader not running", []patroni.Member{{Name: "pg1", Role: "leader", State: "stopped"}, sync, replica}, true, false},
		{"rejects a synchronous standby not streaming", []patroni.Member{leader, {Name: "pg2", Role: "sync_standby", State: "running"}, replica}, true, false},
		{"rejects no synchronous standby yet", []patroni.Member{leader, replica, {Name: "pg2", Role: "replica", State: "streaming"}}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := replicationReady(patroni.Cluster{Members: tt.members}, 3, tt.sync)
			if (err == nil) != tt.ready {
				t.Errorf("replicationReady = %v, want ready %v", err, tt.ready)
			}
		})
	}
}

// Up refuses a setting that would void "0 acknowledged writes lost" before
// it touches anything, naming the field and the value.
func TestUpRefusesUnsafeSettings(t *testing.T) {
	cfg := cluster.Default()
	cfg.Postgres.Parameters["fsync"] = "off"
	dir := filepath.Join(t.TempDir(), "cluster")
	_, err := Up(context.Background(), Options{Dir: dir, Config: &cfg})
	if err == nil || !strings.Contains(err.Error(), "postgres.parameters.fsync") || !strings.Contains(err.Error(), `"off"`) {
		t.Fatalf("Up with fsync off: %v, want an error naming postgres.parameters.fsync and \"off\"", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Up made %s before refusing: %v", dir, err)
	}
}

// TestFillVolume fills a small tmpfs as FillVolume fills a node's data
// volume: nothing can be written until the filler is gone.
func TestFillVolume(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "volume")
	if err := mountVolume(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unmount(dir); err != nil {
			t.Error(err)
		}
	})
	if !isMount(dir) {
		t.Fatal("the volume is not mounted")
	}
	if err := os.WriteFile(filepath.Join(dir, "before"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fillVolume(dir); err != nil {
		t.Fatal(err)
	}
	err := os.WriteFile(filepath.Join(dir, "after"), make([]byte, 8192), 0o600)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writing to the full volume: %v, want ENOSPC", err)
	}
	if err := os.Remove(filepath.Join(dir, fillFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "after"), make([]byte, 8192), 0o600); err != nil {
		t.Errorf("writing once the filler is gone: %v", err)
	}
}
