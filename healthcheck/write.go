package healthcheck

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrInRecovery means HAProxy routed the write check to a server in
// recovery: a replica, or a leader not yet promoted.
var ErrInRecovery = errors.New("server is in recovery (pg_is_in_recovery() is true)")

// WriteChecker checks that the cluster accepts writes.
type WriteChecker interface {
	// CheckWrites returns nil when a server that accepts writes answers.
	CheckWrites(ctx context.Context) error
}

// WriteCheckerFunc adapts a function to WriteChecker.
type WriteCheckerFunc func(ctx context.Context) error

// CheckWrites calls f.
func (f WriteCheckerFunc) CheckWrites(ctx context.Context) error { return f(ctx) }

// PasswordSource gives the health-check role's password. On AWS it reads
// the Secrets Manager secret; locally, the cluster's secret file.
type PasswordSource interface {
	Password(ctx context.Context) (string, error)
}

// StaticPassword is a PasswordSource that always gives the same password.
type StaticPassword string

// Password implements PasswordSource.
func (p StaticPassword) Password(context.Context) (string, error) { return string(p), nil }

// PGWriteChecker connects through HAProxy's write port with the
// least-privileged health-check role and checks pg_is_in_recovery() is
// false. pg_is_in_recovery() needs no privilege: the role needs only
// CONNECT on Database.
type PGWriteChecker struct {
	// Addrs are HAProxy write endpoints ("host:port"), tried in order
	// until one answers; the checker's own region's first.
	Addrs    []string
	User     string
	Database string
	Password PasswordSource
	// Timeout bounds each address's attempt. Default: DefaultWriteTimeout.
	Timeout time.Duration
	// TLS verifies PostgreSQL (its RootCAs: the cluster CA); the server
	// name is set per address. Default: nil, no TLS (tests only: the
	// cluster's pg_hba.conf refuses connections without it).
	TLS *tls.Config
}

// CheckWrites implements WriteChecker.
func (w *PGWriteChecker) CheckWrites(ctx context.Context) error {
	if len(w.Addrs) == 0 {
		return errors.New("no HAProxy address")
	}
	password, err := w.Password.Password(ctx)
	if err != nil {
		return fmt.Errorf("read the %s password: %w", w.User, err)
	}
	var errs []error
	for _, addr := range w.Addrs {
		err := w.check(ctx, addr, password)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

func (w *PGWriteChecker) check(ctx context.Context, addr, password string) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout())
	defer cancel()
	conn, err := w.connect(ctx, addr, password)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return fmt.Errorf("query %s: %w", addr, err)
	}
	if inRecovery {
		return fmt.Errorf("through %s: %w", addr, ErrInRecovery)
	}
	return nil
}

// ArchiveStatus implements ArchiveChecker: ArchiveQuery on the leader,
// through the first HAProxy address that answers.
func (w *PGWriteChecker) ArchiveStatus(ctx context.Context) (ArchiveStatus, error) {
	password, err := w.Password.Password(ctx)
	if err != nil {
		return ArchiveStatus{}, fmt.Errorf("read the %s password: %w", w.User, err)
	}
	var errs []error
	for _, addr := range w.Addrs {
		st, err := w.archive(ctx, addr, password)
		if err == nil {
			return st, nil
		}
		errs = append(errs, err)
	}
	return ArchiveStatus{}, errors.Join(errs...)
}

func (w *PGWriteChecker) archive(ctx context.Context, addr, password string) (ArchiveStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout())
	defer cancel()
	conn, err := w.connect(ctx, addr, password)
	if err != nil {
		return ArchiveStatus{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var current, last string
	var since, waiting float64
	var failing bool
	if err := conn.QueryRow(ctx, ArchiveQuery).Scan(&current, &last, &since, &failing, &waiting); err != nil {
		return ArchiveStatus{}, fmt.Errorf("query %s: %w", addr, err)
	}
	return NewArchiveStatus(current, last, since, waiting, failing), nil
}

func (w *PGWriteChecker) timeout() time.Duration {
	if w.Timeout <= 0 {
		return DefaultWriteTimeout
	}
	return w.Timeout
}

// connect logs in through HAProxy address addr as w.User.
func (w *PGWriteChecker) connect(ctx context.Context, addr, password string) (*pgx.Conn, error) {
	timeout := w.timeout()
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("HAProxy address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("HAProxy address %q: %w", addr, err)
	}
	// ParseConfig("") would read PG* environment variables; start from a
	// fixed DSN and set the fields that may hold any character.
	cfg, err := pgx.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	if w.TLS != nil {
		// verify-full: HAProxy passes TLS through, and every PostgreSQL
		// node's certificate names every HAProxy node's address.
		cfg.TLSConfig = w.TLS.Clone()
		cfg.TLSConfig.ServerName = host
	}
	cfg.Host, cfg.Port = host, uint16(port)
	cfg.User, cfg.Password, cfg.Database = w.User, password, w.Database
	cfg.ConnectTimeout = timeout
	cfg.Fallbacks = nil
	cfg.RuntimeParams["application_name"] = "pgha-healthcheck"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s as %s: %w", addr, w.User, err)
	}
	return conn, nil
}
