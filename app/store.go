package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrUnavailable means the database could not be reached, or stayed
// read-only, for the whole retry budget.
var ErrUnavailable = errors.New("database unavailable")

// migration creates the table. The advisory lock serialises app instances
// starting together: concurrent CREATE TABLE IF NOT EXISTS can otherwise fail
// on the catalog's unique index. The table lands in the first schema of the
// role's search_path, "$user" by default (see README.md, Grants).
const migration = `
SELECT pg_advisory_xact_lock(8294501);
CREATE TABLE IF NOT EXISTS users (
	username      text PRIMARY KEY CHECK (username ~ '^[A-Za-z]{1,255}$'),
	date_of_birth date NOT NULL
);`

// Retry timing. A Patroni switchover leaves writes failing for 5-6 s (the
// switchover drill, on the local cluster: the old leader archives its last
// WAL segment into both repositories before it stops, and the new one asks
// the archive for timeline history as it promotes), so the budget covers
// it with room; a request gives up with ErrUnavailable after about
// retryBudget plus one attempt, within the 15 s that SIGTERM gives
// in-flight requests.
const (
	retryBudget    = 10 * time.Second
	attemptTimeout = 2 * time.Second // one query on an acquired connection
	firstBackoff   = 50 * time.Millisecond
	maxBackoff     = 800 * time.Millisecond
)

// store keeps users and their dates of birth in PostgreSQL.
type store struct {
	pool *pgxpool.Pool
}

// migrate creates the table if it does not exist.
func (s *store) migrate(ctx context.Context) error {
	return s.retry(ctx, func(ctx context.Context, c *pgxpool.Conn) error {
		_, err := c.Exec(ctx, migration)
		return err
	})
}

// put saves or updates a user's date of birth. It is idempotent, so retrying
// it after a lost connection is safe.
func (s *store) put(ctx context.Context, username string, dob time.Time) error {
	return s.retry(ctx, func(ctx context.Context, c *pgxpool.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO users (username, date_of_birth) VALUES ($1, $2)
			ON CONFLICT (username) DO UPDATE SET date_of_birth = EXCLUDED.date_of_birth`,
			username, dob)
		return err
	})
}

// get returns a user's date of birth as midnight UTC, or ErrNotFound.
func (s *store) get(ctx context.Context, username string) (time.Time, error) {
	var dob time.Time
	err := s.retry(ctx, func(ctx context.Context, c *pgxpool.Conn) error {
		return c.QueryRow(ctx, `SELECT date_of_birth FROM users WHERE username = $1`, username).Scan(&dob)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, ErrNotFound
	}
	return dob, err
}

// writable reports whether a connection to a writable primary works now,
// without retrying.
func (s *store) writable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	var readOnly string
	if err := s.pool.QueryRow(ctx, "SHOW transaction_read_only").Scan(&readOnly); err != nil {
		return err
	}
	if readOnly != "off" {
		return errors.New("database is read-only")
	}
	return nil
}

// retry runs op on a pooled connection until it succeeds, fails for a reason
// that retrying cannot fix, or the retry budget is spent, backing off
// between attempts. Every op must be idempotent.
func (s *store) retry(ctx context.Context, op func(context.Context, *pgxpool.Conn) error) error {
	budget, cancel := context.WithTimeout(ctx, retryBudget)
	defer cancel()
	backoff := firstBackoff
	for {
		err := s.attempt(budget, op)
		if err == nil || !retryable(err) {
			return err
		}
		if ctx.Err() != nil { // the caller gave up: no point going on
			return ctx.Err()
		}
		select {
		case <-budget.Done():
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// attempt runs op once. Connecting is bounded by the budget and by the
// connect timeout per host; the query by attemptTimeout, so a host that
// vanishes mid-query cannot hang the request.
func (s *store) attempt(budget context.Context, op func(context.Context, *pgxpool.Conn) error) error {
	c, err := s.pool.Acquire(budget)
	if err != nil {
		return err
	}
	defer c.Release()
	ctx, cancel := context.WithTimeout(budget, attemptTimeout)
	defer cancel()
	err = op(ctx, c)
	if isReadOnly(err) {
		// The server is (still) a replica, or a leader finishing its
		// promotion. Drop the connection so the next attempt reconnects and
		// target_session_attrs=read-write can pick another host.
		c.Conn().Close(ctx)
	}
	return err
}

// retryable reports whether err may go away on another attempt.
//
// Errors from the server are retried only when they mean "not now": the
// server is read-only, shutting down, starting up or recovering, or the
// transaction lost a race. Any other error is not from the server but from
// the connection (refused, reset, timed out, closed by a failover); those are
// retried because every statement the app runs is idempotent.
func retryable(err error) bool {
	if errors.Is(err, pgx.ErrNoRows) {
		return false
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return true
	}
	switch pgErr.Code {
	case "25006", // read_only_sql_transaction: a replica, or a leader still promoting
		"57P01", // admin_shutdown
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now: starting up or in recovery
		"53300", // too_many_connections
		"40001", // serialization_failure
		"40P01": // deadlock_detected
		return true
	}
	return strings.HasPrefix(pgErr.Code, "08") // connection exceptions
}

func isReadOnly(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "25006"
}
