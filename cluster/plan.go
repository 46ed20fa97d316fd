package cluster

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Role is what a node does.
type Role string

// The node roles; their values are the pgha:role tag.
const (
	RolePostgres Role = "postgres"
	RoleEtcd     Role = "etcd"
	RoleHAProxy  Role = "haproxy"
	RoleApp      Role = "app"
)

// Roles lists every role in plan order.
var Roles = []Role{RolePostgres, RoleEtcd, RoleHAProxy, RoleApp}

// roleLayout gives each role its name prefix, its first host number in a
// subnet, and whether it sits in a public subnet.
var roleLayout = map[Role]struct {
	prefix string
	host   int
	public bool
}{
	RolePostgres: {"pg", 10, false},
	RoleEtcd:     {"etcd", 20, false},
	RoleHAProxy:  {"haproxy", 30, false},
	RoleApp:      {"app", 40, true},
}

// Node is one host of the cluster. Its identity — Name, ID, IP and the
// construct IDs and data volume that follow from them — depends only on its
// region, its role and its ordinal there: growing or shrinking one region
// changes no other region's nodes.
type Node struct {
	Name     string       // unique in the cluster, RegionCode-ID, e.g. "euw3-pg1"; Patroni's member name
	ID       string       // unique in its region, role prefix and Ordinal, e.g. "pg1"; the construct ID
	Ordinal  int          // 1, 2, ... among the nodes of its role in its region
	Role     Role         // what it runs
	Region   string       // AWS region
	AZ       string       // availability zone, e.g. "eu-west-3a"
	AZIndex  int          // 0, 1 or 2
	Subnet   netip.Prefix // the /24 subnet the node sits in
	Public   bool         // in a public subnet (app instances)
	IP       netip.Addr   // fixed private IP
	Priority int          // Patroni failover_priority: higher is preferred; 0 for non-PostgreSQL nodes
}

// RegionPlan is one region's network.
type RegionPlan struct {
	Name           string
	CIDR           netip.Prefix
	Primary        bool // the first data region
	Witness        bool // holds only an etcd member
	AZs            []string
	PublicSubnets  []netip.Prefix // one per AZ
	PrivateSubnets []netip.Prefix // one per AZ
	// CheckerSubnets hold only the region's health-checking Lambda, one
	// /26 per AZ in the seventh /24 (after the CDK's public and private
	// /24s): Patroni's allowlist names the primary region's, so that no
	// node there may call Patroni's unsafe endpoints. None in a witness
	// region, which runs no checker.
	CheckerSubnets []netip.Prefix
}

// Plan is a validated configuration with every node placed.
type Plan struct {
	Config  Config
	Regions []RegionPlan // data regions in config order, then the witness
	Nodes   []Node       // by role (postgres, etcd, haproxy, app), then region order
}

// NewPlan validates c and places every node. The result depends only on c.
func NewPlan(c Config) (*Plan, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p := &Plan{Config: c}
	counts := map[string]map[Role]int{}
	for i, r := range c.Regions {
		p.Regions = append(p.Regions, newRegionPlan(r.Name, r.CIDR, r.AvailabilityZones, i == 0, false))
		counts[r.Name] = map[Role]int{RolePostgres: r.Postgres, RoleEtcd: r.Etcd, RoleHAProxy: r.HAProxy, RoleApp: r.App}
	}
	if w := c.Witness; w != nil {
		p.Regions = append(p.Regions, newRegionPlan(w.Name, w.CIDR, w.AvailabilityZones, false, true))
		counts[w.Name] = map[Role]int{RoleEtcd: 1}
	}
	for _, role := range Roles {
		layout := roleLayout[role]
		for _, rp := range p.Regions {
			for k := range counts[rp.Name][role] {
				id := fmt.Sprintf("%s%d", layout.prefix, k+1)
				az := k % 3
				subnet := rp.PrivateSubnets[az]
				if layout.public {
					subnet = rp.PublicSubnets[az]
				}
				node := Node{
					Name:    RegionCode(rp.Name) + "-" + id,
					ID:      id,
					Ordinal: k + 1,
					Role:    role,
					Region:  rp.Name,
					AZ:      rp.AZs[az],
					AZIndex: az,
					Subnet:  subnet,
					Public:  layout.public,
					IP:      hostAddr(subnet, layout.host+k/3),
				}
				if role == RolePostgres {
					node.Priority = 1
					if rp.Primary {
						node.Priority = 2
					}
				}
				p.Nodes = append(p.Nodes, node)
			}
		}
	}
	return p, nil
}

// compass abbreviates the words of a region name the way AWS's zone IDs
// do (euw3-az1, apse1-az2, usgw1-az1).
var compass = map[string]string{
	"north": "n", "south": "s", "east": "e", "west": "w", "central": "c",
	"northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw",
}

