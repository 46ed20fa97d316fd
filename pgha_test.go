package main

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/constructs/app"
	"github.com/pgha/pgha/internal/cfncheck"
	"github.com/pgha/pgha/pki"
	"github.com/pgha/pgha/render"
	"github.com/pgha/pgha/stacks"
)

// The tests synthesize each configuration once, into a directory of their
// own, and inspect the templates there. Every CDK test is in this package:
// one process, one jsii runtime.

var tmpRoot string

func TestMain(m *testing.M) {
	os.Setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
	dir, err := os.MkdirTemp("", "pgha-synth-")
	if err != nil {
		panic(err)
	}
	tmpRoot = dir
	code := m.Run()
	jsii.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// synthesized is one configuration's cloud assembly.
type synthesized struct {
	plan      *cluster.Plan
	stacks    []*stacks.RegionStack
	dir       string
	templates map[string]map[string]any // by stack name
	took      time.Duration
	err       error
}

var (
	synthMu    sync.Mutex
	synthCache = map[string]*synthesized{}
)

// witnessConfig is the default cluster plus an etcd witness region, with
// one etcd member per region.
func witnessConfig() map[string]any {
	return map[string]any{
		"regions": []any{
			map[string]any{"name": "eu-west-3", "cidr": "10.11.0.0/16", "postgres": 2, "etcd": 1, "haproxy": 1, "app": 1},
			map[string]any{"name": "eu-west-1", "cidr": "10.12.0.0/16", "postgres": 1, "etcd": 1, "haproxy": 1},
		},
		"witness": map[string]any{"name": "eu-central-1", "cidr": "10.13.0.0/16"},
	}
}

// variants are configurations derived from cdk.json's, each changing one
// thing, for the tests that check what that change leaves alone.
var variants = map[string]func(cfg map[string]any){
	// One more PostgreSQL node in the primary region, one more in the
	// secondary: nothing of the other region may change.
	"grown-primary":   func(cfg map[string]any) { region(cfg, 0)["postgres"] = 3.0 },
	"grown-secondary": func(cfg map[string]any) { region(cfg, 1)["postgres"] = 2.0; region(cfg, 1)["haproxy"] = 2.0 },
	// Tunable settings changed: no node's user data may change.
	"tuned": func(cfg map[string]any) {
		cfg["postgres"].(map[string]any)["parameters"].(map[string]any)["max_connections"] = "300"
		cfg["patroni"].(map[string]any)["ttl"] = 30.0
	},
	// The app's code changed (see appChangedSource).
	"app-changed": func(map[string]any) {},
}

func region(cfg map[string]any, i int) map[string]any {
	return cfg["regions"].([]any)[i].(map[string]any)
}

func cdkContext(t *testing.T) map[string]any {
	t.Helper()
	ctx, err := readContext("cdk.json")
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

// synth synthesizes the named configuration ("default": cdk.json as is;
// "witness": witnessConfig) once.
func synth(t *testing.T, name string) *synthesized {
	t.Helper()
	synthMu.Lock()
	defer synthMu.Unlock()
	if s, ok := synthCache[name]; ok {
		if s.err != nil {
			t.Fatal(s.err)
		}
		return s
	}
	ctx := cdkContext(t)
	if name == "witness" {
		ctx[cluster.ContextKey] = witnessConfig()
	}
	if edit, ok := variants[name]; ok {
		edit(ctx[cluster.ContextKey].(map[string]any))
	}
	s := &synthesized{dir: filepath.Join(tmpRoot, name), templates: map[string]map[string]any{}}
	synthCache[name] = s
	source := "."
	if name == "app-changed" {
		source = appChangedSource(t)
	}
	start := time.Now()
	a, st, err := newApp(appOptions{Context: ctx, Outdir: s.dir, SourceDir: source})
	if err != nil {
		s.err = err
		t.Fatal(err)
	}
	a.Synth(nil)
	s.took = time.Since(start)
	s.stacks = st
	s.plan = st[0].Plan
	for _, stack := range st {
		data, err := os.ReadFile(filepath.Join(s.dir, *stack.StackName()+".template.json"))
		if err != nil {
			s.err = err
			t.Fatal(err)
		}
		var tpl map[string]any
		if err := json.Unmarshal(data, &tpl); err != nil {
			s.err = err
			t.Fatal(err)
		}
		s.templates[*stack.StackName()] = tpl
	}
	return s
}

// check runs one assertions-library check: their failures are panics,
// turned here into test errors so that later checks still run.
func check(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s: %v", what, r)
		}
	}()
	f()
}

func resources(tpl map[string]any, typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range tpl["Resources"].(map[string]any) {
		res := r.(map[string]any)
		if res["Type"] == typ {
			out[id] = res
		}
	}
	return out
}

func props(r map[string]any) map[string]any {
	p, _ := r["Properties"].(map[string]any)
	return p
}

