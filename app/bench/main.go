// Command bench measures the hello API: it starts a throwaway PostgreSQL
// (internal/pgtest), builds and starts the app on a free port, drives GET and
// PUT requests at a fixed number of concurrent connections for a bounded
// time each, and prints a markdown table. Everything stays on 127.0.0.1.
//
// Run it from the repository root: go run ./app/bench (or make bench).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pki"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	conns := fs.Int("conns", 16, "concurrent connections")
	duration := fs.Duration("duration", 10*time.Second, "how long to drive each endpoint")
	users := fs.Int("users", 10000, "distinct users")
	poolSize := fs.Int("pool", 4, "the app's database connections (pool_max_conns; 4 is the app's own default on up to 4 CPUs)")
	useTLS := fs.Bool("tls", true, "connect the app to PostgreSQL over TLS 1.3 with sslmode=verify-full, as on the cluster (false: plaintext)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	var db *pgtest.Server
	var err error
	sslmode := "sslmode=disable"
	if *useTLS {
		var caFile string
		db, caFile, err = launchTLS()
		if err != nil {
			return err
		}
		defer os.Remove(caFile)
		sslmode = "sslmode=verify-full&sslrootcert=" + url.QueryEscape(caFile)
	} else {
		db, err = pgtest.Launch()
	}
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Fprintf(stdout, "app to PostgreSQL: TLS %v\n", *useTLS)

	base, stop, err := startApp(strings.Replace(db.DSN(), "sslmode=disable", sslmode, 1) + "&pool_max_conns=" + strconv.Itoa(*poolSize))
	if err != nil {
		return err
	}
	defer stop()

	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns},
	}
	put := func(r *rand.Rand) (*http.Request, int) {
		dob := time.Date(1950+r.IntN(60), time.January, 1+r.IntN(365), 0, 0, 0, 0, time.UTC)
		body := `{"dateOfBirth":"` + dob.Format("2006-01-02") + `"}`
		req, _ := http.NewRequest(http.MethodPut, base+"/hello/"+username(r.IntN(*users)), strings.NewReader(body))
		return req, http.StatusNoContent
	}
	get := func(r *rand.Rand) (*http.Request, int) {
		req, _ := http.NewRequest(http.MethodGet, base+"/hello/"+username(r.IntN(*users)), nil)
		return req, http.StatusOK
	}

	// Every user exists before GET is measured.
	for i := range *users {
		req, _ := http.NewRequest(http.MethodPut, base+"/hello/"+username(i), strings.NewReader(`{"dateOfBirth":"1984-06-28"}`))
		if err := send(client, req, http.StatusNoContent); err != nil {
			return fmt.Errorf("seed users: %w", err)
		}
	}

	fmt.Fprintf(stdout, "%d connections, %s per endpoint, %d users, pool_max_conns=%d, %d CPUs, PostgreSQL with fsync=off on the same machine\n\n",
		*conns, *duration, *users, *poolSize, runtime.NumCPU())
	fmt.Fprintln(stdout, "| endpoint | requests | req/s | p50 | p99 | errors |")
	fmt.Fprintln(stdout, "| --- | ---: | ---: | ---: | ---: | ---: |")
	for _, ep := range []struct {
		name string
		next func(*rand.Rand) (*http.Request, int)
	}{
		{"GET /hello/{username}", get},
		{"PUT /hello/{username}", put},
	} {
		r := drive(client, *conns, *duration, ep.next)
		fmt.Fprintf(stdout, "| %s | %d | %.0f | %s | %s | %d |\n", ep.name, len(r.latencies), float64(len(r.latencies))/r.elapsed.Seconds(),
			percentile(r.latencies, 0.50), percentile(r.latencies, 0.99), r.errors)
	}
	// The app's connections, as PostgreSQL sees them: TLS 1.3 or not.
	tlsConns, allConns, err := appTLS(db.DSN())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nthe app's connections to PostgreSQL over TLS 1.3: %d of %d\n", tlsConns, allConns)
	if *useTLS != (tlsConns == allConns && allConns > 0) {
		return fmt.Errorf("%d of the app's %d connections use TLS 1.3, want all (-tls=true) or none", tlsConns, allConns)
	}
	return nil
}

