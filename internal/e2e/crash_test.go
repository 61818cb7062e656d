package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestServerCrashes crashes green (kill -9 of its postmaster) while the
// initial copy runs and blue while apply waits for the catch-up, with
// pgbench writing to blue: a run may fail while a server is down, and the
// same command, run again once the servers are back, finishes at the
// cutover gate with green equal to blue.
func TestServerCrashes(t *testing.T) {
	integration(t)
	t.Parallel()
	blue, green, dir, spec := pagilaPair(t, "crashes")
	statePath := filepath.Join(dir, "crashes.pgshift-state.json")
	bench := startPgbench(t, blue, "pagila")

	crashDuring := func(step string, c *pgtest.Cluster, what string, args ...string) {
		t.Helper()
		p := startPgshift(t, dir, append([]string{"apply", "-f", spec}, args...)...)
		deadline := time.Now().Add(cliTimeout)
		for {
			if st, ok := readState(t, statePath); ok && st.status(step) == "running" {
				break
			}
			if p.done() || time.Now().After(deadline) {
				t.Fatalf("%s never seen running:\n%s", step, p.out.String())
			}
			time.Sleep(time.Millisecond)
		}
		c.Kill(t)
		c.Start(t)
		code := p.exitCode()
		t.Logf("apply with %s crashed during %s: exit %d\n%s", what, step, code, p.out.String())
	}
	crashDuring("replication.catchup", green, "green", "--until", "replication.catchup")
	if bench.done() {
		t.Fatalf("pgbench stopped:\n%s", bench.out.String())
	}
	crashDuring("verify", blue, "blue")
	// pgbench's connections died with blue.
	bench.kill()
	bench = startPgbench(t, blue, "pagila")

	r := pgshift(t, dir, "apply", "-f", spec)
	if r.code != 0 || !strings.Contains(r.stdout, "Apply stopped before cutover") {
		t.Fatalf("apply after the crashes:\n%s", r)
	}
	bench.stop(t)
	blueConn, greenConn := connect(t, blue.DSN("pagila")), connect(t, green.DSN("pagila"))
	if o := countObjects(t, blueConn, greenConn); o.publications != 1 || o.slots != 1 || o.subscriptions != 1 {
		t.Fatalf("after the crashes: %+v", o)
	}
	waitCaughtUp(t, blueConn, "pgshift_crashes")
	compareAll(t, blue.DSN("pagila"), green.DSN("pagila"))
}
