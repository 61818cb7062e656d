package pg

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// A worker that failed and recovered is watched over a window once; a
// second look that finds the same worker and no new error reuses that
// window, and a restarted worker is watched again.
func TestCheckApplyWorkerReusesASteadyWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(t, "app")
	green.CreateDatabase(t, "app")
	for _, c := range cs {
		c.Exec(t, "app", "CREATE TABLE t (id int PRIMARY KEY)")
	}
	blue.Exec(t, "app", "CREATE PUBLICATION p FOR TABLE t")
	green.Exec(t, "app", fmt.Sprintf(`CREATE SUBSCRIPTION s CONNECTION 'host=127.0.0.1 port=%d user=postgres dbname=app' PUBLICATION p WITH (copy_data = false)`, blue.Port))
	ctx := context.Background()
	conn := green.Conn(t, "app")
	sub, err := ReadSubscription(ctx, conn, "s")
	if err != nil || !sub.Exists {
		t.Fatalf("ReadSubscription = %+v, %v", sub, err)
	}
	// A conflict: the apply worker (no initial copy: its table-sync worker
	// would meet the conflict instead) fails on id 1 until green's row is gone.
	green.Exec(t, "app", "INSERT INTO t VALUES (1)")
	blue.Exec(t, "app", "INSERT INTO t VALUES (1)")
	waitFor(t, "an apply error counted", func() bool {
		_, n, err := WorkerErrors(ctx, conn, sub.OID)
		return err == nil && n > 0
	})
	green.Exec(t, "app", "DELETE FROM t")
	waitFor(t, "blue's row applied", func() bool { return green.Scalar(t, "app", "SELECT count(*) FROM t") == "1" })

	const window = 3 * time.Second
	first, err := CheckApplyWorker(ctx, conn, sub, window, ApplyWorkerHealth{})
	if err != nil {
		t.Fatal(err)
	}
	if first.Failing() || first.Watched < window || first.SteadySince.IsZero() {
		t.Fatalf("first look after the recovered error = %+v, want steady over a window of %s", first, window)
	}
	again, err := CheckApplyWorker(ctx, conn, sub, window, first)
	if err != nil {
		t.Fatal(err)
	}
	if again.Failing() || !again.SteadySince.Equal(first.SteadySince) || again.Watched < first.Watched {
		t.Fatalf("second look = %+v, want the first window reused (steady since %s)", again, first.SteadySince)
	}

	// The worker restarts: the earlier window says nothing of the new one.
	green.Exec(t, "app", fmt.Sprintf("SELECT pg_terminate_backend(%d)", first.PID))
	waitFor(t, "a new apply worker", func() bool {
		pid, err := Scalar[int32](ctx, conn, applyWorkerSQL, sub.OID)
		return err == nil && pid != 0 && pid != first.PID
	})
	restarted, err := CheckApplyWorker(ctx, conn, sub, window, first)
	if err != nil {
		t.Fatal(err)
	}
	if restarted.SteadySince.Equal(first.SteadySince) || restarted.Watched < window {
		t.Fatalf("look after the worker restarted = %+v, want a fresh window of %s", restarted, window)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
