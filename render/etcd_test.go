package render

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgha/pgha/cluster"
)

func TestEtcdRejoinOnEtcdNodesOnly(t *testing.T) {
	each(t, func(t *testing.T, p *cluster.Plan, n cluster.Node) {
		files, err := Files(p, n)
		if err != nil {
			t.Fatal(err)
		}
		var script string
		for _, f := range files {
			if f.Path == EtcdRejoinScript {
				script = f.Content
			}
		}
		if (script != "") != (n.Role == cluster.RoleEtcd) {
			t.Fatalf("a %s node has %s: %v", n.Role, EtcdRejoinScript, script != "")
		}
		if script == "" {
			return
		}
		for _, e := range p.ByRole(cluster.RoleEtcd) {
			url := "https://" + e.IP.String() + ":2379"
			if strings.Contains(script, url) != (e.Name != n.Name) {
				t.Errorf("the script of %s talks to %s: %v", n.Name, url, strings.Contains(script, url))
			}
		}
	})
}

// fakeEtcdctl answers the rejoin script as a cluster whose other members
// ($HEALTHY of them healthy) list this node as member 0ld1d; this node's
// own etcd is healthy when $HERE is 1 or once started. fakeSystemctl does nothing. Both log
// their arguments to $CALLS.
const (
	fakeEtcdctl = `#!/bin/bash
echo "etcdctl $*" >>"$CALLS"
case $* in
*127.0.0.1*'endpoint health'*) ((HERE == 1)) || grep -q 'systemctl start' "$CALLS" ;;
*'endpoint health'*)
	for ((i = 0; i < 2; i++)); do
		if ((i < HEALTHY)); then echo "https://10.0.0.$i:2379 is healthy: ok"; else echo "https://10.0.0.$i:2379 is unhealthy: deadline" >&2; fi
	done
	((HEALTHY == 2)) ;;
*'member list'*) echo "0ld1d, started, euw3-etcd1, https://10.11.3.20:2380, https://10.11.3.20:2379, false"
	echo "0e1, started, euw3-etcd2, https://10.11.4.20:2380, https://10.11.4.20:2379, false" ;;
*'member remove'*) echo "Member ${!#} removed" ;;
*'member add'*) echo "Member 2e3 added to cluster 7" ;;
*'endpoint status'*) echo "https://x:2379, 2e3, 3.5.16, 20 kB, false, false, 2, 40, 40, " ;;
esac
`
	fakeSystemctl = "#!/bin/bash\necho \"systemctl $*\" >>\"$CALLS\"\n"
)

func TestEtcdRejoinScript(t *testing.T) {
	p := plans(t)["default"]
	n := p.ByRole(cluster.RoleEtcd)[0]
	script, err := EtcdRejoin(p, n)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		healthy int  // other members healthy
		here    bool // this member's etcd healthy
		data    bool // this member's data directory holds data
		force   bool
		fails   string // what the script says when it fails
	}{
		{name: "replaces a lost member", healthy: 2},
		{name: "replaces an unhealthy member with data", healthy: 2, data: true},
		{name: "replaces a healthy member when forced", healthy: 2, here: true, data: true, force: true},
		{name: "refuses a healthy member with data", healthy: 2, here: true, data: true, fails: "nothing to replace"},
		{name: "refuses without a quorum", healthy: 1, fails: "1 of the other members"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin, dataDir, config, calls := filepath.Join(dir, "bin"), filepath.Join(dir, "data"), filepath.Join(dir, "etcd.yml"), filepath.Join(dir, "calls")
			write := func(path, content string, mode os.FileMode) { writeFile(t, path, content, mode) }
			write(filepath.Join(bin, "etcdctl"), fakeEtcdctl, 0o755)
			write(filepath.Join(bin, "systemctl"), fakeSystemctl, 0o755)
			y, err := EtcdYAML(p, n)
			if err != nil {
				t.Fatal(err)
			}
			write(config, string(y), 0o644)
			if tc.data {
				write(filepath.Join(dataDir, "member", "wal", "0.wal"), "x", 0o644)
			}
			s := strings.ReplaceAll(script, EtcdDataDir, dataDir)
			s = strings.ReplaceAll(s, EtcdConfig, config)
			write(filepath.Join(dir, "rejoin"), s, 0o755)
			args := []string{filepath.Join(dir, "rejoin")}
			if tc.force {
				args = append(args, "--force")
			}
			cmd := exec.Command("bash", args...)
			here := "0"
			if tc.here {
				here = "1"
			}
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "CALLS="+calls, "HERE="+here, "HEALTHY="+string(rune('0'+tc.healthy)))
			out, err := cmd.CombinedOutput()
			log, _ := os.ReadFile(calls)
			conf, _ := os.ReadFile(config)
			aside, _ := filepath.Glob(dataDir + ".lost-*")
			if tc.fails != "" {
				if err == nil || !strings.Contains(string(out), tc.fails) {
					t.Errorf("want a failure saying %q, got %v:\n%s", tc.fails, err, out)
				}
				if strings.Contains(string(log), "systemctl") || strings.Contains(string(log), "member remove") || strings.Contains(string(conf), "existing") || len(aside) > 0 {
					t.Errorf("a refusal changed something:\n%s", log)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v:\n%s\ncalls:\n%s", err, out, log)
			}
			for _, want := range []string{"member remove 0ld1d", "member add euw3-etcd1 --peer-urls=https://10.11.3.20:2380", "systemctl start pgha-etcd.service"} {
				if !strings.Contains(string(log), want) {
					t.Errorf("no %q in the calls:\n%s", want, log)
				}
			}
			if strings.Contains(string(log), "member remove 0e1") {
				t.Errorf("removed another member:\n%s", log)
			}
			if strings.Index(string(log), "systemctl stop") > strings.Index(string(log), "member remove") {
				t.Errorf("etcd stopped after the member was removed:\n%s", log)
			}
			if !strings.Contains(string(conf), "\ninitial-cluster-state: existing\n") {
				t.Errorf("initial-cluster-state not set to existing:\n%s", conf)
			}
			if _, err := os.Stat(filepath.Join(dataDir, "member")); err == nil {
				t.Error("etcd would start on the old data: it is still in the data directory")
			}
			if tc.data != (len(aside) == 1) {
				t.Errorf("data kept aside in %v, want it kept only when there was data", aside)
			}
			if !strings.Contains(string(out), "euw3-etcd1 is member 2e3, healthy") {
				t.Errorf("the script does not say what it did:\n%s", out)
			}
		})
	}
}
