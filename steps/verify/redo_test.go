package verify

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// oneServer is a server with a small table, used as both blue and green
// (no subscription: re-checks wait a fixed pause).
func oneServer(t *testing.T) (*pgtest.Cluster, Connector, []Table) {
	t.Helper()
	c := pgtest.StartCluster(t, 17)
	c.CreateDatabase(t, "app")
	c.Exec(t, "app", `CREATE TABLE public.t (id int PRIMARY KEY, note text);
		INSERT INTO public.t SELECT g, 'row ' || g FROM generate_series(1, 1000) g`)
	connect := func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, c.DSN("app")) }
	return c, connect, []Table{{Schema: "public", Name: "t", Key: []string{"id"}}}
}

// TestRunRedoBounded: a server that cuts the comparison each time it has
// started (it crashes on it, or keeps restarting) does not have verify start
// over forever, even when Ride says to wait each time: the connections open,
// then every verify session is terminated, and the eleventh cut gives up,
// naming the count and the cause.
func TestRunRedoBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts a server")
	}
	c, connect, tables := oneServer(t)
	admin := c.Conn(t, "app")
	cuts := 0
	_, err := Run(context.Background(), connect, connect, tables, Options{
		Workers: 1,
		Ride: func(ctx context.Context, err error) error {
			if err == nil {
				// The connections are open: cut them, as a crash would.
				// (The timeout waits until the sessions have ended.)
				if _, err := admin.Exec(ctx, `SELECT pg_catalog.pg_terminate_backend(pid, 10000)
					FROM pg_catalog.pg_stat_activity WHERE application_name = 'pgshift verify'`); err != nil {
					t.Errorf("terminate the verify sessions: %v", err)
				}
				return nil
			}
			if cuts++; !pg.IsTransient(err) || cuts > 3*maxRedos {
				return err // the cap did not hold
			}
			return nil
		},
	})
	if err == nil || !pg.IsTransient(err) || !strings.Contains(err.Error(), "cut short by a lost connection 11 times, giving up") {
		t.Fatalf("Run with its sessions terminated each time: %v; want it to give up after 11 cuts, naming the count and the cause", err)
	}
	if cuts != maxRedos+1 {
		t.Errorf("Ride called with %d cuts, want %d", cuts, maxRedos+1)
	}
}

// TestRunReconnectionsNotCounted: attempts whose connections do not open (a
// server that is down) are Ride's to bound, not the redo cap's: many more of
// them than the cap end with Ride's own error.
func TestRunReconnectionsNotCounted(t *testing.T) {
	connect := func(ctx context.Context) (*pgx.Conn, error) {
		return pgx.Connect(ctx, "postgres://postgres@127.0.0.1:1/app?sslmode=disable&connect_timeout=10")
	}
	bound := errors.New("past the test's bound")
	attempts := 0
	_, err := Run(context.Background(), connect, connect, []Table{{Schema: "public", Name: "t"}}, Options{
		Ride: func(ctx context.Context, err error) error {
			if err == nil {
				t.Errorf("Ride told both sides answer, with no server")
				return nil
			}
			if !pg.IsTransient(err) {
				return err
			}
			if attempts++; attempts > 3*maxRedos {
				return bound
			}
			return nil
		},
	})
	if !errors.Is(err, bound) {
		t.Fatalf("Run with a server down for %d reconnection attempts: %v; want Ride's bound to end it, not the redo cap", 3*maxRedos, err)
	}
}

// TestRunWaitsOutALongOutage: a server down for far more reconnection
// attempts than the redo cap, but within Ride's bound, is waited out, and
// the verification then compares every row.
func TestRunWaitsOutALongOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts a server")
	}
	c, connect, tables := oneServer(t)
	c.Stop(t)
	var mu sync.Mutex
	attempts, want := 0, 3*maxRedos
	enough := make(chan struct{})
	type result struct {
		rep *Report
		err error
	}
	res := make(chan result, 1)
	go func() {
		rep, err := Run(context.Background(), connect, connect, tables, Options{
			Workers: 1,
			Ride: func(ctx context.Context, err error) error {
				if err == nil || !pg.IsTransient(err) {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				if attempts++; attempts == want {
					close(enough)
				}
				if attempts > 100*want { // the test's bound: far past
					return err
				}
				time.Sleep(20 * time.Millisecond)
				return nil
			},
		})
		res <- result{rep, err}
	}()
	select {
	case <-enough:
	case r := <-res:
		c.Start(t)
		t.Fatalf("Run with the server down returned after %d reconnection attempts, before %d: %v", attempts, want, r.err)
	}
	c.Start(t)
	r := <-res
	if r.err != nil {
		t.Fatalf("Run with the server down for over %d reconnection attempts, then back: %v", want, r.err)
	}
	if !r.rep.OK() || r.rep.Rows() != 1000 {
		t.Errorf("after the outage: %d rows compared, ok %v, want 1000 rows and no difference:\n%s", r.rep.Rows(), r.rep.OK(), r.rep.Error())
	}
	mu.Lock()
	t.Logf("waited out %d reconnection attempts", attempts)
	mu.Unlock()
}
