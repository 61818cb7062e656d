package e2e

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestKillResume kills `pgshift apply` with SIGKILL at many moments across
// the pipeline (as each step starts running, after a small random delay,
// plus a few kills at random instants) and resumes each time with the same
// command, with pgbench writing to blue all along and a marked row written
// between runs. No run may fail or trip over an object that already
// exists; at the end there is exactly one publication, one slot and one
// subscription, apply stops at the cutover gate with exit status 0, and
// green holds what blue holds, row by row. Then Ctrl-C inside the long
// steps: apply stops saying how to resume, and the same command goes on.
func TestKillResume(t *testing.T) {
	integration(t)
	t.Parallel()
	blue, green, dir, spec := pagilaPair(t, "killed")
	statePath := filepath.Join(dir, "killed.pgshift-state.json")
	blueConn, greenConn := connect(t, blue.DSN("pagila")), connect(t, green.DSN("pagila"))

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))

	// One kill per step as it runs; a purely random one now and then.
	type moment struct{ step string }
	var schedule []moment
	randomKills := 0
	for i, s := range planSteps(t, dir, spec).Steps {
		if s.ID == "cutover" {
			continue // gated: apply stops before it
		}
		schedule = append(schedule, moment{s.ID})
		if i%3 == 2 {
			schedule = append(schedule, moment{""})
			randomKills++
		}
	}

	bench := startPgbench(t, blue, "pagila")

	// Steps take tens of milliseconds on pagila: one round rarely catches
	// ten. Each round ends with an apply left alone, then a rollback; the
	// next round starts the pipeline over.
	var kills []string
	killedIn := map[string]bool{}
	runs, writes := 0, 0
	for round := 1; round <= 20 && (len(killedIn) < len(schedule)-randomKills || len(kills) < 10); round++ {
		if round > 1 {
			r := pgshift(t, dir, "rollback", "-f", spec, "--yes")
			if r.code != 0 {
				t.Fatalf("rollback after round %d:\n%s", round-1, r)
			}
			if o := countObjects(t, blueConn, greenConn); o.publications != 0 || o.slots != 0 || o.subscriptions != 0 {
				t.Fatalf("rollback left objects: %+v", o)
			}
		}
		for _, m := range schedule {
			if st, ok := readState(t, statePath); ok && m.step != "" && st.status(m.step) == "done" {
				continue // an earlier run got past it
			}
			if round > 1 && (m.step == "" || killedIn[m.step]) {
				continue // later rounds aim at the steps not yet hit
			}
			runs++
			p := startPgshift(t, dir, "apply", "-f", spec)
			where, step := waitForMoment(t, p, statePath, m.step, rng)
			if p.kill() {
				st, _ := readState(t, statePath)
				kills = append(kills, fmt.Sprintf("round %d run %d killed %s [%s]", round, runs, where, stepSummary(st)))
				if running := runningSteps(st); len(running) > 0 {
					// What a user sees before resuming.
					r := pgshift(t, dir, "status", "-f", spec, "--offline")
					if r.code != 0 || !strings.Contains(r.stdout, strings.Join(running, ", ")+" was interrupted. Resume with: pgshift apply -f ") {
						t.Fatalf("status after a kill inside %v:\n%s", running, r)
					}
				}
				if step != "" {
					killedIn[step] = true
				}
			} else if code := p.exitCode(); code != 0 {
				t.Fatalf("run %d (kill planned %s) failed on its own, exit %d:\n%s", runs, where, code, p.out.String())
			} else {
				t.Logf("round %d run %d finished before the kill planned %s", round, runs, where)
			}
			checkRun(t, runs, p.out.String(), statePath, blueConn, greenConn)
			writes++
			blue.Exec(t, "pagila", fmt.Sprintf(`INSERT INTO public.actor (first_name, last_name) VALUES ('KILLED', 'RUN %d');
				UPDATE public.customer SET activebool = NOT activebool WHERE customer_id = %d`, runs, runs))
		}
		r := pgshift(t, dir, "apply", "-f", spec)
		if r.code != 0 || !strings.Contains(r.stdout, "Apply stopped before cutover") {
			t.Fatalf("round %d: apply after the kills:\n%s", round, r)
		}
		checkRun(t, runs+1, r.stdout+r.stderr, statePath, blueConn, greenConn)
	}
	for _, k := range kills {
		t.Log(k)
	}
	if len(kills) < 10 || len(killedIn) < 8 {
		t.Fatalf("%d runs were killed, %d of them inside a running step (%v); want at least 10, inside 8 different steps", len(kills), len(killedIn), killedIn)
	}
	t.Logf("%d kills over %d runs, inside %d different steps", len(kills), runs, len(killedIn))

	// Ctrl-C (SIGINT) inside the long steps: apply stops, says how to
	// resume, and the same command goes on.
	if r := pgshift(t, dir, "rollback", "-f", spec, "--yes"); r.code != 0 {
		t.Fatalf("rollback before the interrupts:\n%s", r)
	}
	for _, step := range []string{"target.schema", "replication.catchup", "verify"} {
		p := startPgshift(t, dir, "apply", "-f", spec)
		if where, seen := waitForMoment(t, p, statePath, step, rng); seen == "" {
			t.Logf("no interrupt inside %s: %s", step, where)
			continue
		}
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		code := p.exitCode()
		out := p.out.String()
		if code == 0 && strings.Contains(out, "Apply stopped before cutover") {
			continue // it finished first
		}
		if code != 1 || !strings.Contains(out, "Resume with:") {
			t.Fatalf("apply interrupted inside %s: exit %d\n%s", step, code, out)
		}
		checkRun(t, runs, out, statePath, blueConn, greenConn)
		st, _ := readState(t, statePath)
		t.Logf("interrupted inside %s [%s]", step, stepSummary(st))
		writes++
		blue.Exec(t, "pagila", `INSERT INTO public.actor (first_name, last_name) VALUES ('KILLED', 'INTERRUPT')`)
	}
	if r := pgshift(t, dir, "apply", "-f", spec); r.code != 0 || !strings.Contains(r.stdout, "Apply stopped before cutover") {
		t.Fatalf("apply after the interrupts:\n%s", r)
	}
	o := countObjects(t, blueConn, greenConn)
	if o.publications != 1 || o.slots != 1 || o.subscriptions != 1 || o.slotNames[0] != "pgshift_killed" {
		t.Fatalf("after resuming: %d publications, %d subscriptions, slots %v; want exactly one of each", o.publications, o.subscriptions, o.slotNames)
	}
	bench.stop(t)
	waitCaughtUp(t, blueConn, "pgshift_killed")
	res := compareAll(t, blue.DSN("pagila"), green.DSN("pagila"))
	for _, tbl := range pagilaTables {
		if res[tbl].GreenRows == 0 {
			t.Errorf("%s: no rows on green (%s)", tbl, res[tbl])
		}
	}
	if n := scalar[int](t, greenConn, `SELECT count(*)::int FROM public.actor WHERE first_name = 'KILLED'`); n != writes {
		t.Errorf("green holds %d of the %d rows written between runs", n, writes)
	}
}

