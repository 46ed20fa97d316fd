// Package pgtest starts a real, throwaway PostgreSQL server for tests and
// benchmarks.
//
// Each server gets its own data directory in a fresh temporary directory, a
// free port on 127.0.0.1 and a Unix socket directory of its own, so servers
// never collide with each other or with a PostgreSQL installed on the machine.
// Durability is traded for speed (fsync=off): the data is meant to be thrown
// away.
//
// In a test:
//
//	db := pgtest.New(t) // skips, or fails under CI, if PostgreSQL is missing
//	pool, err := pgxpool.New(ctx, db.DSN())
//
// Elsewhere (a benchmark program), Launch and Close:
//
//	db, err := pgtest.Launch()
//	if err != nil { ... }
//	defer db.Close()
//
// The binaries (initdb, postgres) are taken from PATH, or else from the newest
// /usr/lib/postgresql/*/bin. PostgreSQL refuses to run as root, so when the
// caller is root the server runs as the "postgres" user.
package pgtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotInstalled is returned by Launch when no PostgreSQL binaries are found.
var ErrNotInstalled = errors.New("PostgreSQL (initdb, postgres) not found on PATH or under /usr/lib/postgresql/*/bin")

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 30 * time.Second

// Server is a throwaway PostgreSQL server. Its methods are not safe for
// concurrent use.
type Server struct {
	dir      string // temporary directory holding everything below
	bin      string // directory of the postgres binary
	port     int
	password string
	cred     *syscall.Credential // non-nil when running as the postgres user

	tls bool // ssl = on, with server.crt and server.key in the data directory

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// New starts a server for the test and stops it and removes its files when
// the test ends. When PostgreSQL is not installed it skips the test, or fails
// it when the environment variable CI is set.
func New(tb testing.TB) *Server {
	tb.Helper()
	s, err := Launch()
	if errors.Is(err, ErrNotInstalled) {
		if os.Getenv("CI") != "" {
			tb.Fatal(err)
		}
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// Launch initialises and starts a server. The caller must call Close.
func Launch() (*Server, error) { return launch("", "") }

// LaunchTLS is Launch with ssl = on (TLS 1.3 only, as the cluster's nodes
// run it), serving the PEM certificate and key given.
func LaunchTLS(certPEM, keyPEM string) (*Server, error) { return launch(certPEM, keyPEM) }

func launch(certPEM, keyPEM string) (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, password: rand.Text(), tls: certPEM != ""}
	if s.dir, err = os.MkdirTemp("", "pgtest-"); err != nil {
		return nil, err
	}
	if err := s.init(); err != nil {
		os.RemoveAll(s.dir)
		return nil, err
	}
	if s.tls {
		for name, content := range map[string]string{"server.crt": certPEM, "server.key": keyPEM} {
			path := filepath.Join(s.path("data"), name)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				s.Close()
				return nil, err
			}
			if s.cred != nil {
				if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
					s.Close()
					return nil, err
				}
			}
		}
	}
	if err := s.Start(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// DSN returns a connection URL for the superuser "postgres" (with its
// password) to the database "postgres" over TCP on 127.0.0.1.
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", s.password, s.port)
}

// Port returns the TCP port the server listens on; it stays the same across
// Stop and Start.
func (s *Server) Port() int { return s.port }

// Start starts the server again after Stop, on the same port and data. Launch
// and New call it; it returns once the server accepts connections.
func (s *Server) Start() error {
	if s.cmd != nil {
		return errors.New("pgtest: server already running")
	}
	log, err := os.OpenFile(s.path("postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	args := []string{
		"-D", s.path("data"),
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + s.dir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
	}
	if s.tls {
		args = append(args, "-c", "ssl=on", "-c", "ssl_min_protocol_version=TLSv1.3")
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Pdeathsig: a test binary that dies must not leave the server behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.done) }()

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		conn, err := pgconn.Connect(ctx, s.DSN())
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-s.done:
			s.cmd = nil
			return fmt.Errorf("postgres exited during start-up: %s", s.logTail())
		case <-ctx.Done():
			s.Stop()
			return fmt.Errorf("postgres not ready after %s: %w: %s", startTimeout, err, s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop shuts the server down ("fast" mode: clients are disconnected) and
// waits for it to exit, killing it if it takes more than 10 s. Its data stay
// for Start.
func (s *Server) Stop() error {
	if s.cmd == nil {
		return nil
	}
	defer func() { s.cmd = nil }()
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return fmt.Errorf("stop postgres: %w", err)
	}
	select {
	case <-s.done:
		return nil
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("postgres ignored SIGINT for 10 s and was killed")
	}
}

// Close stops the server and removes its files.
func (s *Server) Close() error {
	return errors.Join(s.Stop(), os.RemoveAll(s.dir))
}

// init runs initdb and picks the port.
func (s *Server) init() error {
	pwfile := s.path("password")
	if err := os.WriteFile(pwfile, []byte(s.password+"\n"), 0o600); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root needs a postgres user to run PostgreSQL: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, p := range []string{s.dir, pwfile} {
			if err := os.Chown(p, uid, gid); err != nil {
				return err
			}
		}
	}
	cmd := exec.Command(filepath.Join(s.bin, "initdb"),
		"-D", s.path("data"),
		"--username=postgres",
		"--pwfile="+pwfile,
		"--auth-local=trust",
		"--auth-host=scram-sha-256",
		"--encoding=UTF8",
		"--locale=C",
		"--no-sync",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	s.port = port
	return nil
}

func (s *Server) path(name string) string { return filepath.Join(s.dir, name) }

// logTail returns the end of the server log, for error messages.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.path("postgres.log"))
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}

// findBin returns the directory holding initdb and postgres: the one of
// initdb on PATH, or else the newest /usr/lib/postgresql/*/bin.
func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil {
			dir := filepath.Dir(p)
			if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
				return dir, nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(a) - version(b) })
	for _, dir := range slices.Backward(dirs) {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", ErrNotInstalled
}

// version returns the major version in /usr/lib/postgresql/VERSION/bin.
func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
