package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/pgha/pgha/cluster"
)

// nsPrefix starts the name of every network namespace the local cluster
// creates, so `ip netns list | grep pgha-` shows all of them.
const nsPrefix = "pgha-"

// rootLink is the root namespace's end of the veth into the core router.
const rootLink = "pgha0"

// coreNS is the namespace of the router that joins the region routers.
const coreNS = nsPrefix + "core"

// linkNetCandidates are the ranges the router links may use; the first that
// overlaps no region CIDR is taken. Each is cut into /30s: the first joins
// the root namespace to the core router, the next ones each region router.
var linkNetCandidates = []netip.Prefix{
	netip.MustParsePrefix("10.255.255.0/24"),
	netip.MustParsePrefix("172.31.255.0/24"),
	netip.MustParsePrefix("192.168.255.0/24"),
}

// nodeNS is the network namespace of a node.
func nodeNS(node string) string { return nsPrefix + node }

// regionNS is the network namespace of a region's router.
func regionNS(region string) string { return nsPrefix + "r-" + region }

// nodeVeth is the router-side end of a node's link: setting it down cuts
// the node off. It is named after the node's ID, which is unique in its
// region router's namespace and short enough for the kernel's 15 bytes.
func nodeVeth(id string) string { return "v-" + id }

// regionVeth is the core-router end of a region router's link: setting it
// down cuts the whole region off.
func regionVeth(i int) string { return fmt.Sprintf("r%d", i) }

