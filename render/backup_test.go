package render

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeCurl answers GET /cluster with $STATE/cluster.json, or fails as
// curl does when nothing listens. fakePgBackRest keeps the repositories
// that hold a backup in $STATE/have; a backup into repository N exits
// with $STATE/rc-N (default 0, which adds N), or with 1 while another
// node's backup lands in N when that file says "other". Both log their
// calls to $STATE/calls.
const (
	fakeCurl = `#!/bin/bash
echo "curl $*" >>"$STATE/calls"
cat "$STATE/cluster.json" 2>/dev/null || exit 7
`
	fakePgBackRest = `#!/bin/bash
echo "pgbackrest $*" >>"$STATE/calls"
case " $* " in
*" info "*)
	printf '[{"name":"pgha","backup":['
	sep=
	for r in $(cat "$STATE/have" 2>/dev/null); do
		printf '%s{"label":"x","database":{"id":1,"repo-key":%s}}' "$sep" "$r"
		sep=,
	done
	printf ']}]\n' ;;
*" backup "*)
	repo=$(sed -n 's/.*--repo=\([0-9]*\).*/\1/p' <<<"$*")
	rc=$(cat "$STATE/rc-$repo" 2>/dev/null || echo 0)
	case $rc in
	0) echo "$repo" >>"$STATE/have" ;;
	other) echo "$repo" >>"$STATE/have"; exit 1 ;;
	*) exit "$rc" ;;
	esac ;;
esac
`
	// euw3-pg1 leads; euw3-pg2, in its region, is the standby to take a
	// backup.
	fakeCluster = `{"members":[
{"name":"euw3-pg1","role":"leader","state":"running","timeline":1},
{"name":"euw3-pg2","role":"sync_standby","state":"streaming","lag":0},
{"name":"euw1-pg1","role":"replica","state":"streaming","lag":0}]}`
)

// TestBackupScript runs the rendered backup script with Debian 13's bash
// and python3 (chroot into the node image) against a fake Patroni and a
// fake pgBackRest: who takes a backup, into which repositories, and how a
// run that meets another node's backup ends.
func TestBackupScript(t *testing.T) {
	root := rootfs(t, "usr/bin/python3")
	p := plans(t)["default"]
	for _, tc := range []struct {
		name, node, kind string
		noLeader         bool
		have             string            // repositories holding a backup before
		rc               map[string]string // repository -> fake backup's exit
		fails            bool
		backups          []string // the backup calls, in order
		say              string
	}{
		{name: "first into every empty repository", node: "euw3-pg2", kind: "first",
			backups: []string{"--repo=1 --type=full", "--repo=2 --type=full"}, say: "repositories without a backup: 1 2"},
		{name: "first only where none is", node: "euw3-pg2", kind: "first", have: "1",
			backups: []string{"--repo=2 --type=full"}},
		{name: "first with nothing to do", node: "euw3-pg2", kind: "first", have: "1 2"},
		{name: "first on a node not chosen", node: "euw1-pg1", kind: "first"},
		{name: "first while another node's backup runs", node: "euw3-pg2", kind: "first", rc: map[string]string{"1": "50", "2": "50"},
			backups: []string{"--repo=1 --type=full", "--repo=2 --type=full"}, say: "repository 1 2 is tried again in 30 s"},
		{name: "first failed where another node's backup landed", node: "euw3-pg2", kind: "first", rc: map[string]string{"1": "other"},
			backups: []string{"--repo=1 --type=full", "--repo=2 --type=full"}},
		{name: "first failed", node: "euw3-pg2", kind: "first", rc: map[string]string{"1": "1"}, fails: true,
			backups: []string{"--repo=1 --type=full", "--repo=2 --type=full"}, say: "the full backup failed in repository 1"},
		{name: "first without a leader waits", node: "euw3-pg2", kind: "first", noLeader: true, say: "no running leader"},
		{name: "full into every repository", node: "euw3-pg2", kind: "full", have: "1 2",
			backups: []string{"--repo=1 --type=full", "--repo=2 --type=full"}},
		{name: "diff on a node not chosen", node: "euw3-pg1", kind: "diff", say: "euw3-pg2 takes the diff backup, not euw3-pg1"},
		{name: "full while another node's backup runs", node: "euw3-pg2", kind: "full", have: "1 2", rc: map[string]string{"2": "50"}, fails: true,
			backups: []string{"--repo=1 --type=full", "--repo=2 --type=full"}, say: "another node's backup is running: no full backup into repository 2"},
		{name: "full without a leader fails", node: "euw3-pg2", kind: "full", noLeader: true, fails: true, say: "no running leader"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := p.Node(tc.node)
			if !ok {
				t.Fatalf("no node %s", tc.node)
			}
			script, err := Backup(p, n)
			if err != nil {
				t.Fatal(err)
			}
			host, inRoot := tempInRoot(t, root)
			write := func(name, content string, mode os.FileMode) { writeFile(t, filepath.Join(host, name), content, mode) }
			write("bin/curl", fakeCurl, 0o755)
			write("bin/pgbackrest", fakePgBackRest, 0o755)
			write("backup", strings.ReplaceAll(script, "/usr/bin/pgbackrest", inRoot+"/bin/pgbackrest"), 0o755)
			write("state/have", strings.ReplaceAll(tc.have, " ", "\n"), 0o644)
			if !tc.noLeader {
				write("state/cluster.json", fakeCluster, 0o644)
			}
			for repo, rc := range tc.rc {
				write("state/rc-"+repo, rc, 0o644)
			}
			cmd := exec.Command("chroot", root, inRoot+"/backup", tc.kind)
			cmd.Env = []string{"PATH=" + inRoot + "/bin:/usr/bin:/bin", "STATE=" + inRoot + "/state"}
			out, err := cmd.CombinedOutput()
			if _, exit := err.(*exec.ExitError); err != nil && !exit {
				t.Fatal(err)
			}
			if (err != nil) != tc.fails {
				t.Errorf("exit %v, want failing %v:\n%s", err, tc.fails, out)
			}
			if tc.say != "" && !strings.Contains(string(out), tc.say) {
				t.Errorf("the script does not say %q:\n%s", tc.say, out)
			}
			calls, _ := os.ReadFile(filepath.Join(host, "state", "calls"))
			var backups []string
			for _, line := range strings.Split(string(calls), "\n") {
				if f := strings.Fields(line); len(f) > 0 && f[0] == "pgbackrest" && f[len(f)-1] == "backup" {
					backups = append(backups, strings.Join(f[len(f)-3:len(f)-1], " "))
				}
			}
			if strings.Join(backups, "; ") != strings.Join(tc.backups, "; ") {
				t.Errorf("backups %q, want %q; calls:\n%s", backups, tc.backups, calls)
			}
			if stanza := strings.Contains(string(calls), "stanza-create"); stanza != (tc.kind == "first" && len(tc.backups) > 0) {
				t.Errorf("stanza-create called: %v; calls:\n%s", stanza, calls)
			}
		})
	}
}
