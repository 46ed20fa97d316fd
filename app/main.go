// Command hello is the hello birthday API: it saves users' dates of birth in
// PostgreSQL and tells them how many days are left until their birthday. It
// keeps answering while the database fails over underneath it. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // TIME_ZONE works on a base image without zoneinfo

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// shutdownTimeout bounds how long in-flight requests may take to finish after
// SIGTERM; a request gives up on the database well before.
const shutdownTimeout = 15 * time.Second

// defaultConnectTimeout applies per host when DATABASE_URL sets no
// connect_timeout, so a black-holed host costs 2 s, not the kernel's minutes.
const defaultConnectTimeout = 2 * time.Second

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(1)
	}
}

// run serves the API until ctx is done or SIGINT or SIGTERM arrives, then
// lets in-flight requests finish and returns.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(stdout, nil))

	if len(args) > 1 {
		return fmt.Errorf("no arguments expected, got %q: configure with environment variables", args[1:])
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg.pool) // connects lazily
	if err != nil {
		return err
	}
	defer pool.Close()

	srv := &server{store: &store{pool: pool}, now: time.Now, loc: cfg.loc, log: log}
	httpSrv := &http.Server{
		Handler:           srv.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", ":"+cfg.port)
	if err != nil {
		return err
	}
	c := cfg.pool.ConnConfig
	log.Info("listening", "addr", ln.Addr().String(), "db_hosts", hosts(c.Config),
		"db_user", c.User, "db_name", c.Database, "time_zone", cfg.loc.String())

	errc := make(chan error, 2)
	go func() {
		if err := httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	go func() {
		if err := srv.migrate(ctx); err != nil {
			errc <- err
		}
	}()

	var runErr error
	select {
	case runErr = <-errc:
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return errors.Join(runErr, httpSrv.Shutdown(shutdownCtx))
}

// migrate creates the table, waiting as long as it takes for the database to
// come up (the app may start before the cluster), and then marks the server
// ready. It gives up only on errors retrying cannot fix, such as missing
// grants.
func (s *server) migrate(ctx context.Context) error {
	for {
		err := s.store.migrate(ctx)
		switch {
		case err == nil:
			s.migrated.Store(true)
			s.log.Info("database migrated")
			return nil
		case ctx.Err() != nil:
			return nil
		case !errors.Is(err, ErrUnavailable):
			return fmt.Errorf("migrate database: %w", err)
		}
		s.log.Warn("database unavailable, retrying the migration", "err", err)
	}
}

type config struct {
	port string
	pool *pgxpool.Config
	loc  *time.Location
}

// loadConfig reads the environment:
//
//   - DATABASE_URL (required): a libpq/pgx URL or keyword/value string, with
//     one host or several;
//   - DATABASE_PASSWORD_FILE or DATABASE_PASSWORD (optional): the password,
//     so it need not sit in DATABASE_URL;
//   - PORT: the HTTP port, default 5000;
//   - TIME_ZONE: the IANA zone in which "today" is taken, default UTC.
func loadConfig(getenv func(string) string) (config, error) {
	cfg := config{port: getenv("PORT"), loc: time.UTC}
	if cfg.port == "" {
		cfg.port = "5000"
	}
	if n, err := strconv.Atoi(cfg.port); err != nil || n < 0 || n > 65535 {
		return config{}, fmt.Errorf("PORT must be a port number, got %q", cfg.port)
	}
	if tz := getenv("TIME_ZONE"); tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return config{}, fmt.Errorf("TIME_ZONE: %w", err)
		}
		cfg.loc = loc
	}

	url := getenv("DATABASE_URL")
	if url == "" {
		return config{}, errors.New("DATABASE_URL is required, e.g. postgres://app@127.0.0.1:5432/postgres")
	}
	pool, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message quotes the connection string, password included.
		return config{}, errors.New("DATABASE_URL is not a valid connection string")
	}
	password, err := readPassword(getenv)
	if err != nil {
		return config{}, err
	}
	if password != "" {
		pool.ConnConfig.Password = password
	}
	if pool.ConnConfig.ConnectTimeout == 0 {
		pool.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	// The app writes: unless the URL asks otherwise, skip hosts that are
	// read-only (a replica, a leader still promoting) and try the next one.
	if pool.ConnConfig.ValidateConnect == nil {
		pool.ConnConfig.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsReadWrite
	}
	cfg.pool = pool
	return cfg, nil
}

// readPassword returns the password from DATABASE_PASSWORD_FILE (trailing
// newline trimmed) or DATABASE_PASSWORD, or "" when neither is set.
func readPassword(getenv func(string) string) (string, error) {
	file, plain := getenv("DATABASE_PASSWORD_FILE"), getenv("DATABASE_PASSWORD")
	switch {
	case file != "" && plain != "":
		return "", errors.New("set DATABASE_PASSWORD_FILE or DATABASE_PASSWORD, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("DATABASE_PASSWORD_FILE: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return plain, nil
}

// hosts lists the database hosts in connection order, for the log.
func hosts(c pgconn.Config) []string {
	hs := []string{net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))}
	for _, f := range c.Fallbacks {
		hs = append(hs, net.JoinHostPort(f.Host, strconv.Itoa(int(f.Port))))
	}
	return hs
}
