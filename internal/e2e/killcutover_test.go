package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// killCutoverTrials is how many times each command is killed.
const killCutoverTrials = 20

// ledgerLoad is what pgbench writes through PgBouncer: one append-only
// ledger row per transaction, so that counts tell exactly what is where.
const ledgerLoad = `INSERT INTO public.ledger (note) VALUES ('pgbench');
`

// TestKillCutover kills `pgshift apply --approve-cutover` and `pgshift
// rollback --step cutover` with SIGKILL at random moments of their runs,
// killCutoverTrials times each, alternating (each converged rollback is the
// reset to blue for the next cutover), with pgbench writing through
// PgBouncer throughout. After every kill, status says what was
// interrupted (and what is frozen); running the same command again
// converges; then exactly one side is live (the state's and PgBouncer's),
// nothing is frozen (PgBouncer not paused, no default_transaction_read_only
// on either side), no replication object is duplicated, and the ledger
// holds the same rows on both sides up to the last row the live side had.
func TestKillCutover(t *testing.T) {
	integration(t)
	t.Parallel()
	began := time.Now()
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	for _, c := range cs {
		c.CreateDatabase(t, "app")
	}
	blue.Exec(t, "app", `CREATE TABLE public.ledger (id bigserial PRIMARY KEY, note text NOT NULL, at timestamptz NOT NULL DEFAULT now());
		INSERT INTO public.ledger (note) SELECT 'seed' FROM generate_series(1, 200)`)
	bouncer := pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{Databases: map[string]string{
		"app": fmt.Sprintf("host=127.0.0.1 port=%d dbname=app", blue.Port),
	}})
	const name = "killcut"
	dir := t.TempDir()
	specPath := filepath.Join(dir, name+".yaml")
	statePath := filepath.Join(dir, name+".pgshift-state.json")
	spec := fmt.Sprintf(`version: 1
name: %s
source:
  dsn: %q
target:
  dsn: %q
cutover:
  freeze: pooler
  pause_timeout: 5s
  reverse_replication: true
  switch:
    pgbouncer:
      admin_dsn: %q
      config: %q
      database: app
  confirm:
    dsn: %q
`, name, blue.DSN("app"), green.DSN("app"), bouncer.AdminDSN, bouncer.ConfigPath, bouncer.DSN("app"))
	if err := os.WriteFile(specPath, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := pgshift(t, dir, "apply", "-f", specPath); r.code != 0 || !strings.Contains(r.stdout, "Apply stopped before cutover") {
		t.Fatalf("first apply:\n%s", r)
	}
	bench := startPooledPgbench(t, bouncer, ledgerLoad)
	blueConn, greenConn := connect(t, blue.DSN("app")), connect(t, green.DSN("app"))

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))

	cutoverArgs := []string{"apply", "-f", specPath, "--approve-cutover"}
	rollbackArgs := []string{"rollback", "-f", specPath, "--step", "cutover", "--yes"}
	// One clean run of each gives the span the kills are drawn from.
	measure := func(args []string, live string) time.Duration {
		t0 := time.Now()
		if r := pgshift(t, dir, args...); r.code != 0 {
			t.Fatalf("clean run:\n%s", r)
		}
		took := time.Since(t0)
		checkConverged(t, dir, specPath, bouncer, blue, green, blueConn, greenConn, live, "clean "+args[0])
		return took
	}
	spans := map[string]time.Duration{"apply": measure(cutoverArgs, "green"), "rollback": measure(rollbackArgs, "blue")}
	t.Logf("clean runs: cutover %s, rollback %s", spans["apply"].Round(time.Millisecond), spans["rollback"].Round(time.Millisecond))

	type tally struct {
		killed, frozen, finished, rerunFailed int
		aimed                                 map[string]int
	}
	results := map[string]*tally{"apply": {aimed: map[string]int{}}, "rollback": {aimed: map[string]int{}}}
	var lines []string
	for trial := 1; trial <= killCutoverTrials; trial++ {
		for _, move := range []struct {
			args []string
			live string
		}{{cutoverArgs, "green"}, {rollbackArgs, "blue"}} {
			op := move.args[0]
			// Odd trials kill at a random instant of the run; even ones as
			// a phase of the move is recorded (the pause is a small part
			// of the run: random instants rarely land in it), cycling
			// through the phases.
			aim := ""
			if trial%2 == 0 {
				ph := phasesOf[op]
				aim = ph[(trial/2-1)%len(ph)]
			}
			p := startPgshift(t, dir, move.args...)
			t0 := time.Now()
			if aim == "" {
				d := time.Duration(rng.Int64N(int64(spans[op]) + 1))
				select {
				case <-p.exited:
				case <-time.After(d):
				}
			} else {
				waitPhase(t, p, statePath, phaseKey[op], aim)
				time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
			}
			d := time.Since(t0)
			where := "finished first"
			if p.kill() {
				results[op].killed++
				st, _ := readState(t, statePath)
				phase, rb := st.output("cutover", "phase"), st.output("cutover", "rollback_phase")
				if aim != "" {
					results[op].aimed[aim]++
				}
				where = fmt.Sprintf("killed after %s aiming at %q (cutover %s, phase %q, rollback phase %q)", d.Round(time.Millisecond), aim, st.status("cutover"), phase, rb)
				if frozenPhase(phase, rb) {
					results[op].frozen++
				}
				// What a user sees before going on.
				s := pgshift(t, dir, "status", "-f", specPath)
				out := s.stdout + s.stderr
				switch cs := st.status("cutover"); {
				case cs == "running" && !strings.Contains(out, "cutover was interrupted. Resume with: pgshift apply"):
					t.Fatalf("trial %d, %s %s: status does not say the cutover was interrupted and how to resume:\n%s", trial, op, where, s)
				case cs == "rolling-back" && !strings.Contains(out, "A rollback of cutover was interrupted. Resume it with: pgshift rollback"):
					t.Fatalf("trial %d, %s %s: status does not say the rollback was interrupted and how to resume:\n%s", trial, op, where, s)
				}
				if frozenPhase(phase, rb) && !strings.Contains(out, "IS FROZEN") {
					t.Fatalf("trial %d, %s %s: status does not say a side is frozen:\n%s", trial, op, where, s)
				}
			} else {
				results[op].finished++
				if code := p.exitCode(); code != 0 {
					t.Fatalf("trial %d: %s failed on its own, exit %d:\n%s", trial, op, code, p.out.String())
				}
			}
			// The same command again converges.
			r := pgshift(t, dir, move.args...)
			if r.code != 0 {
				results[op].rerunFailed++
				t.Fatalf("trial %d, %s %s: running it again failed:\n%s", trial, op, where, r)
			}
			checkConverged(t, dir, specPath, bouncer, blue, green, blueConn, greenConn, move.live, fmt.Sprintf("trial %d %s", trial, op))
			lines = append(lines, fmt.Sprintf("trial %d %s: %s; converged on %s", trial, op, where, move.live))
		}
	}
	for _, l := range lines {
		t.Log(l)
	}
	for _, op := range []string{"apply", "rollback"} {
		t.Logf("%s: %d trials, %d killed mid-run (%d with a side frozen; aimed at phases %v), %d finished before the kill, %d runs again failed",
			strings.Join(map[string][]string{"apply": cutoverArgs, "rollback": rollbackArgs}[op][:1], " ")+map[string]string{"apply": " --approve-cutover", "rollback": " --step cutover"}[op],
			killCutoverTrials, results[op].killed, results[op].frozen, results[op].aimed, results[op].finished, results[op].rerunFailed)
	}
	for _, op := range []string{"apply", "rollback"} {
		if results[op].killed < killCutoverTrials/2 || results[op].frozen == 0 {
			t.Fatalf("%s: too few runs were killed mid-way, or none with a side frozen: %+v", op, *results[op])
		}
	}
	bench.stop(t)
	waitCaughtUp(t, blueConn, "pgshift_"+name)
	compareAll(t, blue.DSN("app"), green.DSN("app"))
	t.Logf("%d kills in %s", results["apply"].killed+results["rollback"].killed, time.Since(began).Round(time.Second))
}