func tag(r map[string]any, key string) string {
	tags, _ := props(r)["Tags"].([]any)
	for _, x := range tags {
		m := x.(map[string]any)
		if m["Key"] == key {
			s, _ := m["Value"].(string)
			return s
		}
	}
	return ""
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func forEachConfig(t *testing.T, f func(t *testing.T, s *synthesized)) {
	for _, name := range []string{"default", "witness"} {
		t.Run(name, func(t *testing.T) { f(t, synth(t, name)) })
	}
}

func TestCDKJSONIsTheDefault(t *testing.T) {
	raw, err := json.Marshal(cdkContext(t)[cluster.ContextKey])
	if err != nil {
		t.Fatal(err)
	}
	// Decode onto a zero Config: a key missing from cdk.json stays zero
	// and shows up as a difference.
	var got cluster.Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := cluster.Default()
	if len(got.App.AllowedCIDRs) == 0 && len(want.App.AllowedCIDRs) == 0 {
		got.App.AllowedCIDRs, want.App.AllowedCIDRs = nil, nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("cdk.json's %s context differs from cluster.Default():\n got %+v\nwant %+v", cluster.ContextKey, got, want)
	}
}

func TestConfigErrorsAtSynth(t *testing.T) {
	for _, tc := range []struct {
		name string
		pgha map[string]any
		want []string
	}{
		{"overlapping CIDR", map[string]any{"regions": []any{
			map[string]any{"name": "eu-west-3", "cidr": "10.11.0.0/16", "postgres": 2, "etcd": 2, "haproxy": 1},
			map[string]any{"name": "eu-west-1", "cidr": "10.11.0.0/16", "postgres": 1, "etcd": 1, "haproxy": 1},
		}}, []string{"regions[1].cidr", "10.11.0.0/16"}},
		{"x86 type on arm64", map[string]any{"instances": map[string]any{"postgres": "t3.medium"}}, []string{"instances.postgres", "t3.medium"}},
		{"even etcd", map[string]any{"regions": []any{
			map[string]any{"name": "eu-west-3", "cidr": "10.11.0.0/16", "postgres": 2, "etcd": 2, "haproxy": 1},
			map[string]any{"name": "eu-west-1", "cidr": "10.12.0.0/16", "postgres": 1, "etcd": 2, "haproxy": 1},
		}}, []string{"regions[*].etcd", "4"}},
		{"unknown key", map[string]any{"nmae": "x"}, []string{"nmae"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := cdkContext(t)
			ctx[cluster.ContextKey] = tc.pgha
			_, _, err := newApp(appOptions{Context: ctx, Outdir: filepath.Join(tmpRoot, "bad"), SourceDir: "."})
			if err == nil {
				t.Fatal("newApp accepted the configuration")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestStackOrder(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		data, err := os.ReadFile(filepath.Join(s.dir, "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Artifacts map[string]struct {
				Type         string   `json:"type"`
				Dependencies []string `json:"dependencies"`
			} `json:"artifacts"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		cfg := s.plan.Config
		for i, r := range s.plan.Regions {
			name := stacks.StackName(cfg, r.Name)
			a, ok := m.Artifacts[name]
			if !ok || a.Type != "aws:cloudformation:stack" {
				t.Errorf("no stack %s in the assembly", name)
				continue
			}
			var deps []string
			for _, d := range a.Dependencies {
				if !strings.HasSuffix(d, ".assets") {
					deps = append(deps, d)
				}
			}
			var want []string
			for _, later := range s.plan.Regions[i+1:] {
				want = append(want, stacks.StackName(cfg, later.Name))
			}
			sort.Strings(deps)
			sort.Strings(want)
			if !slices.Equal(deps, want) {
				t.Errorf("%s depends on %v, want %v (it owns the peering with the later regions)", name, deps, want)
			}
		}
	})
}

func TestNetwork(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		for _, rp := range s.plan.Regions {
			tpl := s.templates[stacks.StackName(s.plan.Config, rp.Name)]
			vpcs := resources(tpl, "AWS::EC2::VPC")
			if len(vpcs) != 1 {
				t.Fatalf("%s: %d VPCs", rp.Name, len(vpcs))
			}
			for _, v := range vpcs {
				if got := props(v)["CidrBlock"]; got != rp.CIDR.String() {
					t.Errorf("%s: VPC CIDR %v, want %s", rp.Name, got, rp.CIDR)
				}
			}
			var public, private, checker []string
			for id, sn := range resources(tpl, "AWS::EC2::Subnet") {
				p := props(sn)
				entry := fmt.Sprintf("%s %s", p["AvailabilityZone"], p["CidrBlock"])
				switch {
				case strings.Contains(id, "Public"):
					public = append(public, entry)
				case strings.Contains(id, "Checker"):
					checker = append(checker, entry)
				default:
					private = append(private, entry)
				}
			}
			var wantPublic, wantPrivate, wantChecker []string
			for i, az := range rp.AZs {
				wantPublic = append(wantPublic, fmt.Sprintf("%s %s", az, rp.PublicSubnets[i]))
				wantPrivate = append(wantPrivate, fmt.Sprintf("%s %s", az, rp.PrivateSubnets[i]))
				if len(rp.CheckerSubnets) > 0 {
					wantChecker = append(wantChecker, fmt.Sprintf("%s %s", az, rp.CheckerSubnets[i]))
				}
			}
			for _, l := range [][]string{public, private, checker, wantPublic, wantPrivate, wantChecker} {
				sort.Strings(l)
			}
			if !slices.Equal(public, wantPublic) || !slices.Equal(private, wantPrivate) || !slices.Equal(checker, wantChecker) {
				t.Errorf("%s: subnets public %v private %v checker %v, the plan has %v, %v and %v", rp.Name, public, private, checker, wantPublic, wantPrivate, wantChecker)
			}
			if n := len(resources(tpl, "AWS::EC2::FlowLog")); n != 1 {
				t.Errorf("%s: %d flow logs, want 1", rp.Name, n)
			}
			if n := len(resources(tpl, "AWS::EC2::NatGateway")); n != 1 {
				t.Errorf("%s: %d NAT gateways, want 1", rp.Name, n)
			}
		}
	})
}

func TestPeering(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		for i, rp := range s.plan.Regions {
			tpl := s.templates[stacks.StackName(s.plan.Config, rp.Name)]
			later := s.plan.Regions[i+1:]
			conns := resources(tpl, "AWS::EC2::VPCPeeringConnection")
			var peerRegions []string
			for _, c := range conns {
				peerRegions = append(peerRegions, props(c)["PeerRegion"].(string))
				if _, ok := props(c)["PeerOwnerId"]; ok {
					t.Errorf("%s: peering names an owner: same-account peering needs none", rp.Name)
				}
			}
			var want []string
			for _, l := range later {
				want = append(want, l.Name)
			}
			sort.Strings(peerRegions)
			sort.Strings(want)
			if !slices.Equal(peerRegions, want) {
				t.Errorf("%s owns peerings to %v, want %v", rp.Name, peerRegions, want)
			}
			// Local side: a route to each later region's CIDR in all route
			// tables (6, and 3 more for a data region's checker subnets);
			// peer side: a createRoute in the peer's region back to this
			// CIDR for each of the peer's route tables.
			tables := func(r cluster.RegionPlan) int { return 6 + len(r.CheckerSubnets) }
			routes := map[string]int{}
			for _, r := range resources(tpl, "AWS::EC2::Route") {
				p := props(r)
				if _, ok := p["VpcPeeringConnectionId"]; ok {
					routes[p["DestinationCidrBlock"].(string)]++
				}
			}
			peerRoutes := map[string]int{}
			for _, r := range resources(tpl, "Custom::PeerRoute") {
				create := toJSON(props(r)["Create"])
				del := toJSON(props(r)["Delete"])
				if !strings.Contains(create, `\"action\":\"createRoute\"`) || !strings.Contains(del, `\"action\":\"deleteRoute\"`) ||
					!strings.Contains(create, `\"DestinationCidrBlock\":\"`+rp.CIDR.String()+`\"`) {
					t.Errorf("%s: peer route %s does not create/delete a route to %s", rp.Name, create, rp.CIDR)
				}
				m := regexp.MustCompile(`\\"region\\":\\"([a-z0-9-]+)\\"`).FindStringSubmatch(create)
				if m != nil {
					peerRoutes[m[1]]++
				}
			}
			for _, l := range later {
				if routes[l.CIDR.String()] != tables(rp) {
					t.Errorf("%s: %d routes to %s %s, want %d", rp.Name, routes[l.CIDR.String()], l.Name, l.CIDR, tables(rp))
				}
				if peerRoutes[l.Name] != tables(l) {
					t.Errorf("%s: %d routes created in %s, want %d", rp.Name, peerRoutes[l.Name], l.Name, tables(l))
				}
			}
			if len(routes) != len(later) || len(peerRoutes) != len(later) {
				t.Errorf("%s: peering routes to %v and in %v, want only the later regions %v", rp.Name, routes, peerRoutes, want)
			}
		}
	})
}

func TestInstances(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		cfg := s.plan.Config
		for _, rp := range s.plan.Regions {
			tpl := s.templates[stacks.StackName(cfg, rp.Name)]
			subnets := map[string]string{} // logical ID -> CIDR
			for id, sn := range resources(tpl, "AWS::EC2::Subnet") {
				subnets[id] = props(sn)["CidrBlock"].(string)
			}
			byName := map[string]map[string]any{}
			for _, in := range resources(tpl, "AWS::EC2::Instance") {
				byName[strings.TrimPrefix(tag(in, "Name"), cfg.Name+"-")] = in
			}
			want := s.plan.InRegion(rp.Name)
			if len(byName) != len(want) {
				t.Errorf("%s: %d instances, the plan has %d", rp.Name, len(byName), len(want))
			}
			counts := map[string]int{}
			for _, in := range byName {
				counts[tag(in, "pgha:role")]++
			}
			for _, role := range cluster.Roles {
				n := 0
				for _, nd := range want {
					if nd.Role == role {
						n++
					}
				}
				if counts[string(role)] != n {
					t.Errorf("%s: %d %s instances, want %d", rp.Name, counts[string(role)], role, n)
				}
			}
			for _, nd := range want {
				in, ok := byName[nd.Name]
				if !ok {
					t.Errorf("%s: no instance %s", rp.Name, nd.Name)
					continue
				}
				p := props(in)
				ni := p["NetworkInterfaces"].([]any)[0].(map[string]any)
				if ni["PrivateIpAddress"] != nd.IP.String() {
					t.Errorf("%s: IP %v, want %s", nd.Name, ni["PrivateIpAddress"], nd.IP)
				}
				sub := ni["SubnetId"].(map[string]any)["Ref"].(string)
				if subnets[sub] != nd.Subnet.String() || p["AvailabilityZone"] != nd.AZ {
					t.Errorf("%s: in subnet %s (%s), zone %v; want %s in %s", nd.Name, sub, subnets[sub], p["AvailabilityZone"], nd.Subnet, nd.AZ)
				}
				if ni["AssociatePublicIpAddress"] != nd.Public {
					t.Errorf("%s: public IP %v, want %v", nd.Name, ni["AssociatePublicIpAddress"], nd.Public)
				}
				md, _ := p["MetadataOptions"].(map[string]any)
				if md["HttpTokens"] != "required" {
					t.Errorf("%s: IMDSv2 not required: %v", nd.Name, md)
				}
				if p["Monitoring"] != true {
					t.Errorf("%s: no detailed monitoring", nd.Name)
				}
				stateful := nd.Role == cluster.RolePostgres || nd.Role == cluster.RoleEtcd
				if got, _ := p["DisableApiTermination"].(bool); got != stateful {
					t.Errorf("%s: termination protection %v, want %v", nd.Name, got, stateful)
				}
				if tag(in, "pgha:cluster") != cfg.Name || tag(in, "pgha:role") != string(nd.Role) {
					t.Errorf("%s: tags %v", nd.Name, p["Tags"])
				}
				if _, ok := p["KeyName"]; ok {
					t.Errorf("%s has a key pair", nd.Name)
				}
				want := map[string]any{"DeviceName": "/dev/xvda", "Ebs": map[string]any{
					"DeleteOnTermination": true, "Encrypted": true, "VolumeSize": float64(cfg.Instances.RootVolumeGiB), "VolumeType": "gp3"}}
				if bd := p["BlockDeviceMappings"].([]any); len(bd) != 1 || !reflect.DeepEqual(bd[0], want) {
					t.Errorf("%s: block devices %s", nd.Name, toJSON(bd))
				}
				typ := map[cluster.Role]string{cluster.RolePostgres: cfg.Instances.Postgres, cluster.RoleEtcd: cfg.Instances.Etcd,
					cluster.RoleHAProxy: cfg.Instances.HAProxy, cluster.RoleApp: cfg.Instances.App}[nd.Role]
				if p["InstanceType"] != typ {
					t.Errorf("%s: type %v, want %s", nd.Name, p["InstanceType"], typ)
				}
			}
			// Data volumes: one per PostgreSQL node, in its zone, encrypted
			// gp3, retained, attached.
			vols := resources(tpl, "AWS::EC2::Volume")
			if len(vols) != counts["postgres"] || len(resources(tpl, "AWS::EC2::VolumeAttachment")) != counts["postgres"] {
				t.Errorf("%s: %d data volumes for %d PostgreSQL nodes", rp.Name, len(vols), counts["postgres"])
			}
			for id, v := range vols {
				p := props(v)
				if p["Encrypted"] != true || p["VolumeType"] != "gp3" || p["Size"] != float64(cfg.Instances.DataVolumeGiB) || v["DeletionPolicy"] != "RetainExceptOnCreate" {
					t.Errorf("%s: volume %s: %s (deletion %v)", rp.Name, id, toJSON(p), v["DeletionPolicy"])
				}
			}
			check(t, rp.Name+": IMDSv2 on every instance", func() {
				tt := assertions.Template_FromJSON(&tpl, nil)
				tt.AllResourcesProperties(jsii.String("AWS::EC2::Instance"), &map[string]any{
					"MetadataOptions": assertions.Match_ObjectLike(&map[string]any{"HttpTokens": "required"}),
				})
				tt.ResourceCountIs(jsii.String("AWS::EC2::Instance"), jsii.Number(float64(len(want))))
			})
		}
	})
}

// ingressRules lists a template's inbound rules as "<role> <port> from
// <role or CIDR>", sorted.
func ingressRules(t *testing.T, tpl map[string]any) []string {
	t.Helper()
	roleOf := map[string]string{}
	for id := range resources(tpl, "AWS::EC2::SecurityGroup") {
		if strings.HasPrefix(id, "HealthCheck") {
			roleOf[id] = "healthcheck"
		}
		for _, role := range []string{"Postgres", "Etcd", "HAProxy", "App"} {
			if strings.HasPrefix(id, "Firewall"+role) {
				roleOf[id] = strings.ToLower(role)
			}
		}
	}
	var out []string
	add := func(to string, rule map[string]any) {
		from, _ := rule["CidrIp"].(string)
		if from == "" {
			from, _ = rule["CidrIpv6"].(string)
		}
		if ref, ok := rule["SourceSecurityGroupId"].(map[string]any); ok {
			ga := ref["Fn::GetAtt"].([]any)
			from = roleOf[ga[0].(string)]
		}
		port := int(rule["FromPort"].(float64))
		if rule["ToPort"].(float64) != rule["FromPort"].(float64) || rule["IpProtocol"] != "tcp" {
			t.Errorf("rule on %s is not one TCP port: %s", to, toJSON(rule))
		}
		out = append(out, fmt.Sprintf("%s %d from %s", to, port, from))
	}
	for id, sg := range resources(tpl, "AWS::EC2::SecurityGroup") {
		rules, _ := props(sg)["SecurityGroupIngress"].([]any)
		for _, r := range rules {
			add(roleOf[id], r.(map[string]any))
		}
	}
	for _, r := range resources(tpl, "AWS::EC2::SecurityGroupIngress") {
		p := props(r)
		to := roleOf[p["GroupId"].(map[string]any)["Fn::GetAtt"].([]any)[0].(string)]
		add(to, p)
	}
	sort.Strings(out)
	return out
}

func TestSecurityGroups(t *testing.T) {
	s := synth(t, "default")
	want := map[string][]string{
		"eu-west-3": {
			"etcd 2379 from 10.12.0.0/16", "etcd 2379 from postgres", "etcd 2380 from 10.12.0.0/16", "etcd 2380 from etcd",
			"app 5000 from healthcheck",
			"haproxy 5000 from 10.12.0.0/16", "haproxy 5000 from app", "haproxy 5000 from healthcheck",
			"postgres 5432 from 10.12.0.0/16", "postgres 5432 from haproxy", "postgres 5432 from postgres",
			"postgres 8008 from 10.12.0.0/16", "postgres 8008 from haproxy", "postgres 8008 from healthcheck", "postgres 8008 from postgres",
			"postgres 8432 from 10.12.0.0/16", "postgres 8432 from postgres",
		},
		"eu-west-1": {
			"etcd 2379 from 10.11.0.0/16", "etcd 2379 from postgres", "etcd 2380 from 10.11.0.0/16",
			"haproxy 5000 from 10.11.0.0/16", "haproxy 5000 from healthcheck",
			"postgres 5432 from 10.11.0.0/16", "postgres 5432 from haproxy",
			"postgres 8008 from 10.11.0.0/16", "postgres 8008 from haproxy", "postgres 8008 from healthcheck",
			"postgres 8432 from 10.11.0.0/16",
		},
	}
	for region, w := range want {
		got := ingressRules(t, s.templates[stacks.StackName(s.plan.Config, region)])
		sort.Strings(w)
		if !slices.Equal(got, w) {
			t.Errorf("%s ingress:\n got %q\nwant %q", region, got, w)
		}
	}
	// The witness holds one etcd member: only etcd's ports, only from the
	// data regions.
	ws := synth(t, "witness")
	got := ingressRules(t, ws.templates[stacks.StackName(ws.plan.Config, "eu-central-1")])
	w := []string{"etcd 2379 from 10.11.0.0/16", "etcd 2379 from 10.12.0.0/16", "etcd 2380 from 10.11.0.0/16", "etcd 2380 from 10.12.0.0/16"}
	if !slices.Equal(got, w) {
		t.Errorf("witness ingress:\n got %q\nwant %q", got, w)
	}
}

func TestNoOpenIngressNorSSH(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		for name, tpl := range s.templates {
			for _, r := range ingressRules(t, tpl) {
				if strings.HasSuffix(r, "from 0.0.0.0/0") || strings.HasSuffix(r, "from ::/0") || strings.Contains(r, " 22 from") {
					t.Errorf("%s: %s", name, r)
				}
			}
			for id, sg := range resources(tpl, "AWS::EC2::SecurityGroup") {
				for _, e := range props(sg)["SecurityGroupEgress"].([]any) {
					m := e.(map[string]any)
					if m["IpProtocol"] == "-1" {
						t.Errorf("%s: %s allows all egress", name, id)
					}
				}
			}
		}
	})
}

