package snapcopy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestKillDuringSnapshotCopy runs the real pgshift binary with
// initial_copy.method: snapshot under pgbench writes, kills it with SIGKILL
// while the copy is half done, and applies again: the second run must see
// the dead copy, start over from a new snapshot, and leave green with
// exactly blue's rows once replication has caught up.
func TestKillDuringSnapshotCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	bin := buildPgshift(t)
	pgbench := pgtest.RequireClientBin(t, "pgbench")
	cs := pgtest.StartClusters(t, []int{15, 17})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(t, "app")
	green.CreateDatabase(t, "app")
	run(t, pgbench, "-i", "-q", "-s", "10", "-h", blue.Host, "-p", strconv.Itoa(blue.Port), "-U", "postgres", "app")
	blue.Exec(t, "app", "ALTER TABLE pgbench_history REPLICA IDENTITY FULL")
	p := &pair{blue: blue, green: green}
	stopWrites := p.startWritesBuiltin(t)

	dir := t.TempDir()
	spec := filepath.Join(dir, "snap.yaml")
	if err := os.WriteFile(spec, []byte(fmt.Sprintf(`version: 1
name: snap-kill
source:
  dsn: %s
target:
  dsn: %s
replication:
  initial_copy:
    method: snapshot
    workers: 2
    split_tables_larger_than: 8MiB
cutover:
  switch:
    exec:
      switch: ["true"]
      back: ["true"]
`, blue.DSN("app"), green.DSN("app"))), 0o600); err != nil {
		t.Fatal(err)
	}

	// First run: killed once green has committed part of pgbench_accounts.
	var out1 strings.Builder
	cmd := exec.Command(bin, "apply", "-f", spec, "--log-level", "info")
	cmd.Stdout, cmd.Stderr = &out1, &out1
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	conn := connect(t, green)
	ctx := context.Background()
	killed := false
	deadline := time.Now().Add(3 * time.Minute)
	for !killed {
		select {
		case err := <-exited:
			t.Fatalf("apply ended (%v) before any row reached green:\n%s", err, out1.String())
		default:
		}
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pgbench_accounts").Scan(&n); err == nil && n > 0 {
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			killed = true
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no row reached green in 3 minutes:\n%s", out1.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	copied := green.Scalar(t, "app", "SELECT count(*) FROM pgbench_accounts")
	if copied == blue.Scalar(t, "app", "SELECT count(*) FROM pgbench_accounts") {
		t.Fatalf("the copy of pgbench_accounts had finished when apply was killed: nothing was interrupted")
	}
	t.Logf("killed with %s rows of pgbench_accounts on green", copied)

	// Second run: starts the copy over and goes on to the cutover gate.
	out2, err := exec.Command(bin, "apply", "-f", spec, "--log-level", "info").CombinedOutput()
	if err != nil {
		t.Fatalf("apply after the kill: %v\n%s", err, out2)
	}
	if !strings.Contains(string(out2), "an earlier copy was interrupted") {
		t.Errorf("the second apply did not say it started the copy over:\n%s", out2)
	}
	stopWrites()
	lsn := blue.Scalar(t, "app", "SELECT pg_current_wal_lsn()")
	deadline = time.Now().Add(time.Minute)
	for blue.Scalar(t, "app", fmt.Sprintf("SELECT bool_and(confirmed_flush_lsn >= '%s') FROM pg_replication_slots", lsn)) != "t" {
		if time.Now().After(deadline) {
			t.Fatalf("green did not catch up with %s in a minute", lsn)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, g := connect(t, blue), conn
	for _, c := range compared[:4] { // the pgbench tables
		bn, bs, err := digest(ctx, b, c.table, c.order)
		if err != nil {
			t.Fatal(err)
		}
		gn, gs, err := digest(ctx, g, c.table, c.order)
		if err != nil {
			t.Fatal(err)
		}
		if bn != gn || bs != gs {
			t.Errorf("%s: blue %d rows (%.12s), green %d rows (%.12s)", c.table, bn, bs, gn, gs)
		}
	}
	var idx int
	if err := g.QueryRow(ctx, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'").Scan(&idx); err != nil || idx != 3 {
		t.Errorf("green has %d indexes (%v), want the 3 primary keys of pgbench", idx, err)
	}
}

// startWritesBuiltin runs pgbench's TPC-B-like transactions on blue.
func (p *pair) startWritesBuiltin(t testing.TB) (stop func()) {
	t.Helper()
	pgbench := pgtest.RequireClientBin(t, "pgbench")
	cmd := exec.Command(pgbench, "-n", "-c", "2", "-j", "1", "-T", "3600",
		"-h", p.blue.Host, "-p", strconv.Itoa(p.blue.Port), "-U", "postgres", "app")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	return stop
}

// buildPgshift builds the CLI from this module.
func buildPgshift(t *testing.T) string {
	t.Helper()
	goBin := pgtest.GoCommand()
	bin := filepath.Join(t.TempDir(), "pgshift")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/pgshift/pgshift/cmd/pgshift").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/pgshift: %v\n%s", err, out)
	}
	return bin
}