// The phases a kill aims at, as the cutover records them (phase, and
// rollback_phase for its rollback).
var (
	phasesOf = map[string][]string{
		"apply":    {"prepared", "freezing", "switching", "switched", "live", "done"},
		"rollback": {"freezing", "switching", "switched-back", "done"},
	}
	phaseKey = map[string]string{"apply": "phase", "rollback": "rollback_phase"}
)

// frozenPhase says whether the recorded phases leave a side frozen.
func frozenPhase(phase, rb string) bool {
	return rb == "freezing" || rb == "switching" || phase == "freezing" || phase == "switching" || phase == "switched"
}

// waitPhase waits until the cutover's output key is want in the state
// file, or the run ends.
func waitPhase(t *testing.T, p *running, statePath, key, want string) {
	t.Helper()
	deadline := time.Now().Add(cliTimeout)
	for !p.done() && time.Now().Before(deadline) {
		if st, ok := readState(t, statePath); ok && st.output("cutover", key) == want {
			return
		}
		time.Sleep(500 * time.Microsecond)
	}
}

// checkConverged asserts what must hold after a cutover or its rollback
// settled: live is the only live side (state, status and PgBouncer agree),
// nothing is frozen, no replication object is duplicated, and the ledger
// is the same on both sides up to what the live side held.
func checkConverged(t *testing.T, dir, specPath string, bouncer *pgtest.PgBouncer, blue, green *pgtest.Cluster, blueConn, greenConn *pgx.Conn, live, what string) {
	t.Helper()
	s := pgshift(t, dir, "status", "-f", specPath, "--offline")
	if !strings.Contains(s.stdout, "Live side: "+live+".") {
		t.Fatalf("%s: status does not say %s is live:\n%s", what, live, s)
	}
	port := blue.Port
	if live == "green" {
		port = green.Port
	}
	if got := bouncer.ServerPort(t, "app"); got != port {
		t.Fatalf("%s: PgBouncer sends app to port %d, want %s's %d", what, got, live, port)
	}
	if bouncer.Paused(t, "app") {
		t.Fatalf("%s: PgBouncer left app paused", what)
	}
	for _, c := range []*pgtest.Cluster{blue, green} {
		if c.ReadOnly(t, "app") {
			t.Fatalf("%s: database app on PostgreSQL %d still has default_transaction_read_only set", what, c.Major)
		}
	}
	// Forward objects always; reverse ones while green is live.
	want := 0
	if live == "green" {
		want = 1
	}
	for _, q := range []struct {
		c    *pgx.Conn
		sql  string
		want int
	}{
		{blueConn, `SELECT count(*)::int FROM pg_publication`, 1},
		{blueConn, `SELECT count(*)::int FROM pg_replication_slots WHERE slot_name NOT LIKE 'pg\_%'`, 1},
		{greenConn, `SELECT count(*)::int FROM pg_subscription`, 1},
		{greenConn, `SELECT count(*)::int FROM pg_publication`, want},
		{greenConn, `SELECT count(*)::int FROM pg_replication_slots WHERE slot_name NOT LIKE 'pg\_%'`, want},
		{blueConn, `SELECT count(*)::int FROM pg_subscription`, want},
	} {
		if n := scalar[int](t, q.c, q.sql); n != q.want {
			t.Fatalf("%s: %s = %d on port %d, want %d", what, q.sql, n, q.c.Config().Port, q.want)
		}
	}
	liveConn, other := blueConn, greenConn
	if live == "green" {
		liveConn, other = greenConn, blueConn
	}
	last := scalar[int64](t, liveConn, `SELECT max(id) FROM public.ledger`)
	want64 := scalar[int64](t, liveConn, `SELECT count(*) FROM public.ledger WHERE id <= $1`, last)
	deadline := time.Now().Add(waitDeadline)
	for {
		got := scalar[int64](t, other, `SELECT count(*) FROM public.ledger WHERE id <= $1`, last)
		if got == want64 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the other side holds %d ledger rows up to id %d, the live side %d", what, got, last, want64)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := scalar[int64](t, other, `SELECT count(*) - count(DISTINCT id) FROM public.ledger`); n != 0 {
		t.Fatalf("%s: %d duplicate ledger ids", what, n)
	}
}
