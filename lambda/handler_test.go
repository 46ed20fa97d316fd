package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/healthcheck"
	"github.com/pgha/pgha/internal/pgtest"
)

// TestHandlerEndToEnd runs the handler with the real SDK clients against a
// local SSM/Secrets Manager endpoint, a real PostgreSQL standing in for "the
// leader through HAProxy" (the write check connects as pgha_health), the
// Patroni answers captured from Patroni 4.0.7, and an app whose /readyz
// fails until it is restarted. The scenario is the original design's
// problem: the app is up before the cluster is ready.
func TestHandlerEndToEnd(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	const password = "healthPassw0rd"
	conn, err := pgx.Connect(ctx, db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE ROLE "+cluster.HealthUser+" LOGIN PASSWORD '"+password+"'"); err != nil {
		t.Fatal(err)
	}
	// As post-bootstrap.sh grants it: the archive's status.
	if _, err := conn.Exec(ctx, "GRANT EXECUTE ON FUNCTION pg_ls_archive_statusdir() TO "+cluster.HealthUser); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	f := newFakeAWS(t)
	f.secrets["pgha/health"] = password

	var appReady atomic.Bool
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if appReady.Load() {
			w.Write([]byte(`{"status":"ready"}`))
			return
		}
		http.Error(w, `{"error":"database unreachable"}`, http.StatusServiceUnavailable)
	}))
	defer app.Close()

	leader := &switchable{}
	pg1, pg2, pg3 := serveFixture(t, "pg1"), serveFixture(t, "pg2"), serveFixture(t, "pg3")
	leader.set(nil) // pg2, the leader, does not answer yet
	leaderSrv := httptest.NewServer(leader)
	defer leaderSrv.Close()

	s := healthcheck.Settings{
		Cluster: "pgha", Region: "eu-west-3",
		Members: []healthcheck.Member{
			{Name: "pg1", Region: "eu-west-3", URL: pg1.URL},
			{Name: "pg2", Region: "eu-west-3", URL: leaderSrv.URL},
			{Name: "pg3", Region: "eu-west-1", URL: pg3.URL},
		},
		HAProxy:          []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(db.Port()))},
		Apps:             []healthcheck.App{{Name: "app1", InstanceID: "i-0123456789abcdef0", URL: app.URL}},
		Database:         "postgres",
		User:             cluster.HealthUser,
		SecretName:       "pgha/health",
		ParameterPath:    "/pgha/pgha/restarts",
		RestartBackoffMs: (5 * time.Minute).Milliseconds(),
		NodeTimeoutMs:    300,
		AppTimeoutMs:     300,
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	h := newHandler(s, nil, "", f.ssmClient(), f.secretsClient(), nil, &out)
	// The test's PostgreSQL and Patroni fixtures speak no TLS.
	h.checker.Writes.(*healthcheck.PGWriteChecker).TLS = nil
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	h.checker.Now = func() time.Time { return now }
	event := scheduledEvent(t)

	run := func(name string, wantReady bool, wantSends int) map[string]any {
		t.Helper()
		out.Reset()
		if err := h.Handle(ctx, event); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		emf, logLine := outputLines(t, out.Bytes())
		if got := len(f.callsTo("AmazonSSM.SendCommand")); got != wantSends {
			t.Fatalf("%s: %d SendCommand in all, want %d; log %v", name, got, wantSends, logLine)
		}
		if logLine["ready"] != wantReady {
			t.Fatalf("%s: ready %v (%v), want %v", name, logLine["ready"], logLine["reason"], wantReady)
		}
		if emf[healthcheck.MetricClusterReady] != map[bool]float64{true: 1, false: 0}[wantReady] {
			t.Errorf("%s: EMF %s = %v", name, healthcheck.MetricClusterReady, emf[healthcheck.MetricClusterReady])
		}
		now = now.Add(time.Minute)
		return logLine
	}

	l := run("leader not answering: hold", false, 0)
	if !strings.Contains(l["reason"].(string), "pg2 holds the leader key but did not answer") {
		t.Errorf("reason %q", l["reason"])
	}
	if len(f.callsTo("AmazonSSM.PutParameter")) != 0 || len(f.callsTo("AmazonSSM.GetParameter")) != 0 {
		t.Error("touched the restart memory while the cluster was not ready")
	}

	leader.set(pg2)
	l = run("cluster ready, app not: restart", true, 1)
	send := f.callsTo("AmazonSSM.SendCommand")[0].Body
	if send["DocumentName"] != "AWS-RunShellScript" || !strings.Contains(mustJSON(send), `"InstanceIds":["i-0123456789abcdef0"]`) ||
		!strings.Contains(mustJSON(send), `"commands":["systemctl restart pgha-app.service"]`) {
		t.Errorf("SendCommand %s", mustJSON(send))
	}
	if f.params["/pgha/pgha/restarts/i-0123456789abcdef0"] != "2026-11-26T12:01:00Z" {
		t.Errorf("restart memory %v", f.params)
	}
	if l["restarted"].([]any)[0] != "i-0123456789abcdef0" {
		t.Errorf("log restarted %v", l["restarted"])
	}

	run("a minute later, app still down: backoff", true, 1)
	now = now.Add(3 * time.Minute)
	run("five minutes after the restart: restart again", true, 2)
	appReady.Store(true)
	run("app ready: nothing", true, 2)

	// The leader goes away again; the app is not ready: hold, and say why.
	appReady.Store(false)
	leader.set(nil)
	l = run("leader gone: hold", false, 2)
	if l["level"] != "WARN" {
		t.Errorf("level %v, want WARN", l["level"])
	}
}

// switchable serves whatever handler it was last set to; nil hangs until
// the client gives up, like a dead node.
type switchable struct {
	h atomic.Pointer[httptest.Server]
}

func (s *switchable) set(srv *httptest.Server) { s.h.Store(srv) }

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	srv := s.h.Load()
	if srv == nil {
		<-r.Context().Done()
		return
	}
	srv.Config.Handler.ServeHTTP(w, r)
}

func serveFixture(t *testing.T, member string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	for _, ep := range []string{"patroni", "cluster"} {
		b, err := os.ReadFile(filepath.Join("..", "internal", "patroni", "testdata", "patroni-4.0.7", "healthy", member+"-"+ep+".json"))
		if err != nil {
			t.Fatal(err)
		}
		mux.HandleFunc("GET /"+ep, func(w http.ResponseWriter, r *http.Request) { w.Write(b) })
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func scheduledEvent(t *testing.T) events.EventBridgeEvent {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "scheduled-event.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev events.EventBridgeEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.DetailType != "Scheduled Event" {
		t.Fatalf("fixture detail-type %q", ev.DetailType)
	}
	return ev
}

// outputLines splits the handler's stdout into its EMF document and its
// log line, and checks there is exactly one of each.
func outputLines(t *testing.T, b []byte) (emf, logLine map[string]any) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("output line is not JSON: %q", sc.Text())
		}
		switch {
		case m["_aws"] != nil && emf == nil:
			emf = m
		case m["msg"] == "health check" && logLine == nil:
			logLine = m
		default:
			t.Fatalf("unexpected output line %q", sc.Text())
		}
	}
	if emf == nil || logLine == nil {
		t.Fatalf("want one EMF document and one log line, got %q", b)
	}
	return emf, logLine
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