func TestAppAllowedCIDRs(t *testing.T) {
	ctx := cdkContext(t)
	ctx[cluster.ContextKey] = map[string]any{"app": map[string]any{"allowedCidrs": []any{"203.0.113.0/24"}}}
	dir := filepath.Join(tmpRoot, "allowed")
	_, st, err := newApp(appOptions{Context: ctx, Outdir: dir, SourceDir: "."})
	if err != nil {
		t.Fatal(err)
	}
	check(t, "app port open to app.allowedCidrs only", func() {
		tt := assertions.Template_FromStack(st[0].Stack, nil)
		tt.HasResourceProperties(jsii.String("AWS::EC2::SecurityGroup"), &map[string]any{
			"SecurityGroupIngress": assertions.Match_ArrayWith(&[]any{assertions.Match_ObjectLike(&map[string]any{
				"CidrIp": "203.0.113.0/24", "FromPort": 5000, "ToPort": 5000, "IpProtocol": "tcp",
			})}),
		})
		tt.HasOutput(jsii.String("App1PublicEndpoint"), &map[string]any{})
	})
}

func TestPinnedImages(t *testing.T) {
	ctx := cdkContext(t)
	ctx[cluster.ContextKey] = map[string]any{"instances": map[string]any{"images": map[string]any{"eu-west-3": "ami-0123456789abcdef0"}}}
	_, st, err := newApp(appOptions{Context: ctx, Outdir: filepath.Join(tmpRoot, "pinned"), SourceDir: "."})
	if err != nil {
		t.Fatal(err)
	}
	for _, stack := range st {
		tpl := assertions.Template_FromStack(stack.Stack, nil)
		images := map[string]bool{}
		for _, r := range resources(*tpl.ToJSON(), "AWS::EC2::Instance") {
			images[toJSON(props(r)["ImageId"])] = true
		}
		params := toJSON(tpl.ToJSON())
		pinned := stack.Region.Name == "eu-west-3"
		switch {
		case pinned && (len(images) != 1 || !images[`"ami-0123456789abcdef0"`]):
			t.Errorf("%s: instance images %v, want only the pinned ami-0123456789abcdef0", *stack.StackName(), images)
		case pinned && strings.Contains(params, "/aws/service/debian"):
			t.Errorf("%s: still reads Debian's SSM parameter although its image is pinned", *stack.StackName())
		case !pinned && images[`"ami-0123456789abcdef0"`]:
			t.Errorf("%s: uses eu-west-3's pinned image", *stack.StackName())
		}
	}
}

