package healthcheck

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgha/pgha/internal/patroni"
)

// The default cluster's members as the plan names them.
var defaultMembers = []Member{
	{Name: "pg1", Region: "eu-west-3", URL: "http://10.11.3.10:8008"},
	{Name: "pg2", Region: "eu-west-3", URL: "http://10.11.4.10:8008"},
	{Name: "pg3", Region: "eu-west-1", URL: "http://10.12.3.10:8008"},
}

// fixtures are the Patroni 4.0.7 answers recorded from the local cluster,
// kept with the model that decodes them (see the README there).
const fixtures = "../internal/patroni/testdata/patroni-4.0.7"

// fixture reads a captured Patroni answer from fixtures.
func fixture(t testing.TB, state, member, endpoint string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, state, member+"-"+endpoint+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// capturedProbe decodes a member's captured answers into a Probe, as the
// client would.
func capturedProbe(t testing.TB, state string, m Member) Probe {
	t.Helper()
	p := Probe{Member: m, Patroni: &patroni.Status{}, Cluster: &patroni.Cluster{}}
	if err := json.Unmarshal(fixture(t, state, m.Name, "patroni"), p.Patroni); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(fixture(t, state, m.Name, "cluster"), p.Cluster); err != nil {
		t.Fatal(err)
	}
	return p
}

// serveCaptured serves a member's captured answers over HTTP and returns
// its base URL.
func serveCaptured(t testing.TB, state, member string) string {
	t.Helper()
	mux := http.NewServeMux()
	for _, ep := range []string{"patroni", "cluster"} {
		body := fixture(t, state, member, ep)
		mux.HandleFunc("GET /"+ep, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// blackHole returns the base URL of a listener that accepts connections and
// never answers: what a node whose Patroni hangs looks like. (A dropped SYN
// looks the same to the client: nothing comes back before the timeout.)
func blackHole(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
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
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}
