package pg

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgshift/pgshift/internal/pgtest"
)

func TestReadOnlyFreeze(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	c := pgtest.StartCluster(t, 13)
	c.CreateDatabase(t, "shop")
	c.CreateDatabase(t, "archive")
	c.Exec(t, "shop", "CREATE TABLE t (x int)")
	ctx := context.Background()
	admin := c.Conn(t, "postgres")

	// A session open before the freeze: ALTER DATABASE does not reach it.
	before := c.Conn(t, "shop")

	if st, err := ReadOnlyFrozen(ctx, admin, "shop"); err != nil || st.Set {
		t.Fatalf("ReadOnlyFrozen before the freeze = %+v, %v", st, err)
	}
	if err := FreezeReadOnly(ctx, admin, "shop"); err != nil {
		t.Fatalf("FreezeReadOnly: %v", err)
	}
	st, err := ReadOnlyFrozen(ctx, admin, "shop")
	if err != nil || !st.ReadOnly {
		t.Fatalf("ReadOnlyFrozen after the freeze = %+v, %v", st, err)
	}
	if err := FreezeReadOnly(ctx, admin, "shop"); err != nil {
		t.Fatalf("second FreezeReadOnly: %v", err)
	}

	t.Run("new sessions cannot write", func(t *testing.T) {
		s := c.Conn(t, "shop")
		_, err := s.Exec(ctx, "INSERT INTO t VALUES (1)")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
			t.Fatalf("INSERT in a new session = %v, want read_only_sql_transaction (25006)", err)
		}
		// pgshift's own writes on a frozen database say READ WRITE.
		if _, err := s.Exec(ctx, "BEGIN READ WRITE; INSERT INTO t VALUES (2); COMMIT"); err != nil {
			t.Fatalf("BEGIN READ WRITE on the frozen database: %v", err)
		}
	})

	t.Run("sessions from before keep writing", func(t *testing.T) {
		if _, err := before.Exec(ctx, "INSERT INTO t VALUES (3)"); err != nil {
			t.Fatalf("INSERT in a session opened before the freeze: %v", err)
		}
	})

	t.Run("wait for writers", func(t *testing.T) {
		if _, err := before.Exec(ctx, "BEGIN; INSERT INTO t VALUES (4)"); err != nil {
			t.Fatal(err)
		}
		// One poll, then a wait past the deadline: a deadline that cut the
		// query itself would close the connection it runs on.
		waiter := c.Conn(t, "postgres")
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := WaitForWriters(wctx, waiter, "shop", 5*time.Second)
		cancel()
		pid := before.PgConn().PID()
		if err == nil || !strings.Contains(err.Error(), "still in write transactions") || !strings.Contains(err.Error(), strconv.FormatUint(uint64(pid), 10)) {
			t.Fatalf("WaitForWriters with a write transaction open = %v, want it to name pid %d", err, pid)
		}
		if _, err := before.Exec(ctx, "COMMIT"); err != nil {
			t.Fatal(err)
		}
		wctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := WaitForWriters(wctx, admin, "shop", 10*time.Millisecond); err != nil {
			t.Fatalf("WaitForWriters after COMMIT: %v", err)
		}
	})

	t.Run("terminate sessions", func(t *testing.T) {
		kept, err := pgx.Connect(ctx, c.DSN("shop")+"&application_name=pgshift-test")
		if err != nil {
			t.Fatal(err)
		}
		defer kept.Close(ctx)
		n, err := TerminateSessions(ctx, admin, "shop", "pgshift-test")
		if err != nil {
			t.Fatal(err)
		}
		if n < 1 {
			t.Errorf("TerminateSessions ended %d sessions, want the one opened before the freeze", n)
		}
		if _, err := before.Exec(ctx, "SELECT 1"); err == nil {
			t.Errorf("the session opened before the freeze survived TerminateSessions")
		}
		if _, err := kept.Exec(ctx, "SELECT 1"); err != nil {
			t.Errorf("the session named pgshift-test was ended: %v", err)
		}
	})

	t.Run("unfreeze", func(t *testing.T) {
		if err := UnfreezeReadOnly(ctx, admin, "shop"); err != nil {
			t.Fatal(err)
		}
		if st, _ := ReadOnlyFrozen(ctx, admin, "shop"); st.Set {
			t.Fatalf("still frozen after UnfreezeReadOnly: %+v", st)
		}
		if err := UnfreezeReadOnly(ctx, admin, "shop"); err != nil {
			t.Fatalf("second UnfreezeReadOnly: %v", err)
		}
		s := c.Conn(t, "shop")
		if _, err := s.Exec(ctx, "INSERT INTO t VALUES (5)"); err != nil {
			t.Fatalf("INSERT after the unfreeze: %v", err)
		}
	})

	t.Run("owner's own read-only setting is seen and kept", func(t *testing.T) {
		c.Exec(t, "postgres", "ALTER DATABASE archive SET default_transaction_read_only = true")
		st, err := ReadOnlyFrozen(ctx, admin, "archive")
		if err != nil || !st.ReadOnly || st.Value != "true" {
			t.Fatalf("ReadOnlyFrozen of a database the owner made read-only = %+v, %v", st, err)
		}
		if err := FreezeReadOnly(ctx, admin, "archive"); err != nil {
			t.Fatal(err)
		}
		if st, _ := ReadOnlyFrozen(ctx, admin, "archive"); st.Value != "true" {
			t.Errorf("FreezeReadOnly rewrote the owner's setting: %+v", st)
		}
	})
}