// chooseLinkNet returns the first candidate range that overlaps none of the
// plan's CIDRs.
func chooseLinkNet(cidrs []netip.Prefix) (netip.Prefix, error) {
	for _, c := range linkNetCandidates {
		if !overlapsAny(c, cidrs) {
			return c, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free range for the router links: every one of %v overlaps a region CIDR", linkNetCandidates)
}

// linkAddrs returns the two addresses of the i-th /30 of the link net: the
// core router's end and the other end (i 0 is the root namespace, i+1
// region i).
func linkAddrs(linkNet netip.Prefix, i int) (core, peer netip.Prefix) {
	a := linkNet.Addr().As4()
	a[3] = byte(4*i + 1)
	peerA := a
	peerA[3]++
	if i == 0 {
		// The root namespace takes .1 so the core is .2: easier to read.
		return netip.PrefixFrom(netip.AddrFrom4(peerA), 30), netip.PrefixFrom(netip.AddrFrom4(a), 30)
	}
	return netip.PrefixFrom(netip.AddrFrom4(a), 30), netip.PrefixFrom(netip.AddrFrom4(peerA), 30)
}

func overlapsAny(p netip.Prefix, list []netip.Prefix) bool {
	for _, q := range list {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

// ErrRangeInUse is returned by Up when a range the local cluster needs is
// already routed in the root namespace, or its namespaces exist: only one
// local cluster can be up on a machine at a time.
var ErrRangeInUse = errors.New("address range already routed on this machine")

// checkRoutes returns ErrRangeInUse, naming the routes, when any of want
// overlaps a route of the root namespace (other than the default route).
// routes is the JSON of `ip -j -4 route show`.
func checkRoutes(routes []byte, want []netip.Prefix) error {
	var rs []struct {
		Dst string `json:"dst"`
		Dev string `json:"dev"`
	}
	if err := json.Unmarshal(routes, &rs); err != nil {
		return fmt.Errorf("parse ip route output: %w", err)
	}
	var clashes []string
	for _, r := range rs {
		if r.Dst == "default" {
			continue
		}
		p, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			a, aerr := netip.ParseAddr(r.Dst)
			if aerr != nil {
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		for _, w := range want {
			if p.Overlaps(w) {
				clashes = append(clashes, fmt.Sprintf("%s (route %s dev %s)", w, r.Dst, r.Dev))
			}
		}
	}
	if clashes != nil {
		return fmt.Errorf("%w: %s; is a local cluster already up (pgha-local status / down), or does another network use these ranges?",
			ErrRangeInUse, strings.Join(clashes, ", "))
	}
	return nil
}

// ip runs the ip command.
func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// enableForwarding makes a router namespace forward IPv4.
func enableForwarding(ctx context.Context, ns string) error {
	return ip(ctx, "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
}

// network is the plan's network laid out on this machine.
type network struct {
	plan    *cluster.Plan
	linkNet netip.Prefix
}

// namespaces lists every namespace of the network: routers first, then
// nodes.
func (n network) namespaces() []string {
	out := []string{coreNS, awsNS}
	for _, r := range n.plan.Regions {
		out = append(out, regionNS(r.Name))
	}
	for _, node := range n.plan.Nodes {
		out = append(out, nodeNS(node.Name))
	}
	for _, r := range checkerRegions(n.plan) {
		out = append(out, checkerNS(r))
	}
	return out
}

// checkerNS is the network namespace of a region's health checker: a host
// in the region's first checker subnet, as the Lambda's network interface
// is on AWS, so that Patroni's allowlist (render.APIAllowlist) admits the
// primary region's checker, and no node and nothing in the root namespace.
func checkerNS(region string) string { return nsPrefix + "hc-" + region }

// checkerAddr is the health checker's address: a host of the region's
// first checker subnet past the five AWS reserves.
func checkerAddr(r cluster.RegionPlan) netip.Prefix {
	s := r.CheckerSubnets[0]
	a := s.Addr().As4()
	a[3] += 10
	return netip.PrefixFrom(netip.AddrFrom4(a), s.Bits())
}

// create builds the namespaces, links, addresses and routes.
func (n network) create(ctx context.Context) error {
	for _, ns := range n.namespaces() {
		if err := ip(ctx, "netns", "add", ns); err != nil {
			return err
		}
		if err := ip(ctx, "-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	if err := enableForwarding(ctx, coreNS); err != nil {
		return err
	}
	rootAddr, coreAddr := linkAddrs(n.linkNet, 0)
	steps := [][]string{
		{"link", "add", rootLink, "type", "veth", "peer", "name", "root", "netns", coreNS},
		{"addr", "add", rootAddr.String(), "dev", rootLink},
		{"link", "set", rootLink, "up"},
		{"-n", coreNS, "addr", "add", coreAddr.String(), "dev", "root"},
		{"-n", coreNS, "link", "set", "root", "up"},
	}
	for i, r := range n.plan.Regions {
		rns := regionNS(r.Name)
		coreEnd, regionEnd := linkAddrs(n.linkNet, i+1)
		steps = append(steps,
			[]string{"link", "add", regionVeth(i), "netns", coreNS, "type", "veth", "peer", "name", "core", "netns", rns},
			[]string{"-n", coreNS, "addr", "add", coreEnd.String(), "dev", regionVeth(i)},
			[]string{"-n", coreNS, "link", "set", regionVeth(i), "up"},
			[]string{"-n", rns, "addr", "add", regionEnd.String(), "dev", "core"},
			[]string{"-n", rns, "link", "set", "core", "up"},
			[]string{"-n", rns, "route", "add", "default", "via", coreEnd.Addr().String()},
			n.regionRoute(i),
			[]string{"route", "add", r.CIDR.String(), "via", coreAddr.Addr().String(), "dev", rootLink},
		)
		for j, s := range subnets(r) {
			gw := gateway(s)
			steps = append(steps,
				[]string{"-n", rns, "link", "add", bridgeName(j), "type", "bridge"},
				[]string{"-n", rns, "addr", "add", gw.String(), "dev", bridgeName(j)},
				[]string{"-n", rns, "link", "set", bridgeName(j), "up"},
			)
		}
	}
	for _, node := range n.plan.Nodes {
		r, _ := n.plan.Region(node.Region)
		rns, nns := regionNS(node.Region), nodeNS(node.Name)
		j := subnetIndex(r, node.Subnet)
		steps = append(steps,
			[]string{"link", "add", nodeVeth(node.ID), "netns", rns, "type", "veth", "peer", "name", "eth0", "netns", nns},
			[]string{"-n", rns, "link", "set", nodeVeth(node.ID), "master", bridgeName(j), "up"},
			[]string{"-n", nns, "addr", "add", netip.PrefixFrom(node.IP, node.Subnet.Bits()).String(), "dev", "eth0"},
			[]string{"-n", nns, "link", "set", "eth0", "up"},
			[]string{"-n", nns, "route", "add", "default", "via", gateway(node.Subnet).Addr().String()},
		)
	}
	for _, region := range checkerRegions(n.plan) {
		r, _ := n.plan.Region(region)
		rns, cns := regionNS(region), checkerNS(region)
		steps = append(steps,
			[]string{"link", "add", "v-hc", "netns", rns, "type", "veth", "peer", "name", "eth0", "netns", cns},
			[]string{"-n", rns, "link", "set", "v-hc", "master", bridgeName(subnetIndex(r, r.CheckerSubnets[0])), "up"},
			[]string{"-n", cns, "addr", "add", checkerAddr(r).String(), "dev", "eth0"},
			[]string{"-n", cns, "link", "set", "eth0", "up"},
			[]string{"-n", cns, "route", "add", "default", "via", gateway(r.CheckerSubnets[0]).Addr().String()},
		)
	}
	steps = append(steps, n.awsSteps()...)
	for _, r := range n.plan.Regions {
		if err := enableForwarding(ctx, regionNS(r.Name)); err != nil {
			return err
		}
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// regionRoute is the core router's route to region i. The kernel drops it
// when the link goes down, so healing a region adds it again.
func (n network) regionRoute(i int) []string {
	_, regionEnd := linkAddrs(n.linkNet, i+1)
	return []string{"-n", coreNS, "route", "replace", n.plan.Regions[i].CIDR.String(), "via", regionEnd.Addr().String()}
}

// destroy deletes every namespace of the network that exists; the veths
// and routes go with them.
func (n network) destroy(ctx context.Context) error {
	var errs []error
	for _, ns := range n.namespaces() {
		if !nsExists(ns) {
			continue
		}
		if err := ip(ctx, "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	// Deleting the core namespace deletes the root's veth with it; this is
	// for a half-built network.
	if _, err := os.Stat("/sys/class/net/" + rootLink); err == nil {
		errs = append(errs, ip(ctx, "link", "del", rootLink))
	}
	return errors.Join(errs...)
}

func nsExists(ns string) bool {
	_, err := os.Stat("/run/netns/" + ns)
	return err == nil
}

// setLink sets a router-side link up or down.
func setLink(ctx context.Context, ns, dev string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return ip(ctx, "-n", ns, "link", "set", dev, state)
}

// linkUp reports whether a link is administratively up.
func linkUp(ns, dev string) bool {
	out, err := exec.Command("ip", "-n", ns, "-j", "link", "show", dev).Output()
	if err != nil {
		return false
	}
	var links []struct {
		Flags []string `json:"flags"`
	}
	if json.Unmarshal(out, &links) != nil || len(links) != 1 {
		return false
	}
	for _, f := range links[0].Flags {
		if f == "UP" {
			return true
		}
	}
	return false
}

// subnets are a region's six /24s in CDK order: public, then private.
func subnets(r cluster.RegionPlan) []netip.Prefix {
	return slices.Concat(r.PublicSubnets, r.PrivateSubnets, r.CheckerSubnets)
}

func subnetIndex(r cluster.RegionPlan, s netip.Prefix) int {
	for i, t := range subnets(r) {
		if t == s {
			return i
		}
	}
	return -1
}

// gateway is the router's address in a subnet: the first host, as on AWS.
func gateway(s netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(s.Addr().Next(), s.Bits())
}

func bridgeName(i int) string { return fmt.Sprintf("s%d", i) }
