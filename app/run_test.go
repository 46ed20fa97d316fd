package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgha/pgha/internal/pgtest"
)

// lockedBuffer collects run's log output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runningApp is run() started by a test.
type runningApp struct {
	base   string
	out    *lockedBuffer
	cancel context.CancelFunc
	done   chan struct{} // closed when run has returned err
	err    error
}

// startRun calls run with the environment e on a free port and waits until
// the app is ready. The test's cleanup stops it.
func startRun(t *testing.T, e env) *runningApp {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	e["PORT"] = strconv.Itoa(port)

	ctx, cancel := context.WithCancel(context.Background())
	a := &runningApp{base: fmt.Sprintf("http://127.0.0.1:%d", port), out: &lockedBuffer{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		a.err = run(ctx, []string{"hello"}, e.get, a.out)
		close(a.done)
	}()
	t.Cleanup(func() {
		if err := a.stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get(a.base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("app not ready after 15 s: %v; log:\n%s", err, a.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop cancels run's context and returns what run returned.
func (a *runningApp) stop() error {
	a.cancel()
	select {
	case <-a.done:
		return a.err
	case <-time.After(20 * time.Second):
		return fmt.Errorf("run did not return 20 s after its context was canceled")
	}
}

// adminPool connects to db as the superuser.
func adminPool(t *testing.T, db *pgtest.Server) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestRunWithAppRole runs the app as a role that has exactly the grants of
// grants.sql, with the password in a file and not in DATABASE_URL.
func TestRunWithAppRole(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	admin := adminPool(t, db)
	grants, err := os.ReadFile("grants.sql")
	if err != nil {
		t.Fatal(err)
	}
	const password = "s3cret-Pa55"
	if _, err := admin.Exec(ctx, string(grants)+"ALTER ROLE app PASSWORD '"+password+"';"); err != nil {
		t.Fatal(err)
	}
	pwfile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The first host is down: the app must move on to the second.
	url := fmt.Sprintf("postgres://app@127.0.0.1:1,127.0.0.1:%d/postgres?sslmode=disable", db.Port())
	a := startRun(t, env{"DATABASE_URL": url, "DATABASE_PASSWORD_FILE": pwfile})

	if r := do(t, "PUT", a.base+"/hello/julio", `{"dateOfBirth":"1984-06-28"}`); r.status != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", a.base+"/hello?username=julio", ""); r.status != http.StatusOK || !strings.Contains(r.body, "Hello, julio!") {
		t.Fatalf("GET: %d %s", r.status, r.body)
	}

	var schema, owner string
	if err := admin.QueryRow(ctx, "SELECT schemaname, tableowner FROM pg_tables WHERE tablename = 'users'").Scan(&schema, &owner); err != nil {
		t.Fatal(err)
	}
	if schema != "app" || owner != "app" {
		t.Errorf("table users is in schema %q owned by %q, want app and app", schema, owner)
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	log := a.out.String()
	if strings.Contains(log, password) {
		t.Errorf("the log shows the password:\n%s", log)
	}
	for _, want := range []string{`"msg":"listening"`, `"msg":"request"`, `"method":"PUT"`, `"path":"/hello/julio"`, `"status":204`, `"latency_ms":`} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %s:\n%s", want, log)
		}
	}

	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, grants) {
		t.Error("README.md does not show grants.sql verbatim")
	}
}

// TestDatabaseStopAndReturn stops PostgreSQL under the app: requests fail
// fast with 503, and succeed again once it is back, without restarting the
// app, including requests made while it was still down.
func TestDatabaseStopAndReturn(t *testing.T) {
	db := pgtest.New(t)
	a := startRun(t, env{"DATABASE_URL": db.DSN()})
	if r := do(t, "PUT", a.base+"/hello/julio", `{"dateOfBirth":"1984-06-28"}`); r.status != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}

	if err := db.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := do(t, "GET", a.base+"/hello/julio", "")
	if elapsed, most := time.Since(start), retryBudget+3*time.Second; elapsed > most {
		t.Errorf("GET with the database down took %s, want < %s (the retry budget and one attempt)", elapsed, most)
	}
	wantError(t, r, http.StatusServiceUnavailable)
	if r.body != `{"error":"database unavailable"}`+"\n" {
		t.Errorf("body %q, want {\"error\":\"database unavailable\"}", r.body)
	}
	wantError(t, do(t, "GET", a.base+"/readyz", ""), http.StatusServiceUnavailable)
	if r := do(t, "GET", a.base+"/healthz", ""); r.status != http.StatusOK {
		t.Errorf("healthz with the database down: %d, want 200", r.status)
	}

	// The database comes back 1 s into these requests: they wait for it.
	results := make(chan response, 2)
	go func() { results <- do(t, "GET", a.base+"/hello/julio", "") }()
	go func() { results <- do(t, "PUT", a.base+"/hello/ana", `{"dateOfBirth":"1990-01-01"}`) }()
	time.Sleep(time.Second)
	if err := db.Start(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r := <-results; r.status != http.StatusOK && r.status != http.StatusNoContent {
			t.Errorf("request during the restart: %d %s, want success", r.status, r.body)
		}
	}
	if r := do(t, "GET", a.base+"/readyz", ""); r.status != http.StatusOK {
		t.Errorf("readyz after the restart: %d %s", r.status, r.body)
	}
}

// TestRetriesWhileReadOnly makes the database read-only, as a new Patroni
// leader is for a moment (SQLSTATE 25006), and lifts it while a PUT retries:
// the PUT succeeds.
func TestRetriesWhileReadOnly(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	base := startAPI(t, db.DSN(), "2024-03-01")
	if r := do(t, "PUT", base+"/hello/julio", `{"dateOfBirth":"1984-06-28"}`); r.status != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}

	admin := adminPool(t, db)
	setReadOnly := func(on bool) {
		sql := "ALTER SYSTEM RESET default_transaction_read_only"
		if on {
			sql = "ALTER SYSTEM SET default_transaction_read_only = on"
		}
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Error(err)
		}
		if _, err := admin.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			t.Error(err)
		}
	}
	setReadOnly(true)
	t.Cleanup(func() { setReadOnly(false) })
	for { // the reload is asynchronous
		var ro string
		if err := admin.QueryRow(ctx, "SHOW default_transaction_read_only").Scan(&ro); err != nil {
			t.Fatal(err)
		}
		if ro == "on" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The admin session has it; the postmaster signals the other backends
	// (the app's pooled ones) one after the other, and each applies it
	// before its next command: give the signals time to arrive (CI once saw
	// the app's PUT win that race).
	time.Sleep(250 * time.Millisecond)

	const readOnlyFor = 1500 * time.Millisecond
	start := time.Now()
	time.AfterFunc(readOnlyFor, func() { setReadOnly(false) })
	r := do(t, "PUT", base+"/hello/julio", `{"dateOfBirth":"1990-03-01"}`)
	if r.status != http.StatusNoContent {
		t.Fatalf("PUT while read-only: %d %s, want 204", r.status, r.body)
	}
	if elapsed := time.Since(start); elapsed < readOnlyFor {
		t.Errorf("PUT succeeded after %s, while the database was still read-only", elapsed)
	}
	wantMessage(t, do(t, "GET", base+"/hello/julio", ""), "Hello, julio! Happy birthday!")
}

