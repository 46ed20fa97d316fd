package drill

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Table is the table the writer fills, in the app's database.
const Table = "pgha_drill"

// Writer defaults.
const (
	DefaultInterval = 20 * time.Millisecond
	DefaultTimeout  = time.Second
)

// Attempt is one insert the writer tried.
type Attempt struct {
	Seq   int64
	Start time.Time
	End   time.Time
	Err   error // nil: the commit was acknowledged
	// Warning is set when the commit was acknowledged with a WARNING, such
	// as PostgreSQL's "canceling wait for synchronous replication".
	Warning string
}

// Acked reports whether the commit returned OK.
func (a Attempt) Acked() bool { return a.Err == nil }

// WriterConfig configures a Writer.
type WriterConfig struct {
	// Addrs are the HAProxy write ports, "ip:port", tried all at once on
	// every (re)connection; the first connection made is used.
	Addrs []string
	// User, Password and Database log in through HAProxy.
	User, Password, Database string
	// CAFile is the cluster CA's certificate: the writer connects with
	// sslmode=verify-full, as the app does. Default: "", without TLS,
	// which the cluster's pg_hba.conf refuses.
	CAFile string
	// Interval between the starts of two attempts. Default: DefaultInterval.
	Interval time.Duration
	// Timeout bounds each attempt, connection included, so that a
	// black-holed leader cannot stall the writer. Default: DefaultTimeout.
	Timeout time.Duration
	// Table is the table written. Default: Table.
	Table string
	// Dial, when set, opens the connections (from inside a node, say).
	// Default: from this host.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (cfg WriterConfig) table() string {
	if cfg.Table == "" {
		return Table
	}
	return cfg.Table
}

// Writer inserts sequential rows into Table, one attempt per interval, and
// records every attempt.
type Writer struct {
	cfg    WriterConfig
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	attempts []Attempt
}

// Prepare creates Table if needed and empties it, through the first address
// that accepts the statement, retrying until ctx ends.
func Prepare(ctx context.Context, cfg WriterConfig) error {
	var last error
	for {
		if last = prepareOnce(ctx, cfg); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("prepare %s: %w", Table, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func prepareOnce(ctx context.Context, cfg WriterConfig) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := connectAny(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+cfg.table()+` (
	seq bigint PRIMARY KEY,
	at timestamptz NOT NULL DEFAULT now()
);
TRUNCATE `+cfg.table())
	return err
}

// StartWriter starts writing; Stop ends it.
func StartWriter(ctx context.Context, cfg WriterConfig) *Writer {
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Writer{cfg: cfg, cancel: cancel, done: make(chan struct{})}
	go w.loop(ctx)
	return w
}

// Stop ends the writer and returns every attempt, in order.
func (w *Writer) Stop() []Attempt {
	w.cancel()
	<-w.done
	return w.Attempts()
}

// Attempts returns the attempts so far.
func (w *Writer) Attempts() []Attempt {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Attempt(nil), w.attempts...)
}

func (w *Writer) loop(ctx context.Context) {
	defer close(w.done)
	var (
		conn    *pgx.Conn
		notices noticeBox
	)
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	tick := time.NewTicker(w.cfg.Interval)
	defer tick.Stop()
	for seq := int64(1); ; seq++ {
		a := Attempt{Seq: seq, Start: time.Now()}
		actx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
		var err error
		if conn == nil {
			conn, err = connectAny(actx, w.cfg, &notices)
		}
		if err == nil {
			notices.take()
			_, err = conn.Exec(actx, `INSERT INTO `+w.cfg.table()+` (seq) VALUES ($1)`, pgx.QueryExecModeSimpleProtocol, seq)
			a.Warning = notices.take()
		}
		cancel()
		a.End = time.Now()
		if ctx.Err() != nil && err != nil {
			return // stopped mid-attempt: not a failure of the cluster
		}
		a.Err = err
		if err != nil && conn != nil {
			// A timed-out or failed connection is closed and replaced: it
			// may point at a demoted or dead leader.
			conn.Close(context.Background())
			conn = nil
		}
		w.mu.Lock()
		w.attempts = append(w.attempts, a)
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// noticeBox collects the notices a connection receives.
type noticeBox struct {
	mu  sync.Mutex
	msg []string
}

func (b *noticeBox) add(n *pgconn.Notice) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msg = append(b.msg, n.Severity+": "+n.Message)
}

// take returns the notices since the last call, joined.
func (b *noticeBox) take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.Join(b.msg, "; ")
	b.msg = nil
	return s
}

// connectAny connects to every address at once and returns the first
// connection made, closing the others.
func connectAny(ctx context.Context, cfg WriterConfig, notices *noticeBox) (*pgx.Conn, error) {
	type result struct {
		conn *pgx.Conn
		err  error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, len(cfg.Addrs))
	for _, addr := range cfg.Addrs {
		go func() {
			pc, err := pgx.ParseConfig(dsn(cfg, addr))
			if err != nil {
				results <- result{err: err}
				return
			}
			if cfg.Dial != nil {
				pc.DialFunc = cfg.Dial
			}
			if notices != nil {
				pc.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices.add(n) }
			}
			conn, err := pgx.ConnectConfig(ctx, pc)
			results <- result{conn, err}
		}()
	}
	var (
		winner *pgx.Conn
		errs   []error
	)
	for range cfg.Addrs {
		r := <-results
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case winner == nil:
			winner = r.conn
			cancel() // the others give up
		default:
			r.conn.Close(context.Background())
		}
	}
	if winner != nil {
		return winner, nil
	}
	return nil, errors.Join(errs...)
}

func dsn(cfg WriterConfig, addr string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(cfg.User, cfg.Password),
		Host:     addr,
		Path:     "/" + cfg.Database,
		RawQuery: "sslmode=disable&application_name=pgha-drill",
	}
	if cfg.CAFile != "" {
		u.RawQuery = "sslmode=verify-full&sslrootcert=" + url.QueryEscape(cfg.CAFile) + "&application_name=pgha-drill"
	}
	return u.String()
}