func TestSecrets(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		cfg := s.plan.Config
		primary := s.templates[stacks.StackName(cfg, s.plan.Primary().Name)]
		var replicas []any
		for _, r := range s.plan.Regions[1:] {
			if !r.Witness {
				replicas = append(replicas, map[string]any{"Region": r.Name})
			}
		}
		sec := resources(primary, "AWS::SecretsManager::Secret")
		var names []string
		for id, r := range sec {
			p := props(r)
			names = append(names, p["Name"].(string))
			gen := p["GenerateSecretString"].(map[string]any)
			if gen["ExcludePunctuation"] != true || gen["PasswordLength"] != float64(32) {
				t.Errorf("secret %s generates %v", id, gen)
			}
			if !reflect.DeepEqual(p["ReplicaRegions"], replicas) {
				t.Errorf("secret %s replicated to %v, want %v", id, p["ReplicaRegions"], replicas)
			}
			if r["DeletionPolicy"] != "RetainExceptOnCreate" {
				t.Errorf("secret %s is not retained", id)
			}
		}
		var want []string
		for _, n := range cluster.Secrets {
			want = append(want, cfg.SecretName(n))
		}
		sort.Strings(names)
		sort.Strings(want)
		if !slices.Equal(names, want) {
			t.Errorf("secrets %v, want %v", names, want)
		}
		for _, r := range s.plan.Regions[1:] {
			tpl := s.templates[stacks.StackName(cfg, r.Name)]
			if n := len(resources(tpl, "AWS::SecretsManager::Secret")); n != 0 {
				t.Errorf("%s creates %d secrets; only the primary does", r.Name, n)
			}
			all := toJSON(resources(tpl, "AWS::IAM::Policy"))
			for _, n := range cluster.Secrets {
				arn := ":secret:" + cfg.SecretName(n) + "-??????"
				if got := strings.Contains(all, arn); got != !r.Witness {
					t.Errorf("%s: grant on the replica %s: %v", r.Name, arn, got)
				}
			}
		}
	})
}

// TestSecretGrants checks each node's role reads only the passwords its
// role needs (cluster.SecretsFor), in the primary region, where the grants
// name the secrets themselves.
func TestSecretGrants(t *testing.T) {
	s := synth(t, "default")
	tpl := s.templates[stacks.StackName(s.plan.Config, "eu-west-3")]
	ids := map[cluster.Secret]string{}
	for _, sec := range cluster.Secrets {
		for id, r := range resources(tpl, "AWS::SecretsManager::Secret") {
			if props(r)["Name"] == s.plan.Config.SecretName(sec) {
				ids[sec] = id
			}
		}
		if ids[sec] == "" {
			t.Fatalf("no secret %s", sec)
		}
	}
	for _, in := range resources(tpl, "AWS::EC2::Instance") {
		n := nodeOf(t, s.plan, in)
		doc := toJSON(rolePolicies(tpl, instanceRole(t, tpl, in)))
		for _, sec := range cluster.Secrets {
			got := strings.Contains(doc, `"Ref":"`+ids[sec]+`"`)
			if want := slices.Contains(cluster.SecretsFor(n.Role), sec); got != want {
				t.Errorf("%s reads %s: %v, want %v", n.Name, sec, got, want)
			}
		}
	}
}

// nodeOf is the plan's node of an instance, by its Name tag.
func nodeOf(t *testing.T, p *cluster.Plan, in map[string]any) cluster.Node {
	t.Helper()
	n, ok := p.Node(strings.TrimPrefix(tag(in, "Name"), p.Config.Name+"-"))
	if !ok {
		t.Fatalf("instance %s is not a node of the plan", tag(in, "Name"))
	}
	return n
}

// instanceRole is the logical ID of an instance's role, through its
// instance profile.
func instanceRole(t *testing.T, tpl map[string]any, in map[string]any) string {
	t.Helper()
	ref, _ := props(in)["IamInstanceProfile"].(map[string]any)["Ref"].(string)
	profile, _ := tpl["Resources"].(map[string]any)[ref].(map[string]any)
	if profile["Type"] != "AWS::IAM::InstanceProfile" {
		t.Fatalf("%s: instance profile %q is not in the template", tag(in, "Name"), ref)
	}
	roles := props(profile)["Roles"].([]any)
	if len(roles) != 1 {
		t.Fatalf("%s: profile %s has roles %v", tag(in, "Name"), ref, roles)
	}
	return roles[0].(map[string]any)["Ref"].(string)
}

// rolePolicies are the policy documents attached to the role with logical
// ID role.
func rolePolicies(tpl map[string]any, role string) []any {
	var out []any
	for _, p := range resources(tpl, "AWS::IAM::Policy") {
		for _, r := range props(p)["Roles"].([]any) {
			if toJSON(r) == `{"Ref":"`+role+`"}` {
				out = append(out, props(p)["PolicyDocument"])
			}
		}
	}
	return out
}

// flatARN writes an ARN built with Fn::Join as one string, its Refs as
// <Name>.
func flatARN(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		if ref, ok := x["Ref"].(string); ok {
			return "<" + ref + ">"
		}
		if j, ok := x["Fn::Join"].([]any); ok {
			var parts []string
			for _, p := range j[1].([]any) {
				parts = append(parts, flatARN(p))
			}
			return strings.Join(parts, j[0].(string))
		}
	}
	return toJSON(v)
}

