package local

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/healthcheck"
	"github.com/pgha/pgha/internal/hostlock"
	"github.com/pgha/pgha/render"
)

// skipOrFail skips the test with reason, or fails it when CI is set.
func skipOrFail(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(reason)
	}
	t.Skip(reason)
}

// testLog writes each line to t.Log.
type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestEndToEnd brings up the default topology with the real daemons (the
// secondary region's PostgreSQL node first, with a head start, so that it
// would win the race to initialise the cluster if it could: the leader must
// still come up in the primary region), writes and reads through HAProxy, uses the app, crashes the app and sees
// the health checker restart it, kills the leader and the app together and
// sees the checker hold until a new leader accepts writes, heals the old
// leader, and checks that Down leaves nothing behind.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole cluster (about a minute)")
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: network namespaces, mounts, chroot")
	}
	// Only one local cluster fits on a machine: wait for another test's
	// (the drills', say) to go.
	hostlock.Lock(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := EnsureRootFS(ctx, DefaultRootFS, testLog{t}); err != nil {
		if errors.Is(err, ErrNoDebootstrap) {
			skipOrFail(t, err.Error())
		}
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Cleanup(func() { dumpLogsOnFailure(t, filepath.Join(dir, "logs")) })
	start := time.Now()
	// A short backoff: the test crashes the app twice within a minute.
	checker := CheckerOptions{Interval: 2 * time.Second, Backoff: 10 * time.Second}
	c, err := Up(ctx, Options{Dir: dir, Log: testLog{t}, Checker: checker, FirstRegion: "eu-west-1", HeadStart: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	downed := false
	t.Cleanup(func() {
		if !downed {
			if err := c.Down(context.Background()); err != nil {
				t.Errorf("Down: %v", err)
			}
		}
	})
	t.Logf("up and ready in %s", time.Since(start).Round(100*time.Millisecond))

	t.Run("the primary region initialised", func(t *testing.T) {
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range st.Nodes {
			if n.Leader && n.Region != c.Plan().Primary().Name {
				t.Errorf("%s in %s leads: the cluster initialised outside the primary region", n.Name, n.Region)
			}
		}
		b, err := os.ReadFile(filepath.Join(dir, "logs", "euw1-pg1.log"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "waiting for leader to bootstrap") {
			t.Errorf("euw1-pg1's Patroni never waited for a leader to bootstrap:\n%s", b[:min(len(b), 2000)])
		}
	})

	t.Run("every node booted from its user data under systemd", func(t *testing.T) {
		boots, err := c.BootStatuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range c.plan.Nodes {
			// The SSM agent is AWS's own download, which the emulator
			// does not have: every node says so, and nothing else.
			if b := boots[n.Name]; !strings.HasPrefix(b, "degraded: no SSM agent ") {
				t.Errorf("%s reports its boot as %q", n.Name, b)
			}
			script, err := render.BootScript(c.plan, n)
			if err != nil {
				t.Fatal(err)
			}
			want, err := render.UserData(c.plan, n)
			if err != nil {
				t.Fatal(err)
			}
			seed, err := os.ReadFile(filepath.Join(c.nodeRoot(n.Name), seedDir, "user-data"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(seed, want) {
				t.Errorf("%s's cloud-init seed is not render.UserData", n.Name)
			}
			// cloud-init got those bytes and ran the script they
			// uncompress to; boot-again fetches them from the metadata
			// service and uncompresses them (gzip -dcf) to the same script.
			for path, want := range map[string]string{
				"/var/lib/cloud/instance/user-data.txt":    string(want),
				"/var/lib/cloud/instance/scripts/part-001": script,
			} {
				got, err := c.Exec(ctx, n.Name, "cat", path)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != want {
					t.Errorf("%s: %s is not what it should be (%d bytes, want %d)", n.Name, path, len(got), len(want))
				}
			}
			fetched, err := c.Exec(ctx, n.Name, "/bin/sh", "-c", `t=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token) && curl -fsS -H "X-aws-ec2-metadata-token: $t" http://169.254.169.254/latest/user-data`)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(fetched, want) {
				t.Errorf("%s: the metadata service's user data differs from render.UserData", n.Name)
			}
			if got, err := c.Exec(ctx, n.Name, "/bin/sh", "-c", `t=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token) && curl -fsS -H "X-aws-ec2-metadata-token: $t" http://169.254.169.254/latest/user-data | gzip -dcf`); err != nil || string(got) != script {
				t.Errorf("%s: boot-again's fetch does not give the boot script (%v)", n.Name, err)
			}
			units, err := c.UnitsActive(ctx, n.Name)
			if err != nil {
				t.Fatal(err)
			}
			for u, active := range units {
				if !active {
					t.Errorf("%s: %s is not active", n.Name, u)
				}
			}
			// A unit that failed and is being restarted leaves the system
			// "degraded" for a moment: give it the restart's time.
			var state string
			for deadline := time.Now().Add(30 * time.Second); ; {
				out, _ := c.Exec(ctx, n.Name, "systemctl", "is-system-running")
				if state = strings.TrimSpace(string(out)); state == "running" || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Second)
			}
			// systemd's own early-boot units (systemd-sysusers,
			// systemd-remount-fs, ...) fail now and then on this host's
			// cgroup v1 ("Failed to attach ... to compat systemd cgroup"):
			// any other failed unit fails the test.
			if failed := failedUnits(ctx, c, n.Name); state != "running" {
				for _, line := range strings.Split(strings.TrimSpace(failed), "\n") {
					if f := strings.Fields(strings.TrimLeft(line, "● ")); len(f) > 0 && !strings.HasPrefix(f[0], "systemd-") {
						t.Errorf("%s: systemctl is-system-running: %s; failed units:\n%s", n.Name, state, failed)
						break
					}
				}
				t.Logf("%s: %s; systemd's own units failed:\n%s", n.Name, state, failed)
			}
		}
		// The app answers from the container image the registry served.
		out, err := c.Exec(ctx, "euw3-app1", "podman", "ps", "--format", "{{.Image}} {{.Names}}")
		if err != nil || !strings.Contains(string(out), AppImage(c.plan)+" "+render.AppContainer) {
			t.Errorf("podman ps on euw3-app1: %s %v", out, err)
		}
	})

	t.Run("status", func(t *testing.T) {
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		checkStatusShape(t, b)
		leaders, streaming := 0, 0
		for _, n := range st.Nodes {
			if n.Leader {
				leaders++
			}
			if n.Role == "postgres" && n.State == "streaming" {
				streaming++
			}
			if n.Role != "postgres" && n.State != StateRunning {
				t.Errorf("%s is %s", n.Name, n.State)
			}
		}
		if leaders != 1 || streaming != 2 {
			t.Errorf("%d leaders and %d streaming replicas, want 1 and 2: %s", leaders, streaming, b)
		}
		if len(st.HAProxy) != 2 || len(st.App) != 1 || st.App[0].URL != "http://10.11.0.40:5000" {
			t.Errorf("endpoints: %s", b)
		}
	})

	t.Run("every hop authenticated and encrypted", func(t *testing.T) { checkSecurity(ctx, t, c) })

	t.Run("backed up into every region's repository", func(t *testing.T) {
		// The first full backup comes within minutes of the cluster being
		// ready, into each repository, and WAL is archived into each.
		for _, r := range c.plan.DataRegions() {
			eventually(ctx, t, 4*time.Minute, func() error {
				newest, err := c.NewestBackup(ctx, r.Name)
				if err == nil && newest.IsZero() {
					err = errors.New("no backup yet")
				}
				return err
			})
			if wal, err := c.NewestArchived(ctx, r.Name); err != nil || wal == "" {
				t.Errorf("%s's repository holds no WAL (%q, %v)", r.Name, wal, err)
			}
		}
		// The health checker sees them: the archive caught up, the
		// region's newest backup.
		region := checkerRegions(c.plan)[0]
		eventually(ctx, t, time.Minute, func() error {
			runs, err := c.CheckerRuns(region)
			if err != nil || len(runs) == 0 {
				return fmt.Errorf("no check logged (%v)", err)
			}
			last := runs[len(runs)-1]
			switch {
			case last.Archive == nil:
				return fmt.Errorf("the last check read no archive status (errors %v)", last.Errors)
			case last.Archive.Failing || last.Archive.Lag > 0:
				return fmt.Errorf("the archive is behind: %+v", *last.Archive)
			case last.NewestBackup.IsZero():
				return fmt.Errorf("the last check saw no backup in %s (errors %v)", region, last.Errors)
			}
			return nil
		})
	})

	t.Run("write then read through HAProxy", func(t *testing.T) {
		w := connect(ctx, t, c, c.HAProxyAddrs()[0])
		if _, err := w.Exec(ctx, `CREATE TABLE e2e (v text); INSERT INTO e2e VALUES ('hello')`); err != nil {
			t.Fatal(err)
		}
		r := connect(ctx, t, c, c.HAProxyReadAddrs()[0])
		var inRecovery bool
		if err := r.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil || !inRecovery {
			t.Fatalf("read port reached a primary (in recovery %v, %v)", inRecovery, err)
		}
		// Only the synchronous standby is sure to have it already.
		eventually(ctx, t, 10*time.Second, func() error {
			var v string
			return r.QueryRow(ctx, `SELECT v FROM e2e`).Scan(&v)
		})
	})

	t.Run("app", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, c.AppURL()+"/hello/alice", strings.NewReader(`{"dateOfBirth":"1990-05-17"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PUT /hello/alice: %s", resp.Status)
		}
		resp, err = http.Get(c.AppURL() + "/hello/alice")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "alice") {
			t.Fatalf("GET /hello/alice: %s %s", resp.Status, body)
		}
	})

	region := c.plan.ByRole(cluster.RoleApp)[0].Region
	t.Run("health checker restarts a crashed app", func(t *testing.T) {
		// Up waited for the app: the checker's last word is "ready", and
		// it restarted the app exactly as often as the app log says it
		// started again.
		var runs []CheckerRun
		eventually(ctx, t, 10*time.Second, func() error {
			runs, err = c.CheckerRuns(region)
			if err != nil {
				return err
			}
			if len(runs) == 0 {
				return errors.New("no check logged yet")
			}
			last := runs[len(runs)-1]
			if !last.Ready || len(last.Apps) != 1 || last.Apps[0].Action != healthcheck.ActionNone {
				return fmt.Errorf("the checker does not see the cluster and the app ready yet: %+v", last)
			}
			return nil
		})
		restarts := 0
		for _, r := range runs {
			restarts += len(r.Restarted)
		}
		t.Logf("the app needed %d restarts during up; the checker ran %d checks", restarts, len(runs))

		crashed := killApp(t, c)
		r := waitRestart(ctx, t, c, region, crashed, 30*time.Second)
		if !r.Ready {
			t.Errorf("restarted while the cluster is not ready: %+v", r)
		}
		t.Logf("app1 crashed, restarted by the checker %s later: %s", r.Time.Sub(crashed).Round(100*time.Millisecond), r.Apps[0].Reason)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := c.WaitReady(rctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("kill the leader and the app, heal the leader", func(t *testing.T) {
		old, err := c.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Fault(ctx, Kill, LeaderTarget); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		// The app crashes in the failover window: the checker must leave
		// it until a new leader accepts writes.
		appKilled := killApp(t, c)
		var next string
		eventually(ctx, t, 90*time.Second, func() error {
			pc, err := c.Patroni(ctx)
			if err != nil {
				return err
			}
			if l, ok := pc.Leader(); ok && l.Name != old {
				next = l.Name
				return nil
			}
			return fmt.Errorf("no new leader: %+v", pc.Members)
		})
		t.Logf("%s killed; %s leads after %s", old, next, time.Since(killed).Round(100*time.Millisecond))

		restart := waitRestart(ctx, t, c, region, appKilled, 60*time.Second)
		runs, err := c.CheckerRuns(region)
		if err != nil {
			t.Fatal(err)
		}
		held := 0
		for _, r := range runs {
			if !r.Time.After(appKilled) || r.Time.After(restart.Time) {
				continue
			}
			if len(r.Apps) == 1 && r.Apps[0].Action == healthcheck.ActionHold {
				held++
			}
		}
		if held == 0 {
			t.Errorf("no check held the app while the cluster failed over")
		}
		if !restart.Ready || !strings.Contains(restart.Reason, "leader "+next+" ") {
			t.Errorf("restart decided at %s: ready=%v %s; want it once %s accepts writes", restart.Time, restart.Ready, restart.Reason, next)
		}
		t.Logf("the checker held app1 for %d checks, restarted it %s after the leader was killed: %s",
			held, restart.Time.Sub(killed).Round(100*time.Millisecond), restart.Reason)

		if _, err := c.Fault(ctx, Heal, old); err != nil {
			t.Fatal(err)
		}
		healed := time.Now()
		eventually(ctx, t, 90*time.Second, func() error {
			pc, err := c.Patroni(ctx)
			if err != nil {
				return err
			}
			if m, ok := pc.Member(old); !ok || !m.Streaming() {
				return fmt.Errorf("%s not streaming: %+v", old, pc.Members)
			}
			return nil
		})
		t.Logf("%s streams again %s after heal", old, time.Since(healed).Round(100*time.Millisecond))
		if err := c.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("down leaves nothing behind", func(t *testing.T) {
		var pids []proc
		for _, n := range c.plan.Nodes {
			pids = append(pids, c.procs(n.Name)...)
		}
		for _, p := range c.st.Checkers {
			pids = append(pids, p)
		}
		downed = true
		if err := c.Down(ctx); err != nil {
			t.Fatal(err)
		}
		for _, ns := range c.net().namespaces() {
			if nsExists(ns) {
				t.Errorf("namespace %s left", ns)
			}
		}
		if _, err := os.Stat("/sys/class/net/" + rootLink); err == nil {
			t.Errorf("veth %s left", rootLink)
		}
		for _, p := range pids {
			if p.alive() {
				t.Errorf("%s (pid %d) still runs", p.Service, p.PID)
			}
		}
		if left := processesUsing(dir); len(left) > 0 {
			t.Errorf("processes still using %s: %v", dir, left)
		}
		mounts, err := os.ReadFile("/proc/mounts")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(mounts), "\n") {
			for _, ns := range c.net().namespaces() {
				// The node image as an overlay's lower layer (not another
				// test's trixie-ami-base).
				image := strings.Contains(line, "lowerdir="+DefaultRootFS+",") || strings.Contains(line, " "+DefaultRootFS+" ")
				if strings.Contains(line, dir) || image || strings.Contains(line, "/run/netns/"+ns+" ") {
					t.Errorf("mount left: %s", line)
				}
			}
		}
		routes, err := os.ReadFile("/proc/net/route")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(routes), rootLink) {
			t.Errorf("routes through %s left:\n%s", rootLink, routes)
		}
		for _, sub := range []string{"nodes", "secrets", "state.json"} {
			if _, err := os.Stat(filepath.Join(dir, sub)); err == nil {
				t.Errorf("%s left in %s", sub, dir)
			}
		}
	})
}

// killApp stops app1's unit, as an app that exited and that systemd does
// not start again (a crash that fails is restarted by systemd itself,
// Restart=on-failure), and returns when.
func killApp(t *testing.T, c *Cluster) time.Time {
	t.Helper()
	if _, err := c.Exec(context.Background(), "euw3-app1", "systemctl", "stop", render.AppUnit); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// waitRestart waits until region's health checker has logged a restart of
// app1 after since, and returns that check. No check between since and it
// may have restarted anything else.
func waitRestart(ctx context.Context, t *testing.T, c *Cluster, region string, since time.Time, d time.Duration) CheckerRun {
	t.Helper()
	var found CheckerRun
	eventually(ctx, t, d, func() error {
		runs, err := c.CheckerRuns(region)
		if err != nil {
			return err
		}
		for _, r := range runs {
			if r.Time.After(since) && len(r.Restarted) > 0 {
				if !slices.Equal(r.Restarted, []string{"euw3-app1"}) {
					return fmt.Errorf("restarted %v, want app1", r.Restarted)
				}
				found = r
				return nil
			}
		}
		return fmt.Errorf("no restart of app1 logged since %s; last checks: %+v", since.Format(time.RFC3339Nano), runs[max(0, len(runs)-3):])
	})
	return found
}

// failedUnits lists the failed units of a node, for an error message.
func failedUnits(ctx context.Context, c *Cluster, node string) string {
	out, _ := c.Exec(ctx, node, "systemctl", "--failed", "--no-legend")
	return string(out)
}

// connect opens a connection through an HAProxy port, closed at the end of
// the test.
func connect(ctx context.Context, t *testing.T, c *Cluster, addr string) *pgx.Conn {
	t.Helper()
	dsn, err := c.ConnString(addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// eventually retries f until it succeeds, failing the test after d.
func eventually(ctx context.Context, t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("after %s: %v", d, err)
		}
		time.Sleep(pollInterval)
	}
}

// processesUsing lists processes whose command line mentions dir.
func processesUsing(dir string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		if state, _, err := procStat(atoi(e.Name())); err == nil && state != 'Z' {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

// dumpLogsOnFailure logs the end of every daemon's log when t failed.
func dumpLogsOnFailure(t *testing.T, dir string) {
	if !t.Failed() {
		return
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		var lines []string
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		fh.Close()
		lines = lines[max(0, len(lines)-15):]
		t.Logf("---- %s\n%s", filepath.Base(f), strings.Join(lines, "\n"))
	}
}
