package cluster

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestDefaultPlan(t *testing.T) {
	p, err := NewPlan(Default())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range p.Nodes {
		got = append(got, fmt.Sprintf("%s %s %s %s %s %d", n.Name, n.Role, n.Region, n.AZ, n.IP, n.Priority))
	}
	want := []string{
		"euw3-pg1 postgres eu-west-3 eu-west-3a 10.11.3.10 2",
		"euw3-pg2 postgres eu-west-3 eu-west-3b 10.11.4.10 2",
		"euw1-pg1 postgres eu-west-1 eu-west-1a 10.12.3.10 1",
		"euw3-etcd1 etcd eu-west-3 eu-west-3a 10.11.3.20 0",
		"euw3-etcd2 etcd eu-west-3 eu-west-3b 10.11.4.20 0",
		"euw1-etcd1 etcd eu-west-1 eu-west-1a 10.12.3.20 0",
		"euw3-haproxy1 haproxy eu-west-3 eu-west-3a 10.11.3.30 0",
		"euw1-haproxy1 haproxy eu-west-1 eu-west-1a 10.12.3.30 0",
		"euw3-app1 app eu-west-3 eu-west-3a 10.11.0.40 0",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("default plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	r := p.Primary()
	if r.Name != "eu-west-3" || !r.Primary || r.Witness {
		t.Errorf("primary region = %+v", r)
	}
	wantSubnets := []string{"10.11.0.0/24", "10.11.1.0/24", "10.11.2.0/24", "10.11.3.0/24", "10.11.4.0/24", "10.11.5.0/24",
		"10.11.6.0/26", "10.11.6.64/26", "10.11.6.128/26"}
	gotSubnets := fmt.Sprint(slices.Concat(r.PublicSubnets, r.PrivateSubnets, r.CheckerSubnets))
	if gotSubnets != fmt.Sprint(wantSubnets) {
		t.Errorf("subnets = %s, want %v", gotSubnets, wantSubnets)
	}
}

// The checker subnets fit the smallest VPC allowed (/21) and hold no
// node; a witness region, which runs no checker, has none.
func TestCheckerSubnets(t *testing.T) {
	c := Default()
	c.Regions[0].CIDR = "10.20.0.0/21"
	c.Witness = &Witness{Name: "eu-central-1", CIDR: "10.13.0.0/16"}
	c.Regions[0].Etcd, c.Regions[1].Etcd = 1, 1
	p, err := NewPlan(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Regions {
		if r.Witness {
			if len(r.CheckerSubnets) != 0 {
				t.Errorf("witness %s has checker subnets %v", r.Name, r.CheckerSubnets)
			}
			continue
		}
		if len(r.CheckerSubnets) != 3 {
			t.Fatalf("%s: %d checker subnets, want one per AZ", r.Name, len(r.CheckerSubnets))
		}
		for _, s := range r.CheckerSubnets {
			if !r.CIDR.Contains(s.Addr()) || s.Bits() != CheckerSubnetBits {
				t.Errorf("%s: checker subnet %s outside %s or not a /%d", r.Name, s, r.CIDR, CheckerSubnetBits)
			}
			for _, o := range slices.Concat(r.PublicSubnets, r.PrivateSubnets) {
				if o.Overlaps(s) {
					t.Errorf("%s: checker subnet %s overlaps %s", r.Name, s, o)
				}
			}
			for _, n := range p.InRegion(r.Name) {
				if s.Contains(n.IP) {
					t.Errorf("%s is in checker subnet %s", n.Name, s)
				}
			}
		}
	}
}

func TestPlanPlacesEveryNodeInsideItsSubnet(t *testing.T) {
	c := Default()
	c.Regions[0].Postgres = 7 // more than one per zone
	c.Regions[0].Etcd = 1
	c.Regions[1].Etcd = 1
	c.Witness = &Witness{Name: "eu-central-1", CIDR: "172.16.0.0/20"}
	p, err := NewPlan(c)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]string{}
	names := map[string]bool{}
	for _, n := range p.Nodes {
		if !n.Subnet.Contains(n.IP) {
			t.Errorf("%s: IP %s outside its subnet %s", n.Name, n.IP, n.Subnet)
		}
		r, ok := p.Region(n.Region)
		if !ok || !r.CIDR.Contains(n.IP) {
			t.Errorf("%s: IP %s outside region %s", n.Name, n.IP, n.Region)
		}
		wantSubnets := r.PrivateSubnets
		if n.Role == RoleApp {
			wantSubnets = r.PublicSubnets
		}
		if wantSubnets[n.AZIndex] != n.Subnet || r.AZs[n.AZIndex] != n.AZ {
			t.Errorf("%s: subnet %s / zone %s do not match zone index %d", n.Name, n.Subnet, n.AZ, n.AZIndex)
		}
		// AWS reserves the first four and the last address of a subnet.
		if last := n.IP.As4()[3]; last < 4 || last == 255 {
			t.Errorf("%s: %s is an address AWS reserves", n.Name, n.IP)
		}
		if prev, dup := seen[n.IP]; dup {
			t.Errorf("%s and %s share %s", prev, n.Name, n.IP)
		}
		seen[n.IP] = n.Name
		if names[n.Name] {
			t.Errorf("name %q is duplicated", n.Name)
		}
		names[n.Name] = true
	}
	if got := len(p.ByRole(RolePostgres)); got != 8 {
		t.Errorf("postgres nodes = %d, want 8", got)
	}
	if got := p.Select("eu-west-3", RolePostgres); len(got) != 7 || got[0].Name != "euw3-pg1" || got[6].Name != "euw3-pg7" {
		t.Errorf("Select(eu-west-3, postgres) = %d nodes, want euw3-pg1..euw3-pg7", len(got))
	}
	if got := p.Select("eu-central-1", RolePostgres); len(got) != 0 {
		t.Errorf("Select(eu-central-1, postgres) = %v, want none", got)
	}
	w := p.InRegion("eu-central-1")
	if len(w) != 1 || w[0].Role != RoleEtcd || w[0].IP.String() != "172.16.3.20" {
		t.Errorf("witness nodes = %+v, want one etcd member at 172.16.3.20", w)
	}
	if r, _ := p.Region("eu-central-1"); !r.Witness {
		t.Error("witness region not marked")
	}
}

func TestPlanIsDeterministic(t *testing.T) {
	a, _ := NewPlan(Default())
	b, _ := NewPlan(Default())
	if !reflect.DeepEqual(a.Nodes, b.Nodes) {
		t.Error("two plans of the same config differ")
	}
}

func TestHAProxyOrderPutsOwnRegionFirst(t *testing.T) {
	p, _ := NewPlan(Default())
	for region, want := range map[string]string{
		"eu-west-3": "euw3-haproxy1 euw1-haproxy1",
		"eu-west-1": "euw1-haproxy1 euw3-haproxy1",
	} {
		var names []string
		for _, n := range p.HAProxyOrder(region) {
			names = append(names, n.Name)
		}
		if got := strings.Join(names, " "); got != want {
			t.Errorf("HAProxyOrder(%s) = %s, want %s", region, got, want)
		}
	}
}

func TestNewPlanRejectsInvalidConfig(t *testing.T) {
	c := Default()
	c.Regions[1].CIDR = c.Regions[0].CIDR
	if _, err := NewPlan(c); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("NewPlan = %v, want an overlap error", err)
	}
}

func TestSynchronousNodeCount(t *testing.T) {
	c := Default()
	p, _ := NewPlan(c)
	if got := p.SynchronousNodeCount(); got != 2 {
		t.Errorf("default = %d, want every replica (2)", got)
	}
	c.Patroni.SynchronousNodeCount = 1
	p, _ = NewPlan(c)
	if got := p.SynchronousNodeCount(); got != 1 {
		t.Errorf("configured 1 = %d", got)
	}
}

// TestNodeIdentityIsRegionLocal grows and shrinks every region in turn and
// checks that no node of another region changes: name, ID, IP, zone.
func TestNodeIdentityIsRegionLocal(t *testing.T) {
	base := Default()
	base.Witness = &Witness{Name: "eu-central-1", CIDR: "10.13.0.0/16"}
	base.Regions[0].Etcd, base.Regions[1].Etcd = 1, 1
	ident := func(p *Plan, region string) []Node {
		var out []Node
		for _, n := range p.Nodes {
			if n.Region != region {
				out = append(out, n)
			}
		}
		return out
	}
	p0, err := NewPlan(base)
	if err != nil {
		t.Fatal(err)
	}
	for i := range base.Regions {
		for _, delta := range []int{+1, -1} {
			c := base
			c.Regions = append([]Region(nil), base.Regions...)
			r := &c.Regions[i]
			r.Postgres += delta
			r.HAProxy += delta
			if r.Postgres < 1 || r.HAProxy < 1 {
				r.Postgres, r.HAProxy = r.Postgres+2, r.HAProxy+2
			}
			p1, err := NewPlan(c)
			if err != nil {
				t.Fatalf("regions[%d] %+d: %v", i, delta, err)
			}
			if !reflect.DeepEqual(ident(p0, r.Name), ident(p1, r.Name)) {
				t.Errorf("resizing %s (%+d) changed nodes of other regions:\n%v\n%v", r.Name, delta, ident(p0, r.Name), ident(p1, r.Name))
			}
		}
	}
}

func TestRegionCode(t *testing.T) {
	for region, want := range map[string]string{
		"eu-west-3": "euw3", "eu-west-1": "euw1", "us-east-1": "use1", "ap-south-1": "aps1",
		"ap-southeast-1": "apse1", "ap-northeast-3": "apne3", "ca-central-1": "cac1", "us-gov-west-1": "usgw1",
		"eu-central-2": "euc2", "il-central-1": "ilc1",
	} {
		if got := RegionCode(region); got != want {
			t.Errorf("RegionCode(%s) = %s, want %s", region, got, want)
		}
	}
}

func TestOnCalendar(t *testing.T) {
	for in, want := range map[string]string{
		"Sun 01:00":              "Sun *-*-* 01:00:00 UTC",
		"03:30":                  "*-*-* 03:30:00 UTC",
		"Mon..Fri 23:59":         "Mon..Fri *-*-* 23:59:00 UTC",
		"Mon,Wed..Thu,Sat 00:00": "Mon,Wed..Thu,Sat *-*-* 00:00:00 UTC",
	} {
		if got, ok := OnCalendar(in); !ok || got != want {
			t.Errorf("OnCalendar(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "Sun", "1:00", "Sun  01:00", "Sunday 01:00", "Sun 01:00 UTC", "Sun,01:00", "Mon.. 01:00", "*-*-* 01:00"} {
		if got, ok := OnCalendar(bad); ok {
			t.Errorf("OnCalendar(%q) = %q, want rejected", bad, got)
		}
	}
}

func TestBackupBucketFits(t *testing.T) {
	c := Default()
	c.Name = "abcdefghijklmnopqrstuvwx" // 24, the longest
	if b := c.BackupBucket("123456789012", "ap-southeast-5"); len(b) > 63 {
		t.Errorf("bucket %s is %d characters, over 63", b, len(b))
	}
}
