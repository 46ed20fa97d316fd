// Command bench prints the health checker's figures: how long one check of
// the default cluster takes with every PostgreSQL node answering and with
// two of them unreachable (black-holed), the Lambda binary's size, and the
// binary's start-up time up to its first request to the Lambda Runtime API.
//
//	go run ./lambda/bench                # captured Patroni 4.0.7 answers served on 127.0.0.1, a pgtest PostgreSQL for the write check
//	go run ./lambda/bench -local .pgha-local   # a running local cluster (pgha-local up): real Patroni, HAProxy and app
//
// Run it from the module root.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/healthcheck"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/local"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	localDir := fs.String("local", "", "directory of a running local cluster (pgha-local up); default: captured answers on 127.0.0.1")
	runs := fs.Int("n", 20, "checks per figure")
	timeout := fs.Duration("timeout", healthcheck.DefaultNodeTimeout, "per-node Patroni timeout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	plan, err := cluster.NewPlan(cluster.Default())
	if err != nil {
		return err
	}
	s, err := healthcheck.SettingsFromPlan(plan, "eu-west-3", nil)
	if err != nil {
		return err
	}
	var writes healthcheck.WriteChecker
	var roots *x509.CertPool // the cluster CA, with -local
	source := "real local cluster in " + *localDir
	if *localDir != "" {
		c, err := local.Open(*localDir)
		if err != nil {
			return err
		}
		pw, err := c.Secret(cluster.SecretHealth)
		if err != nil {
			return err
		}
		tlsCfg, err := c.TLSConfig()
		if err != nil {
			return err
		}
		roots = tlsCfg.RootCAs
		writes = &healthcheck.PGWriteChecker{Addrs: s.HAProxy, User: s.User, Database: s.Database, Password: healthcheck.StaticPassword(pw),
			TLS: &tls.Config{RootCAs: roots}}
	} else {
		source = "captured Patroni 4.0.7 answers on 127.0.0.1, pgtest PostgreSQL as the leader behind HAProxy"
		for i, m := range s.Members {
			srv, err := serveCaptured(m.Name)
			if err != nil {
				return err
			}
			defer srv.Close()
			s.Members[i].URL = srv.URL
		}
		db, err := pgtest.Launch()
		if err != nil {
			return err
		}
		defer db.Close()
		if err := createHealthRole(ctx, db.DSN(), "bench"); err != nil {
			return err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(db.Port()))
		writes = &healthcheck.PGWriteChecker{Addrs: []string{addr}, User: s.User, Database: "postgres", Password: healthcheck.StaticPassword("bench")}
		// No app in this mode: the check's app probe is measured locally.
		s.Apps = nil
	}
	restarter := healthcheck.RestarterFunc(func(context.Context, healthcheck.App) error { return nil }) // dry run
	newChecker := func(members []healthcheck.Member) *healthcheck.Checker {
		c := healthcheck.NewChecker(s, writes, restarter, &healthcheck.MemoryStore{})
		c.Members = members
		c.Patroni.Timeout = *timeout
		if roots != nil {
			c.Patroni = healthcheck.NewPatroniClient(roots, "", "", *timeout)
		}
		return c
	}

	fmt.Fprintf(stdout, "source: %s\nper-node timeout: %s, %d checks per figure\n\n", source, *timeout, *runs)
	all, r, err := measure(ctx, newChecker(s.Members), *runs)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "one check, all %d members up:      %s (ready=%v: %s)\n", len(s.Members), all, r.Decision.Ready, r.Decision.Reason)

	holed := slices.Clone(s.Members)
	for _, i := range []int{0, 2} {
		url, stop, err := blackHole()
		if err != nil {
			return err
		}
		defer stop()
		holed[i].URL = url
	}
	two, r, err := measure(ctx, newChecker(holed), max(*runs/4, 3))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "one check, 2 of %d black-holed:     %s (ready=%v; unreachable %v)\n\n", len(s.Members), two, r.Decision.Ready, r.Observation.View.Unreachable)

	size, err := buildSize()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Lambda binary (linux/arm64, -s -w, lambda.norpc): %.1f MiB (%d bytes)\n", float64(size)/(1<<20), size)
	start, err := startup(*runs)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "start-up to first Runtime API request (host build, linux/%s): %s\n", hostArch(), start)
	return nil
}