// tlsReads lists what the policy documents let their role do on the
// cluster's TLS secrets, as "<actions> <region> <name pattern>", sorted.
func tlsReads(cfg cluster.Config, docs []any) []string {
	var out []string
	for _, d := range docs {
		for _, st := range d.(map[string]any)["Statement"].([]any) {
			m := st.(map[string]any)
			res, ok := m["Resource"].([]any)
			if !ok {
				res = []any{m["Resource"]}
			}
			for _, r := range res {
				arn := flatARN(r)
				i := strings.Index(arn, ":secret:"+cfg.Name+"/tls/")
				if i < 0 {
					continue
				}
				region := "?"
				if m := regexp.MustCompile(`:secretsmanager:([a-z0-9-]+):`).FindStringSubmatch(arn); m != nil {
					region = m[1]
				}
				out = append(out, fmt.Sprintf("%v %s %s", m["Action"], region, arn[i+len(":secret:"):]))
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestTLSGrants: each PostgreSQL and etcd node's role, its own, reads its
// own certificate and key and the CA's certificate in its region, and no
// other node's; HAProxy and app roles read the CA's certificate; the
// health checker the CA's certificate and Patroni's API password; only
// the primary's issuer writes them, and only <cluster>/tls/* in the plan's
// regions.
func TestTLSGrants(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		cfg := s.plan.Config
		const get = "secretsmanager:GetSecretValue"
		identities := map[string]bool{}
		for _, id := range pki.Identities(s.plan) {
			identities[id.Name] = true
		}
		roleOf := map[string]string{} // role logical ID -> node, for the nodes with a certificate
		for _, rp := range s.plan.Regions {
			name := stacks.StackName(cfg, rp.Name)
			tpl := s.templates[name]
			trust := fmt.Sprintf("%s %s %s-??????", get, rp.Name, pki.TrustSecret(cfg))
			for _, in := range resources(tpl, "AWS::EC2::Instance") {
				n := nodeOf(t, s.plan, in)
				role := instanceRole(t, tpl, in)
				want := []string{trust}
				if identities[n.Name] {
					want = append(want, fmt.Sprintf("%s %s %s-??????", get, n.Region, pki.NodeSecret(cfg, n.Name)))
					if other, ok := roleOf[name+"/"+role]; ok {
						t.Errorf("%s: %s and %s share the role %s, so each may read the other's key", name, other, n.Name, role)
					}
					roleOf[name+"/"+role] = n.Name
				}
				sort.Strings(want)
				if got := tlsReads(cfg, rolePolicies(tpl, role)); !slices.Equal(got, want) {
					t.Errorf("%s: %s's role may\n %q\nwant\n %q", name, n.Name, got, want)
				}
			}
			var checker []any
			for id, p := range resources(tpl, "AWS::IAM::Policy") {
				if strings.HasPrefix(id, "HealthCheckRole") {
					checker = append(checker, props(p)["PolicyDocument"])
				}
			}
			if !rp.Witness {
				if got := tlsReads(cfg, checker); !slices.Equal(got, []string{trust}) {
					t.Errorf("%s: the health checker may %q, want %q", name, got, []string{trust})
				}
				api := ":secretsmanager:" + rp.Name + ":<AWS::AccountId>:secret:" + cfg.SecretName(cluster.SecretPatroniAPI) + "-??????"
				if !strings.Contains(toJSON(checker), get) || !strings.Contains(flatAll(checker), api) {
					t.Errorf("%s: the health checker may not read %s", name, api)
				}
			}
			// The issuer: in the primary stack only, writing <cluster>/tls/*
			// in every region of the plan; nobody else writes.
			issuers := resources(tpl, "Custom::PghaCertificates")
			if want := map[bool]int{true: 1, false: 0}[rp.Primary]; len(issuers) != want {
				t.Errorf("%s: %d certificate issuers, want %d", name, len(issuers), want)
			}
			for id, p := range resources(tpl, "AWS::IAM::Policy") {
				doc := toJSON(props(p)["PolicyDocument"])
				writes := strings.Contains(doc, "secretsmanager:CreateSecret") || strings.Contains(doc, "secretsmanager:PutSecretValue")
				if writes != (rp.Primary && strings.HasPrefix(id, "CertificateIssuerRole")) {
					t.Errorf("%s: %s writes secrets: %v", name, id, writes)
				}
				if !writes {
					continue
				}
				var got, want []string
				for _, r := range tlsReads(cfg, []any{props(p)["PolicyDocument"]}) {
					got = append(got, strings.SplitN(r, "] ", 2)[1])
				}
				for _, r := range s.plan.Regions {
					want = append(want, r.Name+" "+cfg.Name+"/tls/*")
				}
				sort.Strings(want)
				if !slices.Equal(got, want) {
					t.Errorf("%s: the issuer writes %q, want %q", name, got, want)
				}
			}
		}
		var want []string
		for n := range identities {
			want = append(want, n)
		}
		var got []string
		for _, n := range roleOf {
			got = append(got, n)
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("nodes with a role of their own reading their key: %v, want pki.Identities %v", got, want)
		}
	})
}

// flatAll is every ARN in v, flattened, one per line.
func flatAll(v any) string {
	var sb strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if _, ok := x["Fn::Join"]; ok {
				sb.WriteString(flatARN(x) + "\n")
				return
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(v)
	return sb.String()
}

// TestStableLogicalIDs pins the logical IDs of stateful resources:
// changing one replaces the resource (and loses its data).
func TestStableLogicalIDs(t *testing.T) {
	s := synth(t, "default")
	want := map[string][]string{
		"eu-west-3": {
			"Postgrespg1InstanceB508AB5B", "Postgrespg1Data2608BEA1", "Postgrespg2Instance08AAE64E", "Postgrespg2DataEB6F5B09",
			"Etcdetcd1Instance60766AA8", "Etcdetcd2Instance4B026FBE", "HAProxyhaproxy1Instance2DAC6544", "Appapp1Instance8C27BE0B",
			"SecretsSuperuserDF00726A", "SecretsReplicationC5EAF607", "SecretsAppA939B7EC", "SecretsHealth82DD5BE5",
			"SecretsPatroniAPIE88C6DA3", "SecretsHAProxyStats75FB9C34",
			"NetworkVpc7FB7348F", "Peeringeuwest1Connection51FA3870",
		},
		"eu-west-1": {
			// Region-local IDs: the same as the primary region's first nodes.
			"Postgrespg1InstanceB508AB5B", "Postgrespg1Data2608BEA1", "Etcdetcd1Instance60766AA8", "HAProxyhaproxy1Instance2DAC6544",
			"NetworkVpc7FB7348F",
		},
	}
	for region, ids := range want {
		res := s.templates[stacks.StackName(s.plan.Config, region)]["Resources"].(map[string]any)
		for _, id := range ids {
			if _, ok := res[id]; !ok {
				t.Errorf("%s: no resource %s: a stateful resource's logical ID changed", region, id)
			}
		}
	}
	ws := synth(t, "witness")
	if _, ok := ws.templates[stacks.StackName(ws.plan.Config, "eu-central-1")]["Resources"].(map[string]any)["Etcdetcd1Instance60766AA8"]; !ok {
		t.Error("eu-central-1: no resource Etcdetcd1Instance60766AA8: the witness member's logical ID changed")
	}
}

func TestOutputs(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		for _, rp := range s.plan.Regions {
			tpl := s.templates[stacks.StackName(s.plan.Config, rp.Name)]
			outputs, _ := tpl["Outputs"].(map[string]any)
			all := toJSON(outputs)
			for _, n := range s.plan.InRegion(rp.Name) {
				id := strings.ToUpper(n.ID[:1]) + n.ID[1:]
				switch n.Role {
				case cluster.RolePostgres:
					for _, o := range []string{id + "Session", id + "PatroniList"} {
						if _, ok := outputs[o]; !ok {
							t.Errorf("%s: no output %s", rp.Name, o)
						}
					}
				case cluster.RoleApp:
					for _, o := range []string{id + "Endpoint", id + "PortForward"} {
						if _, ok := outputs[o]; !ok {
							t.Errorf("%s: no output %s", rp.Name, o)
						}
					}
				}
			}
			for _, w := range []string{"aws ssm start-session --region " + rp.Name + " --target "} {
				if len(s.plan.InRegion(rp.Name)) > 1 && !strings.Contains(all, w) {
					t.Errorf("%s: outputs lack %q", rp.Name, w)
				}
			}
			if s.plan.InRegion(rp.Name)[0].Role == cluster.RolePostgres &&
				!strings.Contains(all, "sudo -u postgres patronictl -c "+render.PatroniConfig+" list") {
				t.Errorf("%s: no patronictl list command in %s", rp.Name, all)
			}
		}
	})
}

// userData returns an instance's user data: the bytes EC2 gets (the
// property's base64, which must be a plain string, nothing for
// CloudFormation to substitute) and the script they uncompress to.
func userData(t *testing.T, in map[string]any) (raw []byte, script string) {
	t.Helper()
	b64, ok := props(in)["UserData"].(string)
	if !ok {
		t.Fatalf("user data is %s, not a base64 string", toJSON(props(in)["UserData"]))
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("user data: %v", err)
	}
	r, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("user data is not gzip: %v", err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("user data: %v", err)
	}
	return raw, string(b)
}

func TestUserData(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		for name, tpl := range s.templates {
			for _, in := range resources(tpl, "AWS::EC2::Instance") {
				raw, ud := userData(t, in)
				node := tag(in, "Name")
				if len(raw) > render.MaxUserData {
					t.Errorf("%s %s: user data %d bytes > %d", name, node, len(raw), render.MaxUserData)
				}
				if !strings.HasPrefix(ud, "#!/bin/bash\n") {
					t.Errorf("%s %s: user data is not the boot script", name, node)
				}
				// Compressed, the assembly scan cannot see into it.
				for _, re := range leaks {
					if m := re.FindString(ud); m != "" {
						t.Errorf("%s %s: user data: %q matches %s", name, node, m, re)
					}
				}
				// The local cluster boots each node from render.BootScript:
				// the template must hold exactly those bytes, with nothing
				// for CloudFormation to substitute.
				n, ok := s.plan.Node(strings.TrimPrefix(node, s.plan.Config.Name+"-"))
				if !ok {
					t.Errorf("%s: no node of the plan is named %s", name, node)
					continue
				}
				want, err := render.UserData(s.plan, n)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(raw, want) {
					t.Errorf("%s %s: the template's user data is not render.UserData's bytes (what the local cluster boots)", name, node)
				}
				t.Logf("%s %s: user data %d bytes, %d uncompressed", name, node, len(raw), len(ud))
			}
		}
	})
}