// TestShutdownDrainsRequests sends SIGTERM while a PUT waits on a row lock:
// the app stops accepting connections, the PUT completes, and run returns.
func TestShutdownDrainsRequests(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	a := startRun(t, env{"DATABASE_URL": db.DSN()})
	if r := do(t, "PUT", a.base+"/hello/julio", `{"dateOfBirth":"1984-06-28"}`); r.status != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}

	admin := adminPool(t, db)
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT 1 FROM users WHERE username = 'julio' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	result := make(chan response, 1)
	go func() { result <- do(t, "PUT", a.base+"/hello/julio", `{"dateOfBirth":"1990-01-01"}`) }()
	for waiting := 0; waiting == 0; time.Sleep(10 * time.Millisecond) {
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		res, err := probe.Get(a.base + "/healthz")
		if err != nil {
			break // the listener is closed
		}
		res.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("the app still accepts connections 1 s after SIGTERM")
		}
	}
	select {
	case <-a.done:
		t.Fatal("run returned before the in-flight request completed")
	default:
	}

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-result; r.status != http.StatusNoContent {
		t.Errorf("in-flight PUT: %d %s, want 204", r.status, r.body)
	}
	select {
	case <-a.done:
		if a.err != nil {
			t.Errorf("run: %v", a.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after draining")
	}
}