// stats is a median and range.
type stats []time.Duration

func (s stats) String() string {
	slices.Sort(s)
	return fmt.Sprintf("median %s [%s-%s]", s[len(s)/2].Round(100*time.Microsecond), s[0].Round(100*time.Microsecond), s[len(s)-1].Round(100*time.Microsecond))
}

func measure(ctx context.Context, c *healthcheck.Checker, n int) (stats, healthcheck.Report, error) {
	var out stats
	var last healthcheck.Report
	for range n {
		start := time.Now()
		r, err := c.Check(ctx)
		if err != nil {
			return nil, r, err
		}
		out = append(out, time.Since(start))
		last = r
	}
	return out, last, nil
}

func serveCaptured(member string) (*httptest.Server, error) {
	mux := http.NewServeMux()
	for _, ep := range []string{"patroni", "cluster"} {
		b, err := os.ReadFile(filepath.Join("internal", "patroni", "testdata", "patroni-4.0.7", "healthy", member+"-"+ep+".json"))
		if err != nil {
			return nil, fmt.Errorf("%w (run from the module root)", err)
		}
		mux.HandleFunc("GET /"+ep, func(w http.ResponseWriter, r *http.Request) { w.Write(b) })
	}
	return httptest.NewServer(mux), nil
}

// blackHole accepts connections and never answers.
func blackHole() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return "http://" + ln.Addr().String(), func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	}, nil
}

func createHealthRole(ctx context.Context, dsn, password string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE ROLE "+cluster.HealthUser+" LOGIN PASSWORD '"+password+"'")
	return err
}

var buildFlags = []string{"build", "-tags", "lambda.norpc", "-trimpath", "-buildvcs=false", "-ldflags=-s -w"}

// buildSize builds the Lambda as constructs/healthcheck does and returns
// the binary's size.
func buildSize() (int64, error) {
	dir, err := os.MkdirTemp("", "pgha-bench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "bootstrap")
	cmd := exec.Command("go", append(buildFlags, "-o", out, "./lambda")...)
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("go build: %v\n%s", err, b)
	}
	fi, err := os.Stat(out)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func hostArch() string {
	b, _ := exec.Command("go", "env", "GOARCH").Output()
	return string(b[:max(len(b)-1, 0)])
}

// startup builds the Lambda for this machine and times, n times, from exec
// to its first GET /2018-06-01/runtime/invocation/next on a fake Runtime
// API: the cold start the function's own code costs (settings, AWS config,
// clients), without the Lambda service's part.
func startup(n int) (stats, error) {
	dir, err := os.MkdirTemp("", "pgha-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "bootstrap")
	cmd := exec.Command("go", append(buildFlags, "-o", bin, "./lambda")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, b)
	}
	plan, err := cluster.NewPlan(cluster.Default())
	if err != nil {
		return nil, err
	}
	s, _ := healthcheck.SettingsFromPlan(plan, "eu-west-3", map[string]string{"euw3-app1": "i-0123456789abcdef0"})
	settings, _ := jsonString(s)

	var out stats
	for range n {
		next := make(chan time.Time, 1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case next <- time.Now():
			default:
			}
			<-r.Context().Done()
		}))
		p := exec.Command(bin)
		p.Env = []string{
			"AWS_LAMBDA_RUNTIME_API=" + srv.Listener.Addr().String(),
			"AWS_REGION=eu-west-3",
			"AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=fake", "AWS_SESSION_TOKEN=fake",
			healthcheck.EnvSettings + "=" + settings,
		}
		start := time.Now()
		if err := p.Start(); err != nil {
			srv.Close()
			return nil, err
		}
		select {
		case t := <-next:
			out = append(out, t.Sub(start))
		case <-time.After(10 * time.Second):
			p.Process.Kill()
			p.Wait()
			srv.Close()
			return nil, errors.New("the binary made no Runtime API request within 10 s")
		}
		p.Process.Kill()
		p.Wait()
		srv.CloseClientConnections()
		srv.Close()
	}
	return out, nil
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