var leaks = []*regexp.Regexp{
	regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`),
	regexp.MustCompile(`\bA[SK]IA[0-9A-Z]{16}\b`),
	regexp.MustCompile(`(?i)"(SecretString|SecretStringValue|MasterUserPassword|Password)"\s*:`),
	regexp.MustCompile(`(?i)(PATRONI_[A-Z]+_PASSWORD|PGHA_[A-Z]+_PASSWORD)=[A-Za-z0-9]`),
	// A URL with a password in it; a format verb (%s) is source code.
	regexp.MustCompile(`(?i)postgres(ql)?://[^:@/\s"]+:[^%@/\s"]+@`),
	regexp.MustCompile(`\{\{resolve:secretsmanager:`),
}

// TestNoSecretMaterialInAssembly scans every file of the cloud assembly.
func TestNoSecretMaterialInAssembly(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		n := 0
		err := filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			n++
			for _, re := range leaks {
				if loc := re.FindIndex(data); loc != nil {
					t.Errorf("%s: %q matches %s", path, data[loc[0]:loc[1]], re)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("scanned %d files", n)
	})
}

// TestAppImageAsset checks what `cdk deploy` would build: the staged build
// context holds only go.mod, go.sum, app/ and internal/.
func TestAppImageAsset(t *testing.T) {
	s := synth(t, "default")
	data, err := os.ReadFile(filepath.Join(s.dir, stacks.StackName(s.plan.Config, "eu-west-3")+".assets.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		DockerImages map[string]struct {
			Source struct {
				Directory  string `json:"directory"`
				DockerFile string `json:"dockerFile"`
				Platform   string `json:"platform"`
			} `json:"source"`
		} `json:"dockerImages"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.DockerImages) != 1 {
		t.Fatalf("%d docker images, want 1", len(m.DockerImages))
	}
	for _, img := range m.DockerImages {
		if img.Source.DockerFile != app.Dockerfile || img.Source.Platform != "linux/arm64" {
			t.Errorf("image built from %s for %s", img.Source.DockerFile, img.Source.Platform)
		}
		root := filepath.Join(s.dir, img.Source.Directory)
		var files []string
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(root, path)
				files = append(files, rel)
			}
			return err
		})
		for _, f := range files {
			top := strings.SplitN(f, string(filepath.Separator), 2)[0]
			if !slices.Contains(app.BuildContext, top) {
				t.Errorf("staged %s: not part of the app's build context", f)
			}
		}
		for _, must := range []string{"go.mod", "go.sum"} {
			if !slices.Contains(files, must) {
				t.Errorf("%s not staged", must)
			}
		}
		if _, err := os.Stat(app.Dockerfile); err == nil && !slices.Contains(files, app.Dockerfile) {
			t.Errorf("%s not staged", app.Dockerfile)
		}
		t.Logf("staged %d files", len(files))
	}
}

// TestNag checks that cdk-nag's AwsSolutions pack finds nothing unsuppressed
// in any stack.
func TestNag(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		for _, st := range s.stacks {
			name := *st.StackName()
			data, err := os.ReadFile(filepath.Join(s.dir, name+".metadata.json"))
			if err != nil {
				t.Fatal(err)
			}
			var md map[string][]struct {
				Type string `json:"type"`
				Data any    `json:"data"`
			}
			if err := json.Unmarshal(data, &md); err != nil {
				t.Fatal(err)
			}
			for path, entries := range md {
				for _, e := range entries {
					if e.Type == "aws:cdk:error" || (e.Type == "aws:cdk:warning" && strings.Contains(toJSON(e.Data), "AwsSolutions")) {
						t.Errorf("%s %s: %s", path, e.Type, toJSON(e.Data))
					}
				}
			}
			check(t, name+": annotations", func() {
				a := assertions.Annotations_FromStack(st.Stack)
				errs := a.FindError(jsii.String("*"), assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*")))
				warns := a.FindWarning(jsii.String("*"), assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*")))
				if len(*errs)+len(*warns) > 0 {
					t.Errorf("%s: %d AwsSolutions errors and %d warnings", name, len(*errs), len(*warns))
				}
			})
		}
	})
}

func TestSynthTime(t *testing.T) {
	s := synth(t, "default")
	t.Logf("first synth in this process: %s", s.took)
	start := time.Now()
	a, _, err := newApp(appOptions{Context: cdkContext(t), Outdir: filepath.Join(tmpRoot, "warm"), SourceDir: "."})
	if err != nil {
		t.Fatal(err)
	}
	a.Synth(nil)
	t.Logf("warm synth of the default app: %s", time.Since(start))
	for name := range s.templates {
		fi, err := os.Stat(filepath.Join(s.dir, name+".template.json"))
		if err == nil {
			t.Logf("%s.template.json: %d bytes", name, fi.Size())
		}
	}
}

// TestCLISynth runs `cdk synth` through the CDK CLI, with no credentials.
func TestCLISynth(t *testing.T) {
	cdk := filepath.Join(".cdk-cli", "node_modules", ".bin", "cdk")
	if _, err := os.Stat(cdk); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the CDK CLI is missing (npm install --prefix .cdk-cli aws-cdk): %v", err)
		}
		t.Skip("the CDK CLI is not installed: npm install --prefix .cdk-cli aws-cdk")
	}
	out := filepath.Join(tmpRoot, "cli")
	cmd := exec.Command(cdk, "synth", "--quiet", "--output", out)
	cmd.Env = append(os.Environ(), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20")
	start := time.Now()
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cdk synth: %v\n%s", err, b)
	}
	t.Logf("cdk synth: %s", time.Since(start))
	for _, r := range []string{"eu-west-3", "eu-west-1"} {
		if _, err := os.Stat(filepath.Join(out, "pgha-"+r+".template.json")); err != nil {
			t.Errorf("cdk synth wrote no template for %s: %v", r, err)
		}
	}
}

// TestDeployRules checks every synthesized template against what EC2, IAM
// and CloudFormation enforce only at deploy time (internal/cfncheck): a
// security group description EC2 rejects once failed the first deploy.
func TestDeployRules(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		for name, tpl := range s.templates {
			if why := cfncheck.StackName(name); why != "" {
				t.Error(why)
			}
			for _, p := range cfncheck.Check(tpl) {
				t.Errorf("%s: %s", name, p)
			}
		}
	})
}

// cfnLintAccepted are the cfn-lint warnings that stay, each with why.
var cfnLintAccepted = map[string]string{
	"W3010": "Avoid hardcoding availability zones: the plan pins each subnet, and so each node's fixed IP and its data volume, " +
		"to a named zone (regions[].availabilityZones); a zone chosen at deploy time could move a node.",
	"W3005": "A DependsOn next to a GetAtt of the same resource: the CDK's own custom-resource providers emit it, and the " +
		"health checker and the certificate issuer depend on their whole role so that the role's inline policy exists before the function; " +
		"it is redundant, not wrong.",
}

// TestCfnLint runs cfn-lint on every template: no error, and no warning
// that is not in cfnLintAccepted.
func TestCfnLint(t *testing.T) {
	lint, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Skip("cfn-lint is not installed (pipx install cfn-lint): the templates are not linted")
	}
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		for name := range s.templates {
			path := filepath.Join(s.dir, name+".template.json")
			out, err := exec.Command(lint, "--format", "parseable", "--", path).CombinedOutput()
			if err != nil && len(out) == 0 {
				t.Fatalf("cfn-lint %s: %v", path, err)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if line == "" {
					continue
				}
				// path:line:col:line:col:RULE:message
				f := strings.SplitN(line, ":", 7)
				if len(f) < 7 {
					t.Errorf("%s: cfn-lint: %s", name, line)
					continue
				}
				rule, msg := f[5], f[6]
				if _, ok := cfnLintAccepted[rule]; ok && !strings.HasPrefix(rule, "E") {
					continue
				}
				t.Errorf("%s: cfn-lint %s: %s", name, rule, msg)
			}
		}
	})
}

// TestResizingARegionKeepsTheOthers grows each region in turn (and, read
// the other way, shrinks it back): every other region's stack keeps each
// logical ID and each instance its IP and name.
func TestResizingARegionKeepsTheOthers(t *testing.T) {
	base := synth(t, "default")
	for variant, changed := range map[string]string{"grown-primary": "eu-west-3", "grown-secondary": "eu-west-1"} {
		grown := synth(t, variant)
		for _, rp := range base.plan.Regions {
			if rp.Name == changed {
				continue
			}
			name := stacks.StackName(base.plan.Config, rp.Name)
			a, b := identities(base.templates[name]), identities(grown.templates[name])
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s changed the %s stack's resources:\n%v\nbecame\n%v", variant, rp.Name, a, b)
			}
		}
	}
}

// identities lists a template's logical IDs, with each instance's private
// IP and Name tag and each volume's Name tag.
func identities(tpl map[string]any) []string {
	var out []string
	for id, r := range tpl["Resources"].(map[string]any) {
		res := r.(map[string]any)
		line := id
		switch res["Type"] {
		case "AWS::EC2::Instance":
			line += fmt.Sprintf(" %v %s", props(res)["PrivateIpAddress"], tag(res, "Name"))
		case "AWS::EC2::Volume":
			line += " " + tag(res, "Name")
		}
		out = append(out, line)
	}
	sort.Strings(out)
	return out
}

// appChangedSource is a copy of the build context with one more line in
// the app's code, so its image asset hash changes.
func appChangedSource(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(tmpRoot, "app-changed-src")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", "git ls-files -z -c -o --exclude-standard | xargs -0 cp --parents -t "+dir).CombinedOutput()
	if err != nil {
		t.Fatalf("copy the build context: %v\n%s", err, out)
	}
	f, err := os.OpenFile(filepath.Join(dir, "app", "main.go"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n// A change of the app.\n"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestUserDataIgnoresTunables: changing PostgreSQL parameters, Patroni's
// timing or the app leaves every instance's user data byte for byte as it
// was, since CloudFormation would stop and start an instance whose user
// data changed, and EC2 would not run the new one ("Update requires: Some
// interruptions"; "User data runs only at instance launch").
// https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-ec2-instance.html#cfn-ec2-instance-userdata
func TestUserDataIgnoresTunables(t *testing.T) {
	base := synth(t, "default")
	for _, variant := range []string{"tuned", "app-changed"} {
		changed := synth(t, variant)
		differs := false
		for name, tpl := range base.templates {
			for id, in := range resources(tpl, "AWS::EC2::Instance") {
				other, ok := resources(changed.templates[name], "AWS::EC2::Instance")[id]
				if !ok {
					t.Errorf("%s: %s: instance %s is gone", variant, name, id)
					continue
				}
				if a, b := toJSON(props(in)["UserData"]), toJSON(props(other)["UserData"]); a != b {
					t.Errorf("%s: %s: the user data of %s changed", variant, name, id)
				}
			}
			if toJSON(tpl) != toJSON(changed.templates[name]) {
				differs = true
			}
		}
		// The change must have reached the templates somewhere (the
		// parameter, the Lambda's settings, the image asset).
		if !differs {
			t.Errorf("%s: no template changed at all", variant)
		}
	}
}

// TestImageFrozen: without a pinned image, every instance's AMI comes from
// one Custom::DebianImage per stack, which reads Debian's parameter when
// created and has no update call; no template parameter resolves the
// latest image at each deploy.
func TestImageFrozen(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		for name, tpl := range s.templates {
			if params, _ := tpl["Parameters"].(map[string]any); strings.Contains(toJSON(params), "AWS::EC2::Image::Id") {
				t.Errorf("%s: a template parameter resolves an image at every deploy: %s", name, toJSON(params))
			}
			crs := resources(tpl, "Custom::DebianImage")
			if len(crs) != 1 {
				t.Errorf("%s: %d Custom::DebianImage, want 1", name, len(crs))
			}
			var id string
			for k, cr := range crs {
				id = k
				p := toJSON(props(cr))
				if !strings.Contains(p, `getParameter`) || !strings.Contains(p, "/aws/service/debian/release/13/latest/arm64") ||
					!strings.Contains(p, `"Create"`) || strings.Contains(p, `"Update"`) {
					t.Errorf("%s: %s: %s, want a create-only getParameter of Debian's image", name, k, p)
				}
			}
			for iid, in := range resources(tpl, "AWS::EC2::Instance") {
				if img := toJSON(props(in)["ImageId"]); !strings.Contains(img, id) {
					t.Errorf("%s: %s takes its image from %s, not the frozen %s", name, iid, img, id)
				}
			}
		}
	})
}

// TestParametersAndGrants: the dynamic configuration and the app image are
// SSM parameters the nodes may read, and each node may write its own boot
// status, nothing else.
func TestParametersAndGrants(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		cfg := s.plan.Config
		primary := s.templates[stacks.StackName(cfg, s.plan.Primary().Name)]
		values := map[string]string{}
		for _, r := range resources(primary, "AWS::SSM::Parameter") {
			name, _ := props(r)["Name"].(string)
			values[name] = toJSON(props(r)["Value"])
		}
		dcs, ok := values[render.DynamicConfigParameter(cfg)]
		if !ok || !strings.Contains(dcs, "max_connections") || !strings.Contains(dcs, "pg_hba") {
			t.Errorf("primary: parameter %s = %s", render.DynamicConfigParameter(cfg), dcs)
		}
		if img, ok := values[render.AppImageParameter(cfg)]; !ok || !strings.Contains(img, "container-assets") {
			t.Errorf("primary: parameter %s = %s", render.AppImageParameter(cfg), img)
		}
		for name, tpl := range s.templates {
			policies := toJSON(resources(tpl, "AWS::IAM::Policy"))
			for _, in := range resources(tpl, "AWS::EC2::Instance") {
				node := strings.TrimPrefix(tag(in, "Name"), cfg.Name+"-")
				n, ok := s.plan.Node(node)
				if !ok {
					t.Errorf("%s: instance named %q is not in the plan", name, node)
					continue
				}
				if !strings.Contains(policies, "parameter"+render.BootStatusParameter(cfg, n)+`"`) {
					t.Errorf("%s: %s may not write its boot status %s", name, node, render.BootStatusParameter(cfg, n))
				}
				volume := "parameter" + render.VolumeStatusParameter(cfg, n) + `"`
				if may := strings.Contains(policies, volume); may != (n.Role == cluster.RolePostgres) {
					t.Errorf("%s: %s (%s) may write the volume report %s: %v, want %v", name, node, n.Role, render.VolumeStatusParameter(cfg, n), may, !may)
				}
			}
		}
		for _, rp := range s.plan.Regions {
			name := stacks.StackName(cfg, rp.Name)
			if !rp.Witness && !strings.Contains(toJSON(resources(s.templates[name], "AWS::IAM::Policy")), "ssm:GetParametersByPath") {
				t.Errorf("%s: the health checker may not read the boot statuses", name)
			}
		}
		var dcsID string
		for id, r := range resources(primary, "AWS::SSM::Parameter") {
			if props(r)["Name"] == render.DynamicConfigParameter(cfg) {
				dcsID = id
			}
		}
		if pol := toJSON(resources(primary, "AWS::IAM::Policy")); dcsID == "" || !strings.Contains(pol, `{"Ref":"`+dcsID+`"}`) && !strings.Contains(pol, "parameter"+render.DynamicConfigParameter(cfg)) {
			t.Error("primary: the PostgreSQL nodes may not read the dynamic configuration")
		}
	})
}

