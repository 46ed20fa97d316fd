package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// maxBodyBytes caps request bodies.
const maxBodyBytes = 1 << 20

// Request errors, answered with a 4xx.
var (
	ErrBadJSON      = errors.New(`body must be a JSON object {"dateOfBirth": "YYYY-MM-DD"}`)
	ErrBodyTooLarge = fmt.Errorf("body exceeds %d bytes", maxBodyBytes)
	ErrNoRoute      = errors.New("not found")
	ErrNotMigrated  = errors.New("database not ready: migration pending")
)

// server answers the hello API.
type server struct {
	store    *store
	now      func() time.Time
	loc      *time.Location // "today" is the date in this time zone
	log      *slog.Logger
	migrated atomic.Bool // set once the table exists
}

// routes returns the service's handler: every route is here.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello/{username...}", s.handleGetHello)
	mux.HandleFunc("PUT /hello/{username...}", s.handlePutHello)
	mux.HandleFunc("GET /hello", s.handleGetHello) // ?username=, the original design's form
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)

	// The mux's own 404 and 405 answers are plain text: answer in JSON.
	mux.Handle("/hello/{username...}", methodNotAllowed("GET, HEAD, PUT"))
	mux.Handle("/hello", methodNotAllowed("GET, HEAD"))
	mux.Handle("/healthz", methodNotAllowed("GET, HEAD"))
	mux.Handle("/readyz", methodNotAllowed("GET, HEAD"))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, ErrNoRoute)
	})
	return s.logRequests(mux)
}

type helloResponse struct {
	Message string `json:"message"`
}

type putHelloRequest struct {
	DateOfBirth string `json:"dateOfBirth"`
}

// UnmarshalJSON is stricter than encoding/json, which matches keys
// case-insensitively and lets fields be missing or null: the body must be an
// object with exactly the key "dateOfBirth" and a string value.
func (p *putHelloRequest) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return fmt.Errorf("%w: not a JSON object", ErrBadJSON)
	}
	for k := range m {
		if k != "dateOfBirth" {
			return fmt.Errorf("%w: unknown field %q", ErrBadJSON, k)
		}
	}
	raw, ok := m["dateOfBirth"]
	if !ok {
		return fmt.Errorf("%w: dateOfBirth is missing", ErrBadJSON)
	}
	if err := json.Unmarshal(raw, &p.DateOfBirth); err != nil || string(raw) == "null" {
		return fmt.Errorf("%w: dateOfBirth must be a string", ErrBadJSON)
	}
	return nil
}

func (s *server) handleGetHello(w http.ResponseWriter, r *http.Request) {
	username := r.PathValue("username")
	if r.URL.Path == "/hello" {
		username = r.URL.Query().Get("username")
	}
	if err := checkUsername(username); err != nil {
		s.writeError(w, r, err)
		return
	}
	if !s.migrated.Load() {
		s.writeError(w, r, ErrNotMigrated)
		return
	}
	dob, err := s.store.get(r.Context(), username)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	days := daysUntilBirthday(dob, dateIn(s.now(), s.loc))
	encode(w, http.StatusOK, helloResponse{Message: greeting(username, days)})
}

func (s *server) handlePutHello(w http.ResponseWriter, r *http.Request) {
	username := r.PathValue("username")
	if err := checkUsername(username); err != nil {
		s.writeError(w, r, err)
		return
	}
	var req putHelloRequest
	if err := decode(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	dob, err := parseDateOfBirth(req.DateOfBirth, dateIn(s.now(), s.loc))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !s.migrated.Load() {
		s.writeError(w, r, ErrNotMigrated)
		return
	}
	if err := s.store.put(r.Context(), username, dob); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	encode(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if !s.migrated.Load() {
		s.writeError(w, r, ErrNotMigrated)
		return
	}
	if err := s.store.writable(r.Context()); err != nil {
		s.log.Warn("not ready", "err", err)
		s.writeError(w, r, ErrUnavailable)
		return
	}
	encode(w, http.StatusOK, map[string]string{"status": "ready"})
}

// methodNotAllowed answers 405 for a route's other methods.
func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		encode(w, http.StatusMethodNotAllowed, errorResponse{Error: "method " + r.Method + " not allowed"})
	})
}

type errorResponse struct {
	Error string `json:"error"`
}

// writeError answers with the status err stands for and {"error": "..."}.
// Unexpected errors are logged and answered with a generic 500.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusInternalServerError, "internal error"
	switch {
	case errors.Is(err, ErrInvalidUsername), errors.Is(err, ErrInvalidDate),
		errors.Is(err, ErrDateNotPast), errors.Is(err, ErrBadJSON):
		status, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrNoRoute):
		status, msg = http.StatusNotFound, err.Error()
	case errors.Is(err, ErrBodyTooLarge):
		status, msg = http.StatusRequestEntityTooLarge, err.Error()
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrNotMigrated):
		status, msg = http.StatusServiceUnavailable, ErrUnavailable.Error()
		s.log.Warn("database unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
	case r.Context().Err() != nil:
		status, msg = 499, "request canceled" // the client went away; nobody reads this
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	encode(w, status, errorResponse{Error: msg})
}

// encode writes v as a JSON response.
func encode(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// decode reads a request body of at most maxBodyBytes holding exactly one
// JSON value into v. Unknown fields are rejected.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("data after the JSON object")
	}
	var tooLarge *http.MaxBytesError
	var wrongType *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge):
		return ErrBodyTooLarge
	case errors.Is(err, ErrBadJSON):
		return err
	case errors.As(err, &wrongType):
		return fmt.Errorf("%w: %s must be a %s", ErrBadJSON, wrongType.Field, wrongType.Type)
	case err == io.EOF:
		return fmt.Errorf("%w: the body is empty", ErrBadJSON)
	case err != nil:
		return fmt.Errorf("%w: %w", ErrBadJSON, err)
	}
	return nil
}

// logRequests logs each request's method, path, status and latency.
func (s *server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		s.log.Info("request",
			"method", r.Method,
			"path", r.URL.Path,
			"status", rec.status,
			"latency_ms", float64(time.Since(start).Microseconds())/1000,
		)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}
