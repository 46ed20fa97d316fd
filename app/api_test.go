package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgha/pgha/internal/pgtest"
)

var discardLog = slog.New(slog.DiscardHandler)

// env is a fake environment for loadConfig and run.
type env map[string]string

func (e env) get(key string) string { return e[key] }

// startAPI serves the API on a database, with "today" pinned to the given
// date (at noon UTC), and returns its base URL.
func startAPI(t *testing.T, dsn, today string) string {
	t.Helper()
	cfg, err := loadConfig(env{"DATABASE_URL": dsn}.get)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg.pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := &server{
		store: &store{pool: pool},
		now:   func() time.Time { return date(today).Add(12 * time.Hour) },
		loc:   time.UTC,
		log:   discardLog,
	}
	if err := s.migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.routes())
	t.Cleanup(ts.Close)
	return ts.URL
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request and reads the whole response.
func do(t *testing.T, method, url, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b)}
}

// wantError fails unless r has the status and a body {"error": "..."}.
func wantError(t *testing.T, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d (body %s)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e map[string]string
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || len(e) != 1 || e["error"] == "" {
		t.Errorf("body %q, want {\"error\": \"...\"}", r.body)
	}
}

// wantMessage fails unless r is 200 {"message": want}.
func wantMessage(t *testing.T, r response, want string) {
	t.Helper()
	var m map[string]string
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &m) != nil || len(m) != 1 || m["message"] != want {
		t.Errorf("got %d %s, want 200 {\"message\": %q}", r.status, r.body, want)
	}
}