// TestAlarms: the leader-away and boot alarms watch the metrics the
// health checker emits.
func TestAlarms(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		for _, rp := range s.plan.Regions {
			if rp.Witness {
				continue
			}
			tpl := s.templates[stacks.StackName(s.plan.Config, rp.Name)]
			metrics := map[string]map[string]any{}
			for _, a := range resources(tpl, "AWS::CloudWatch::Alarm") {
				name, _ := props(a)["MetricName"].(string)
				metrics[name] = props(a)
			}
			away, boot := metrics["LeaderOutsidePrimaryRegion"], metrics["NodeBootsNotOK"]
			if away == nil || away["EvaluationPeriods"] != float64(s.plan.Config.HealthCheck.LeaderAwayMinutes) {
				t.Errorf("%s: leader-away alarm %v", rp.Name, away)
			}
			if boot == nil || boot["Threshold"] != float64(0) || boot["ComparisonOperator"] != "GreaterThanThreshold" {
				t.Errorf("%s: boot alarm %v", rp.Name, boot)
			}
		}
	})
}

// TestBackupBuckets: each data region's stack has its backup bucket,
// named as the nodes work the name out (cluster.BackupBucket), encrypted,
// versioned, closed to the public, TLS-only, kept on delete, with
// noncurrent versions kept as long as the retention; the witness has
// none. Every PostgreSQL node's role may use the cluster's prefix of
// every bucket, and nothing else of S3; no other node's role touches S3.
func TestBackupBuckets(t *testing.T) {
	forEachConfig(t, func(t *testing.T, s *synthesized) {
		cfg := s.plan.Config
		var wantObjects []string
		for _, r := range s.plan.DataRegions() {
			wantObjects = append(wantObjects, "arn:<AWS::Partition>:s3:::"+cfg.BackupBucket("<AWS::AccountId>", r.Name)+"/"+cfg.BackupPrefix()+"/*")
		}
		sort.Strings(wantObjects)
		for _, rp := range s.plan.Regions {
			name := stacks.StackName(cfg, rp.Name)
			tpl := s.templates[name]
			var backups []map[string]any
			for _, b := range resources(tpl, "AWS::S3::Bucket") {
				if props(b)["BucketName"] != nil {
					backups = append(backups, b)
				}
			}
			if rp.Witness {
				if len(backups) != 0 {
					t.Errorf("%s: the witness has a backup bucket", name)
				}
				continue
			}
			if len(backups) != 1 {
				t.Fatalf("%s: %d named buckets, want the backup bucket", name, len(backups))
			}
			b := backups[0]
			p := props(b)
			if got, want := flatARN(p["BucketName"]), cfg.BackupBucket("<AWS::AccountId>", rp.Name); got != want {
				t.Errorf("%s: bucket name %s, want %s", name, got, want)
			}
			if b["DeletionPolicy"] != "Retain" || b["UpdateReplacePolicy"] != "Retain" {
				t.Errorf("%s: the backup bucket is not retained (%v, %v)", name, b["DeletionPolicy"], b["UpdateReplacePolicy"])
			}
			if got := toJSON(p["VersioningConfiguration"]); got != `{"Status":"Enabled"}` {
				t.Errorf("%s: versioning %s", name, got)
			}
			if got := toJSON(p["BucketEncryption"]); !strings.Contains(got, `"SSEAlgorithm":"AES256"`) {
				t.Errorf("%s: encryption %s", name, got)
			}
			pab := p["PublicAccessBlockConfiguration"].(map[string]any)
			for _, k := range []string{"BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"} {
				if pab[k] != true {
					t.Errorf("%s: public access block %s is %v", name, k, pab[k])
				}
			}
			if got := toJSON(p["LifecycleConfiguration"]); !strings.Contains(got, fmt.Sprintf(`"NoncurrentDays":%d`, cfg.Backup.RetentionDays)) ||
				!strings.Contains(got, `"AbortIncompleteMultipartUpload":{"DaysAfterInitiation":1}`) {
				t.Errorf("%s: lifecycle %s", name, got)
			}
			if p["LoggingConfiguration"] == nil {
				t.Errorf("%s: no server access logs", name)
			}
			tlsOnly := false
			for _, pol := range resources(tpl, "AWS::S3::BucketPolicy") {
				doc := toJSON(props(pol)["PolicyDocument"])
				if toJSON(props(pol)["Bucket"]) == `{"Ref":"`+logicalID(t, tpl, b)+`"}` &&
					strings.Contains(doc, `"aws:SecureTransport":"false"`) && strings.Contains(doc, `"s3:TlsVersion":1.2`) {
					tlsOnly = true
				}
			}
			if !tlsOnly {
				t.Errorf("%s: no bucket policy denies plain HTTP and TLS before 1.2", name)
			}
			for _, in := range resources(tpl, "AWS::EC2::Instance") {
				n := nodeOf(t, s.plan, in)
				got := s3Objects(rolePolicies(tpl, instanceRole(t, tpl, in)))
				switch {
				case n.Role == cluster.RolePostgres && !slices.Equal(got, wantObjects):
					t.Errorf("%s: %s's role may use S3 objects %q, want %q", name, n.Name, got, wantObjects)
				case n.Role != cluster.RolePostgres && len(got) > 0:
					t.Errorf("%s: %s's role may use S3 objects %q", name, n.Name, got)
				}
			}
		}
	})
}

// logicalID is a resource's logical ID in tpl.
func logicalID(t *testing.T, tpl map[string]any, r map[string]any) string {
	t.Helper()
	for id, x := range tpl["Resources"].(map[string]any) {
		if toJSON(x) == toJSON(r) {
			return id
		}
	}
	t.Fatalf("resource not in the template")
	return ""
}

// s3Objects are the object ARNs (bucket/key patterns) the policies
// allow S3 actions on, sorted.
func s3Objects(docs []any) []string {
	var out []string
	for _, d := range docs {
		for _, st := range d.(map[string]any)["Statement"].([]any) {
			st := st.(map[string]any)
			if st["Effect"] != "Allow" || !strings.Contains(toJSON(st["Action"]), `"s3:`) {
				continue
			}
			res := st["Resource"]
			if one, ok := res.([]any); ok {
				for _, r := range one {
					if a := flatARN(r); strings.Contains(a, "/") {
						out = append(out, a)
					}
				}
			} else if a := flatARN(res); strings.Contains(a, "/") {
				out = append(out, a)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}
