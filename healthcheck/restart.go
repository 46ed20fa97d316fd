package healthcheck

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Restarter restarts the app service on one app instance. On AWS it sends
// `systemctl restart pgha-app.service` through SSM Run Command; locally it
// restarts the app process.
type Restarter interface {
	Restart(ctx context.Context, app App) error
}

// RestarterFunc adapts a function to Restarter (the local cluster's).
type RestarterFunc func(ctx context.Context, app App) error

// Restart calls f.
func (f RestarterFunc) Restart(ctx context.Context, app App) error { return f(ctx, app) }

// Store remembers when each app instance was last restarted, outside the
// checker's process, so the backoff holds across Lambda invocations. On AWS
// it is SSM Parameter Store under Settings.ParameterPath.
type Store interface {
	// LastRestart returns when app was last restarted, or the zero time if
	// never.
	LastRestart(ctx context.Context, app App) (time.Time, error)
	// RecordRestart remembers that app is restarted at t.
	RecordRestart(ctx context.Context, app App, t time.Time) error
}

// MemoryStore is a Store in memory, for the local cluster and tests. The
// zero value is ready to use.
type MemoryStore struct {
	mu sync.Mutex
	m  map[string]time.Time
}

// LastRestart implements Store.
func (s *MemoryStore) LastRestart(_ context.Context, app App) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[app.InstanceID], nil
}

// RecordRestart implements Store.
func (s *MemoryStore) RecordRestart(_ context.Context, app App, t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]time.Time{}
	}
	s.m[app.InstanceID] = t
	return nil
}

// RestartParameterName is the parameter under path that holds app's last
// restart, e.g. "/pgha/pgha/restarts/i-0123456789abcdef0".
func RestartParameterName(path string, app App) string { return path + "/" + app.InstanceID }

// FormatRestartTime is how a restart time is stored: RFC 3339 in UTC.
func FormatRestartTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// ParseRestartTime reads a stored restart time: RFC 3339, or Unix seconds
// for a parameter set by hand.
func ParseRestartTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("restart time %q is neither RFC 3339 nor Unix seconds", s)
	}
	return time.Unix(sec, 0).UTC(), nil
}
