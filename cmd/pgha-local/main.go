// Command pgha-local runs a pgha cluster on this machine with the real
// daemons (see package local): up, status, fault, switchover, down.
//
//	sudo go run ./cmd/pgha-local up [--config FILE] [--dir DIR] [--foreground] [--check-every D] [--restart-backoff D]
//	sudo go run ./cmd/pgha-local status [--json]
//	sudo go run ./cmd/pgha-local fault kill|stop|cont|isolate|reboot|kill-postgres|kill-patroni|heal TARGET
//	sudo go run ./cmd/pgha-local exec NODE COMMAND [ARG...]
//	sudo go run ./cmd/pgha-local apply [--config FILE]
//	sudo go run ./cmd/pgha-local switchover [--to NODE]
//	sudo go run ./cmd/pgha-local etcd-replace NODE
//	sudo go run ./cmd/pgha-local down
//	sudo go run ./cmd/pgha-local rootfs
//
// `pgha-local checker --dir DIR --region REGION` is the health checker of
// one region (local.RunChecker), which up starts in the background.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/local"
)

const usage = `usage: pgha-local COMMAND [flags]

  up [--config FILE] [--foreground]   bring the cluster up; return when ready
     [--check-every D]                the health checker's interval (default 5s)
     [--restart-backoff D]            least time between two restarts of the app
                                      (default: healthCheck.restartBackoffMinutes)
  status [--json]                     nodes, HAProxy endpoints, app URL,
                                      health checkers
  fault KIND TARGET                   KIND: kill, stop, cont, isolate, reboot,
                                      kill-postgres, kill-patroni (a PostgreSQL
                                      node's postmaster / Patroni, kept down
                                      until heal), fill-volume (every free byte
                                      of its data volume taken until heal),
                                      heal; TARGET: a node, "leader", or
                                      (isolate, heal) a region or s3.REGION,
                                      its S3 endpoint
  memory                              each node's memory (PSS), the AWS side's, the sum
  exec NODE COMMAND [ARG...]          run a command as root in a node's system
                                      (systemctl status, journalctl -u UNIT)
  apply [--config FILE]               change the running cluster's tunable settings
                                      (postgres.parameters, patroni.*): the health
                                      checker applies them, one node at a time
  switchover [--to NODE]              planned leader change through Patroni
  etcd-replace NODE                   lose an etcd member's data (etcd stopped,
                                      its data directory emptied), then replace
                                      the member with the node's own
                                      pgha-etcd-rejoin, as on EC2
  rotate-certs                        issue every node certificate again (new
                                      keys) and install it on each node in turn
  restore --to TIME                   bring the whole cluster back to TIME (UTC)
                                      from the backups (point-in-time recovery)
  ca                                  print the path of the cluster CA's
                                      certificate (psql sslrootcert=...)
  down                                stop everything and remove it
  rootfs [--path DIR]                 build the cached Debian 13 root
                                      filesystem if it is missing; print its path

Every command takes --dir DIR (default .pgha-local). Run as root.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pgha-local:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("pgha-local "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", local.DefaultDir, "directory for node data, logs, secrets and state")
	// open parses a command's flags (after it has defined its own), which
	// take no argument, and opens the cluster in --dir.
	open := func() (*local.Cluster, error) {
		if err := parseNone(fs, args); err != nil {
			return nil, err
		}
		return local.Open(*dir)
	}
	switch cmd {
	case "up":
		configFile := fs.String("config", "", "JSON of the pgha configuration (default: the pgha key of ./cdk.json's context, else the defaults)")
		foreground := fs.Bool("foreground", false, "stay until Ctrl-C, then tear down")
		var checker local.CheckerOptions
		fs.DurationVar(&checker.Interval, "check-every", local.DefaultCheckerInterval, "time between two checks of the health checker")
		fs.DurationVar(&checker.Backoff, "restart-backoff", 0, "least time between two restarts of one app (default: the configuration's healthCheck.restartBackoffMinutes)")
		if err := parseNone(fs, args); err != nil {
			return err
		}
		return up(ctx, *dir, *configFile, *foreground, checker, stdout, stderr)
	case local.CheckerCommand: // started by up, not in the usage
		region := fs.String("region", "", "the region whose apps it restarts")
		var checker local.CheckerOptions
		fs.DurationVar(&checker.Interval, "every", local.DefaultCheckerInterval, "time between two checks")
		fs.DurationVar(&checker.Backoff, "backoff", 0, "least time between two restarts of one app (default: the configuration's)")
		if err := parseNone(fs, args); err != nil {
			return err
		}
		return local.RunChecker(ctx, *dir, *region, checker, stdout)
	case local.IMDSCommand: // started by up, not in the usage
		addr := fs.String("addr", "169.254.169.254:80", "where to serve")
		if err := parseNone(fs, args); err != nil {
			return err
		}
		return local.RunIMDS(ctx, *dir, *addr)
	case "exec":
		// Flags before NODE; what follows is the command's own.
		if err := fs.Parse(args); err != nil {
			return err
		}
		args = fs.Args()
		if len(args) < 2 {
			return errors.New("usage: pgha-local exec NODE COMMAND [ARG...]")
		}
		c, err := local.Open(*dir)
		if err != nil {
			return err
		}
		out, err := c.Exec(ctx, args[0], args[1:]...)
		stdout.Write(out)
		return err
	case "memory":
		c, err := open()
		if err != nil {
			return err
		}
		mem := c.Memory()
		var total int64
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tMiB (PSS)")
		for _, n := range c.Plan().Nodes {
			fmt.Fprintf(tw, "%s\t%d\n", n.Name, mem[n.Name]>>20)
			total += mem[n.Name]
		}
		fmt.Fprintf(tw, "nodes\t%d\n", total>>20)
		fmt.Fprintf(tw, "AWS side\t%d\n", mem["aws"]>>20)
		fmt.Fprintf(tw, "all\t%d\n", (total+mem["aws"])>>20)
		return tw.Flush()
	case "status":
		asJSON := fs.Bool("json", false, "print JSON")
		c, err := open()
		if err != nil {
			return err
		}
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		printStatus(stdout, st)
		return nil
	case "fault":
		pos, err := parseInterspersed(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 2 {
			return errors.New("usage: pgha-local fault kill|stop|cont|isolate|reboot|kill-postgres|kill-patroni|heal TARGET")
		}
		c, err := local.Open(*dir)
		if err != nil {
			return err
		}
		c.SetLog(stderr)
		nodes, err := c.Fault(ctx, local.Fault(pos[0]), pos[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s\n", pos[0], strings.Join(nodes, ", "))
		return nil
	case "apply":
		configFile := fs.String("config", "", "JSON of the pgha configuration (default: the pgha key of ./cdk.json's context, else the defaults)")
		if err := parseNone(fs, args); err != nil {
			return err
		}
		cfg, err := loadConfig(*configFile)
		if err != nil {
			return err
		}
		c, err := local.Open(*dir)
		if err != nil {
			return err
		}
		c.SetLog(stderr)
		if err := c.Apply(ctx, cfg); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "applying: the health checker rolls the change out; `pgha-local status` shows its progress")
		return nil
	case "switchover":
		to := fs.String("to", "", "the new leader (default: Patroni picks)")
		c, err := open()
		if err != nil {
			return err
		}
		leader, took, err := c.Switchover(ctx, *to)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s leads, after %s\n", leader, took.Round(10*time.Millisecond))
		return nil
	case "etcd-replace":
		pos, err := parseInterspersed(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return errors.New("usage: pgha-local etcd-replace NODE")
		}
		c, err := local.Open(*dir)
		if err != nil {
			return err
		}
		c.SetLog(stderr)
		start := time.Now()
		out, err := c.ReplaceEtcdMember(ctx, pos[0])
		if err != nil {
			return err // it holds the script's output
		}
		fmt.Fprintln(stdout, out)
		fmt.Fprintf(stdout, "%s replaced in %s\n", pos[0], time.Since(start).Round(100*time.Millisecond))
		return nil
	case "rotate-certs":
		c, err := open()
		if err != nil {
			return err
		}
		c.SetLog(stderr)
		start := time.Now()
		nodes, err := c.RotateCerts(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rotated %d certificates (%s) in %s\n", len(nodes), strings.Join(nodes, ", "), time.Since(start).Round(100*time.Millisecond))
		return nil
	case "restore":
		to := fs.String("to", "", "the time to restore to: RFC 3339 (2026-12-02T18:40:00Z) or UTC \"2026-12-02 18:40:00\"")
		c, err := open()
		if err != nil {
			return err
		}
		target, err := parseTime(*to)
		if err != nil {
			return err
		}
		c.SetLog(stderr)
		// A target the archive does not reach makes Patroni's bootstrap
		// fail over and over: give up after half an hour.
		rctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		defer cancel()
		r, err := c.Restore(rctx, target)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "restored to %s on %s: restore %s, new full backup %s, replicas %s\n", r.Target.Format(time.RFC3339Nano), r.Node,
			r.Restore.Round(100*time.Millisecond), r.Backup.Round(100*time.Millisecond), r.Ready.Round(100*time.Millisecond))
		return nil
	case "ca":
		c, err := open()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, c.CAFile())
		return nil
	case "down":
		c, err := open()
		if err != nil {
			return err
		}
		c.SetLog(stderr)
		return c.Down(context.WithoutCancel(ctx))
	case "rootfs":
		path := fs.String("path", local.DefaultRootFS, "where the root filesystem is cached")
		if err := parseNone(fs, args); err != nil {
			return err
		}
		if err := local.EnsureRootFS(ctx, *path, stderr); err != nil {
			return err
		}
		fmt.Fprintln(stdout, *path)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// parseInterspersed parses flags placed before, between or after the
// positional arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// parseNone parses flags and rejects positional arguments.
func parseNone(fs *flag.FlagSet, args []string) error {
	pos, err := parseInterspersed(fs, args)
	if err == nil && len(pos) > 0 {
		err = fmt.Errorf("%s: unexpected argument %q", fs.Name(), pos[0])
	}
	return err
}

func up(ctx context.Context, dir, configFile string, foreground bool, checker local.CheckerOptions, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(configFile)
	if err != nil {
		return err
	}
	start := time.Now()
	c, err := local.Up(ctx, local.Options{Dir: dir, Config: &cfg, Log: stderr, Checker: checker})
	if err != nil {
		return err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	printStatus(stdout, st)
	fmt.Fprintf(stdout, "\nready in %s\n", time.Since(start).Round(100*time.Millisecond))
	if !foreground {
		fmt.Fprintf(stdout, "daemons keep running; `pgha-local down` removes everything\n")
		return nil
	}
	fmt.Fprintf(stdout, "Ctrl-C tears the cluster down\n")
	<-ctx.Done()
	return c.Down(context.WithoutCancel(ctx))
}

// loadConfig reads the configuration: FILE, else the pgha key of
// ./cdk.json's context, else the defaults.
func loadConfig(file string) (cluster.Config, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return cluster.Config{}, err
		}
		return cluster.Parse(b)
	}
	b, err := os.ReadFile("cdk.json")
	if errors.Is(err, os.ErrNotExist) {
		return cluster.Default(), nil
	}
	if err != nil {
		return cluster.Config{}, err
	}
	var cdk struct {
		Context map[string]any `json:"context"`
	}
	if err := json.Unmarshal(b, &cdk); err != nil {
		return cluster.Config{}, fmt.Errorf("cdk.json: %w", err)
	}
	return cluster.FromContext(cdk.Context[cluster.ContextKey])
}

func printStatus(w io.Writer, st local.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tREGION\tADDRESS\tSTATE\tLEADER")
	for _, n := range st.Nodes {
		leader := ""
		if n.Leader {
			leader = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, n.Region, n.Address, n.State, leader)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, h := range st.HAProxy {
		fmt.Fprintf(w, "HAProxy %s (%s): write %s, read %s\n", h.Name, h.Region, h.Write, h.Read)
	}
	for _, a := range st.App {
		fmt.Fprintf(w, "app %s (%s): %s\n", a.Name, a.Region, a.URL)
	}
	for _, c := range st.Checker {
		last := "no check yet"
		if c.LastCheck != "" {
			verdict := "not ready"
			if c.Ready {
				verdict = "ready"
			}
			last = fmt.Sprintf("last check %s: cluster %s: %s", c.LastCheck, verdict, c.Reason)
		}
		fmt.Fprintf(w, "health checker (%s): %s, app restarts: %d; %s; log %s\n", c.Region, c.State, c.Restarts, last, c.Log)
	}
}

// parseTime reads a restore target: RFC 3339, or a UTC date and time.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("restore: --to TIME is required")
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			if t.After(time.Now()) {
				return time.Time{}, fmt.Errorf("restore: --to %s is in the future", s)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("restore: --to %q is not a time like 2026-12-02T18:40:00Z or \"2026-12-02 18:40:00\" (UTC)", s)
}
