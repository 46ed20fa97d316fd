package pgtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/internal/pgtest"
)

func TestServerStopStart(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)

	exec := func(sql string) error {
		conn, err := pgx.Connect(ctx, db.DSN())
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	if err := db.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := exec("SELECT 1"); err == nil {
		t.Fatal("query succeeded while the server was stopped")
	}

	port := db.Port()
	if err := db.Start(); err != nil {
		t.Fatal(err)
	}
	if db.Port() != port {
		t.Errorf("port changed across restart: %d, then %d", port, db.Port())
	}
	conn, err := pgx.Connect(ctx, db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT n FROM kept").Scan(&n); err != nil || n != 1 {
		t.Fatalf("data after restart: n=%d, err=%v; want 1, nil", n, err)
	}
}

func TestPasswordRequiredOverTCP(t *testing.T) {
	db := pgtest.New(t)
	cfg, err := pgx.ParseConfig(db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = "wrong"
	if conn, err := pgx.ConnectConfig(context.Background(), cfg); err == nil {
		conn.Close(context.Background())
		t.Fatal("connected with a wrong password")
	}
}