func TestAPI(t *testing.T) {
	db := pgtest.New(t)
	base := startAPI(t, db.DSN(), "2024-03-01")
	put := func(t *testing.T, user, body string) response {
		return do(t, http.MethodPut, base+"/hello/"+user, body)
	}

	t.Run("PUT then GET, both forms", func(t *testing.T) {
		if r := put(t, "julio", `{"dateOfBirth":"1984-06-28"}`); r.status != http.StatusNoContent || r.body != "" {
			t.Fatalf("PUT: %d %q, want 204 and no body", r.status, r.body)
		}
		wantMessage(t, do(t, "GET", base+"/hello/julio", ""), "Hello, julio! Your birthday is in 119 days")
		wantMessage(t, do(t, "GET", base+"/hello?username=julio", ""), "Hello, julio! Your birthday is in 119 days")
	})

	t.Run("PUT updates", func(t *testing.T) {
		for _, tt := range []struct{ dob, want string }{
			{"1990-03-01", "Hello, ana! Happy birthday!"},
			{"1990-03-02", "Hello, ana! Your birthday is in 1 day"},
			{"2000-02-29", "Hello, ana! Your birthday is in 364 days"},
		} {
			if r := put(t, "ana", `{"dateOfBirth":"`+tt.dob+`"}`); r.status != http.StatusNoContent {
				t.Fatalf("PUT %s: %d %s", tt.dob, r.status, r.body)
			}
			wantMessage(t, do(t, "GET", base+"/hello/ana", ""), tt.want)
		}
	})

	t.Run("usernames are case-sensitive and up to 255 letters", func(t *testing.T) {
		long := strings.Repeat("x", 255)
		if r := put(t, long, `{"dateOfBirth":"1984-06-28"}`); r.status != http.StatusNoContent {
			t.Fatalf("PUT 255 letters: %d %s", r.status, r.body)
		}
		wantMessage(t, do(t, "GET", base+"/hello/"+long, ""), "Hello, "+long+"! Your birthday is in 119 days")
		wantError(t, do(t, "GET", base+"/hello/JULIO", ""), http.StatusNotFound)
	})

	t.Run("unknown user is 404", func(t *testing.T) {
		wantError(t, do(t, "GET", base+"/hello/nobody", ""), http.StatusNotFound)
		wantError(t, do(t, "GET", base+"/hello?username=nobody", ""), http.StatusNotFound)
	})

	t.Run("invalid usernames are 400 on both verbs", func(t *testing.T) {
		for why, escaped := range map[string]string{
			"empty":          "",
			"digits":         "julio84",
			"unicode letter": "j%C3%BClio",
			"256 letters":    strings.Repeat("a", 256),
			"space":          "ju%20lio",
			"underscore":     "ju_lio",
			"slash":          "ju%2Flio",
			"two segments":   "ju/lio",
		} {
			t.Run(why, func(t *testing.T) {
				wantError(t, put(t, escaped, `{"dateOfBirth":"1984-06-28"}`), http.StatusBadRequest)
				wantError(t, do(t, "GET", base+"/hello/"+escaped, ""), http.StatusBadRequest)
				wantError(t, do(t, "GET", base+"/hello?username="+escaped, ""), http.StatusBadRequest)
			})
		}
		wantError(t, do(t, "GET", base+"/hello", ""), http.StatusBadRequest)
	})

	t.Run("invalid bodies are 400", func(t *testing.T) {
		for why, body := range map[string]string{
			"30 Feb":          `{"dateOfBirth":"2023-02-30"}`,
			"one-digit month": `{"dateOfBirth":"2023-2-01"}`,
			"today":           `{"dateOfBirth":"2024-03-01"}`,
			"tomorrow":        `{"dateOfBirth":"2024-03-02"}`,
			"timestamp":       `{"dateOfBirth":"1984-06-28T00:00:00Z"}`,
			"number":          `{"dateOfBirth":19840628}`,
			"object":          `{"dateOfBirth":{"y":1984}}`,
			"null":            `{"dateOfBirth":null}`,
			"missing":         `{}`,
			"misspelt field":  `{"dateofbirth":"1984-06-28"}`,
			"unknown field":   `{"dateOfBirth":"1984-06-28","name":"julio"}`,
			"array":           `["1984-06-28"]`,
			"malformed":       `{"dateOfBirth":"1984-06-28"`,
			"two objects":     `{"dateOfBirth":"1984-06-28"}{}`,
			"empty":           ``,
			"form-encoded":    `dateOfBirth=1984-06-28`,
		} {
			t.Run(why, func(t *testing.T) {
				wantError(t, put(t, "bob", body), http.StatusBadRequest)
			})
		}
		wantError(t, do(t, "GET", base+"/hello/bob", ""), http.StatusNotFound)
	})

	t.Run("body over 1 MiB is 413", func(t *testing.T) {
		body := `{"dateOfBirth":"1984-06-28","pad":"` + strings.Repeat("x", 1<<20) + `"}`
		wantError(t, put(t, "bob", body), http.StatusRequestEntityTooLarge)
		// Just under the limit the body is read, and rejected for its content.
		body = `{"dateOfBirth":"1984-06-28"}` + strings.Repeat(" ", 1<<20-30)
		if r := put(t, "bob", body); r.status != http.StatusNoContent {
			t.Errorf("PUT of a 1 MiB - 2 B body: %d %s, want 204", r.status, r.body)
		}
	})

	t.Run("wrong method is 405 with Allow", func(t *testing.T) {
		for _, tt := range []struct{ method, path, allow string }{
			{"DELETE", "/hello/julio", "GET, HEAD, PUT"},
			{"POST", "/hello/julio", "GET, HEAD, PUT"},
			{"PUT", "/hello", "GET, HEAD"},
			{"POST", "/healthz", "GET, HEAD"},
			{"DELETE", "/readyz", "GET, HEAD"},
		} {
			r := do(t, tt.method, base+tt.path, "")
			wantError(t, r, http.StatusMethodNotAllowed)
			if got := r.header.Get("Allow"); got != tt.allow {
				t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.allow)
			}
		}
	})

	t.Run("unknown path is 404", func(t *testing.T) {
		wantError(t, do(t, "GET", base+"/", ""), http.StatusNotFound)
		wantError(t, do(t, "GET", base+"/users/julio", ""), http.StatusNotFound)
	})

	t.Run("healthz and readyz", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz"} {
			if r := do(t, "GET", base+path, ""); r.status != http.StatusOK {
				t.Errorf("GET %s: %d %s, want 200", path, r.status, r.body)
			}
		}
	})
}