// waitForMoment waits until step is running (then a random 0-30 ms more),
// or, with no step, a random 0-2 s. It returns where the kill lands, and
// the step when it was seen running.
func waitForMoment(t *testing.T, p *running, statePath, step string, rng *rand.Rand) (string, string) {
	t.Helper()
	if step == "" {
		d := time.Duration(rng.IntN(2000)) * time.Millisecond
		select {
		case <-p.exited:
		case <-time.After(d):
		}
		return fmt.Sprintf("at random after %s", d), ""
	}
	deadline := time.Now().Add(cliTimeout)
	for !p.done() {
		if st, ok := readState(t, statePath); ok {
			switch st.status(step) {
			case "running":
				d := time.Duration(rng.IntN(30)) * time.Millisecond
				time.Sleep(d)
				return fmt.Sprintf("%s after %s running", step, d), step
			case "done", "failed":
				return step + " (already finished when seen)", ""
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never started running:\n%s", step, p.out.String())
		}
		time.Sleep(time.Millisecond)
	}
	return step + " (run ended first)", ""
}

// checkRun asserts what must hold after every run, killed or not: the state
// parses with no failed step, nothing complained of an existing object,
// and no object is duplicated.
func checkRun(t *testing.T, run int, out, statePath string, blueConn, greenConn *pgx.Conn) {
	t.Helper()
	if strings.Contains(out, "already exists") {
		t.Fatalf("run %d: an object that already exists was an error:\n%s", run, out)
	}
	o := countObjects(t, blueConn, greenConn)
	var slots []string
	for _, n := range o.slotNames {
		if !strings.HasPrefix(n, "pg_") { // pg_<oid>_sync_<relid>_<sysid>: a table copy in flight
			slots = append(slots, n)
		}
	}
	if o.publications > 1 || o.subscriptions > 1 || len(slots) > 1 {
		t.Fatalf("run %d: duplicate objects: %d publications, %d subscriptions, slots %v", run, o.publications, o.subscriptions, o.slotNames)
	}
	st, ok := readState(t, statePath)
	if !ok {
		return // killed before the first checkpoint
	}
	for _, s := range st.Steps {
		if s.Status == "failed" || s.Status == "upstream-failed" {
			t.Fatalf("run %d: %s %s: %s\n%s", run, s.ID, s.Status, s.Error, out)
		}
	}
}

func stepSummary(st *stateFile) string {
	if st == nil {
		return "no state yet"
	}
	var parts []string
	for _, s := range st.Steps {
		if s.Status != "pending" && s.Status != "done" {
			parts = append(parts, s.ID+"="+s.Status)
		}
	}
	done := 0
	for _, s := range st.Steps {
		if s.Status == "done" {
			done++
		}
	}
	return fmt.Sprintf("%d done %s", done, strings.Join(parts, " "))
}

func runningSteps(st *stateFile) []string {
	var ids []string
	if st == nil {
		return nil
	}
	for _, s := range st.Steps {
		if s.Status == "running" {
			ids = append(ids, s.ID)
		}
	}
	return ids
}
