package lab

import (
	"fmt"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestLoadThroughPgBouncer runs a load of several back-to-back pgbench runs
// through PgBouncer and checks what it reports against the database: every
// committed transaction inserted one history row, none failed.
func TestLoadThroughPgBouncer(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	c := pgtest.StartCluster(t, 13)
	c.CreateDatabase(t, "app")
	bin := pgtest.RequireClientBin(t, "pgbench")
	if out, err := exec.Command(bin, "-i", "-q", "-s", "1", c.DSN("app")).CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	b := pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{Databases: map[string]string{
		"app": fmt.Sprintf("host=127.0.0.1 port=%d dbname=app", c.Port),
	}})

	load, err := StartLoad(t, LoadOptions{Host: b.Host, Port: b.Port, DB: "app", Clients: 2, Threads: 1, Rate: 100,
		Dir: t.TempDir(), Segment: 2 * time.Second, Overlap: 500 * time.Millisecond, Repeat: true})
	if err != nil {
		t.Fatal(err)
	}
	// Into the second run, however slowly the first one starts.
	waitSegments(t, load, 2)
	res := load.Stop()
	if len(res.Problems) > 0 || res.Failed != 0 {
		t.Fatalf("load problems %q, %d failed", res.Problems, res.Failed)
	}
	if len(res.Segments) < 2 {
		t.Fatalf("%d pgbench runs, want at least 2 back to back", len(res.Segments))
	}
	rows, _ := strconv.Atoi(c.Scalar(t, "app", "SELECT count(*) FROM pgbench_history"))
	if res.Tx.Committed == 0 || rows != res.Tx.Committed {
		t.Fatalf("the logs count %d committed transactions, pgbench_history holds %d rows", res.Tx.Committed, rows)
	}
	perClient := 0
	for _, n := range res.Tx.PerClient {
		perClient += n
	}
	if perClient != res.Tx.Committed || res.Tx.MaxLatency <= 0 {
		t.Fatalf("per client %v for %d committed; longest latency %s", res.Tx.PerClient, res.Tx.Committed, res.Tx.MaxLatency)
	}
	if res.EndedEarly {
		t.Fatal("a repeating load reported that it ended before Stop")
	}

	// A single run that ends before Stop says so: the span was not all under load.
	once, err := StartLoad(t, LoadOptions{Host: b.Host, Port: b.Port, DB: "app", Clients: 1, Rate: 20,
		Dir: t.TempDir(), Segment: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waitSegments(t, once, 1)
	once.mu.Lock()
	first := once.segs[0]
	once.mu.Unlock()
	select {
	case <-first.exited:
	case <-time.After(time.Minute):
		t.Fatal("pgbench -T 1 has not ended after a minute")
	}
	// The load's own goroutine notes the early end; give it the moment.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		once.mu.Lock()
		late := once.stoppedLate
		once.mu.Unlock()
		if late {
			break
		}
	}
	if res := once.Stop(); !res.EndedEarly || len(res.Segments) != 1 || len(res.Problems) > 0 {
		t.Fatalf("single run stopped after its end: ended early %v, %d runs, problems %q", res.EndedEarly, len(res.Segments), res.Problems)
	}
}

// waitSegments waits until the load has started n pgbench runs.
func waitSegments(t *testing.T, l *Load, n int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		l.mu.Lock()
		got := len(l.segs)
		l.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pgbench runs started after a minute, want %d", got, n)
		}
	}
}