// RegionCode is a region's short code, the prefix of AWS's availability
// zone IDs: "eu-west-3" is "euw3", "ap-southeast-1" "apse1", "us-gov-west-1"
// "usgw1". Node names start with it, so they are unique across regions and
// depend on nothing but the node's own region.
// https://docs.aws.amazon.com/ram/latest/userguide/working-with-az-ids.html
func RegionCode(region string) string {
	parts := strings.Split(region, "-")
	var b strings.Builder
	for i, part := range parts {
		switch {
		case i == 0 || i == len(parts)-1:
			b.WriteString(part)
		case compass[part] != "":
			b.WriteString(compass[part])
		default:
			b.WriteString(part[:1])
		}
	}
	return b.String()
}

func newRegionPlan(name, cidr string, azs []string, primary, witness bool) RegionPlan {
	prefix := netip.MustParsePrefix(cidr)
	if azs == nil {
		azs = []string{name + "a", name + "b", name + "c"}
	}
	rp := RegionPlan{Name: name, CIDR: prefix, Primary: primary, Witness: witness, AZs: slices.Clone(azs)}
	for i := range 3 {
		rp.PublicSubnets = append(rp.PublicSubnets, subnet24(prefix, i))
		rp.PrivateSubnets = append(rp.PrivateSubnets, subnet24(prefix, 3+i))
		if !witness {
			s := subnet24(prefix, 6).Addr().As4()
			s[3] = byte(64 * i)
			rp.CheckerSubnets = append(rp.CheckerSubnets, netip.PrefixFrom(netip.AddrFrom4(s), CheckerSubnetBits))
		}
	}
	return rp
}

// CheckerSubnetBits is the prefix length of the checker subnets: 59
// addresses each for the Lambda's network interfaces (AWS reserves 5).
const CheckerSubnetBits = 26

// subnet24 is the i-th /24 inside p, the order in which the CDK allocates
// a VPC's subnets.
func subnet24(p netip.Prefix, i int) netip.Prefix {
	a := p.Addr().As4()
	base := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8
	base += uint32(i) << 8
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(base >> 24), byte(base >> 16), byte(base >> 8), 0}), 24)
}

func hostAddr(subnet netip.Prefix, host int) netip.Addr {
	a := subnet.Addr().As4()
	a[3] = byte(host)
	return netip.AddrFrom4(a)
}

// ByRole returns the nodes of one role, in plan order.
func (p *Plan) ByRole(role Role) []Node {
	var out []Node
	for _, n := range p.Nodes {
		if n.Role == role {
			out = append(out, n)
		}
	}
	return out
}

// InRegion returns the nodes of one region, in plan order.
func (p *Plan) InRegion(region string) []Node {
	var out []Node
	for _, n := range p.Nodes {
		if n.Region == region {
			out = append(out, n)
		}
	}
	return out
}

// Node returns the node with the given name.
func (p *Plan) Node(name string) (Node, bool) {
	i := slices.IndexFunc(p.Nodes, func(n Node) bool { return n.Name == name })
	if i < 0 {
		return Node{}, false
	}
	return p.Nodes[i], true
}

// Region returns the region with the given name.
func (p *Plan) Region(name string) (RegionPlan, bool) {
	i := slices.IndexFunc(p.Regions, func(r RegionPlan) bool { return r.Name == name })
	if i < 0 {
		return RegionPlan{}, false
	}
	return p.Regions[i], true
}

// Primary returns the primary region.
func (p *Plan) Primary() RegionPlan { return p.Regions[0] }

// DataRegions are the regions that hold PostgreSQL data (not the
// witness), primary first: each has a backup repository, in this order
// (pgBackRest's repo1, repo2, ...).
func (p *Plan) DataRegions() []RegionPlan {
	var out []RegionPlan
	for _, r := range p.Regions {
		if !r.Witness {
			out = append(out, r)
		}
	}
	return out
}

// CIDRs returns every region's VPC CIDR, in region order.
func (p *Plan) CIDRs() []netip.Prefix {
	out := make([]netip.Prefix, len(p.Regions))
	for i, r := range p.Regions {
		out[i] = r.CIDR
	}
	return out
}

// HAProxyOrder returns the HAProxy nodes with the given region's first,
// then the others in plan order: the host list of the app's database URL.
func (p *Plan) HAProxyOrder(region string) []Node {
	nodes := p.ByRole(RoleHAProxy)
	sort.SliceStable(nodes, func(i, j int) bool {
		return nodes[i].Region == region && nodes[j].Region != region
	})
	return nodes
}

// SynchronousNodeCount is the number of synchronous standbys Patroni keeps:
// the configured count, or every replica when it is 0.
func (p *Plan) SynchronousNodeCount() int {
	if n := p.Config.Patroni.SynchronousNodeCount; n > 0 {
		return n
	}
	return max(len(p.ByRole(RolePostgres))-1, 1)
}

// Select returns the nodes of one role in one region, in plan order.
func (p *Plan) Select(region string, role Role) []Node {
	var out []Node
	for _, n := range p.InRegion(region) {
		if n.Role == role {
			out = append(out, n)
		}
	}
	return out
}