type result struct {
	latencies []time.Duration
	errors    int
	elapsed   time.Duration
}

// drive sends requests from conns goroutines for d and collects latencies.
func drive(client *http.Client, conns int, d time.Duration, next func(*rand.Rand) (*http.Request, int)) result {
	var (
		mu  sync.Mutex
		all result
		wg  sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range conns {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			var lat []time.Duration
			var errs int
			for time.Now().Before(deadline) {
				req, want := next(r)
				t0 := time.Now()
				err := send(client, req, want)
				lat = append(lat, time.Since(t0))
				if err != nil {
					errs++
				}
			}
			mu.Lock()
			all.latencies = append(all.latencies, lat...)
			all.errors += errs
			mu.Unlock()
		})
	}
	wg.Wait()
	all.elapsed = time.Since(start)
	return all
}

// send sends req and fails unless the status is want.
func send(client *http.Client, req *http.Request, want int) error {
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	if res.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d", req.Method, req.URL.Path, res.StatusCode, want)
	}
	return nil
}

func percentile(ds []time.Duration, p float64) string {
	if len(ds) == 0 {
		return "-"
	}
	slices.Sort(ds)
	d := ds[min(len(ds)-1, int(float64(len(ds))*p))]
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}

// username spells i in letters: 0 is "userA", 26 is "userBA".
func username(i int) string {
	b := []byte{byte('A' + i%26)}
	for i /= 26; i > 0; i /= 26 {
		b = append([]byte{byte('A' + i%26)}, b...)
	}
	return "user" + string(b)
}

// startApp builds ./app and runs it against dsn on a free port; stop sends
// SIGTERM and waits for it.
// appTLS counts the client connections other than its own, and those
// over TLS (pg_stat_ssl), through the superuser's dsn.
func appTLS(dsn string) (tlsConns, all int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(ctx)
	err = conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE s.ssl AND s.version = 'TLSv1.3'), count(*)
		FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
		WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()`).Scan(&tlsConns, &all)
	return tlsConns, all, err
}

// launchTLS starts a pgtest server with a certificate for 127.0.0.1 from a
// CA of its own (package pki, as the cluster's), and writes the CA's
// certificate to a file for the app's sslrootcert.
func launchTLS() (*pgtest.Server, string, error) {
	ca, err := pki.NewCA("bench", time.Now())
	if err != nil {
		return nil, "", err
	}
	text, err := ca.Issue(pki.Identity{Name: "bench", DNS: []string{"localhost"}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}, time.Now())
	if err != nil {
		return nil, "", err
	}
	db, err := pgtest.LaunchTLS(pki.Split(text))
	if err != nil {
		return nil, "", err
	}
	f, err := os.CreateTemp("", "pgha-bench-ca-*.crt")
	if err != nil {
		db.Close()
		return nil, "", err
	}
	defer f.Close()
	if _, err := f.WriteString(ca.CertPEM()); err != nil {
		db.Close()
		return nil, "", err
	}
	return db, f.Name(), nil
}

func startApp(dsn string) (base string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "hello-bench-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "hello")
	build := exec.Command("go", "build", "-o", bin, "./app")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build ./app (run from the repository root): %w", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	app := exec.Command(bin)
	app.Env = append(os.Environ(), "DATABASE_URL="+dsn, "PORT="+port)
	app.Stderr = os.Stderr // the request log goes to stdout, discarded
	app.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := app.Start(); err != nil {
		return "", nil, err
	}
	stop = func() {
		app.Process.Signal(syscall.SIGTERM)
		app.Wait()
		os.RemoveAll(dir)
	}

	base = "http://127.0.0.1:" + port
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if res, err := http.Get(base + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return base, stop, nil
			}
		}
		select {
		case <-ctx.Done():
			stop()
			return "", nil, errors.New("the app was not ready after 30 s")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
