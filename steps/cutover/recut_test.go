package cutover_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowcompare"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps"
	"github.com/pgshift/pgshift/steps/cutover"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/pgshift/pgshift/steps/switcher"
)

// TestCutoverRollbackCutoverAgain goes forward, back and forward again
// through PgBouncer with pgbench writing all along, as `pgshift apply
// --approve-cutover`, `pgshift rollback --step cutover` and `pgshift apply
// --approve-cutover` do: rows are equal on both sides after each move, the
// rollback keeps the replication pipeline, the second cutover copies no
// table again (green's pg_subscription_rel stays ready with the same
// positions, no table-sync slot appears on blue, the subscription is the
// same one, no pipeline step runs again), and the state, the plan and
// status name one live side each time.
func TestCutoverRollbackCutoverAgain(t *testing.T) {
	requireIntegration(t)
	began := time.Now()
	var bouncer *pgtest.PgBouncer
	r := newCutoverRig(t, func(r *cutoverRig) {
		bouncer = pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{Databases: map[string]string{
			"app": fmt.Sprintf("host=127.0.0.1 port=%d dbname=app", r.blue.Port),
		}})
		r.spec.Cutover.Freeze = "pooler"
		r.spec.Cutover.Switch.PgBouncer = &spec.PgBouncerSwitch{AdminDSN: bouncer.AdminDSN, Config: bouncer.ConfigPath, Database: "app"}
		r.spec.Cutover.Confirm = &spec.ConfirmSpec{DSN: bouncer.DSN("app")}
	})
	requireLive(t, r, cutover.LiveBlue, "before the first cutover")
	copied := tableSync(t, r)
	pipelineRuns := pipelineStarts(t, r)
	committed := 0

	// under runs move with pgbench writing through PgBouncer, and watches
	// for a table copy the whole time.
	under := func(t *testing.T, what string, move func()) {
		t.Helper()
		bench := startPgbench(t, bouncer.Host, bouncer.Port, 8)
		time.Sleep(2 * time.Second)
		w := watchCopies(t, r)
		move()
		res := bench.wait(t)
		w.stop(t, what)
		requireClean(t, res, what)
		committed += res.processed
		checkTotals(t, r.blue, committed, what+": blue")
		checkTotals(t, r.green, committed, what+": green")
		requireRowsEqual(t, r, what)
	}

	cutoverOnce := func(t *testing.T, what string) {
		t.Helper()
		var res *engine.ApplyResult
		under(t, what, func() {
			res = r.engineApply(t, true)
			if err := cutoverError(t, res); err != nil {
				t.Fatalf("%s: %v\nlog:\n%s", what, err, r.logs)
			}
		})
		if !slices.Equal(res.Applied, []string{stepid.Cutover}) || len(res.Skipped) != 5 {
			t.Fatalf("%s: applied %v, skipped %v; want only the cutover applied, the 5 pipeline steps skipped", what, res.Applied, res.Skipped)
		}
		t.Logf("%s: write pause %s ms (pgshift's measure): %s", what, r.output(cutover.CoPauseMS), r.lastBreakdown())
		if side := currentSide(t, r.spec); side != switcher.Green {
			t.Fatalf("%s: PgBouncer sends traffic to %s", what, side)
		}
		requireLive(t, r, cutover.LiveGreen, what)
	}

	t.Run("cutover", func(t *testing.T) { cutoverOnce(t, "first cutover") })

	t.Run("rollback of the cutover only", func(t *testing.T) {
		var rb *engine.RollbackResult
		under(t, "rollback", func() {
			r.session(t, "rollback", func(env *engine.Env, store *engine.StateStore) {
				var err error
				if rb, err = engine.Rollback(testCtx(t), r.graph, env, store, engine.RollbackOptions{Step: stepid.Cutover}); err != nil {
					t.Fatal(err)
				}
			})
			if !rb.Complete() || !slices.Equal(rb.RolledBack, []string{stepid.Cutover}) {
				t.Fatalf("rollback --step cutover: %+v\nlog:\n%s", rb, r.logs)
			}
		})
		pause := ""
		if m := regexp.MustCompile(`cutover rolled back: traffic on blue, write pause ([0-9.]+m?s)`).FindAllStringSubmatch(r.logs.String(), -1); m != nil {
			pause = m[len(m)-1][1]
		}
		t.Logf("rollback: write pause %s (pgshift's measure): %s", pause, r.lastBreakdown())
		if side := currentSide(t, r.spec); side != switcher.Blue {
			t.Fatalf("after the rollback PgBouncer sends traffic to %s", side)
		}
		requireNoReverse(t, r)
		st, err := engine.ReadState(r.statePath)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range st.Steps {
			if want := engine.StatusDone; c.ID != stepid.Cutover && c.Status != want {
				t.Fatalf("%s is %s after rollback --step cutover, want %s", c.ID, c.Status, want)
			}
		}
		if got := r.green.Scalar(t, "app", "SELECT subenabled FROM pg_subscription WHERE subname = 'pgshift_shop'"); got != "t" {
			t.Fatalf("forward subscription enabled = %s after the rollback: green must follow blue again", got)
		}
		requireLive(t, r, cutover.LiveBlue, "after the rollback")
	})

	t.Run("cutover again without a copy", func(t *testing.T) {
		cutoverOnce(t, "second cutover")
		if got := tableSync(t, r); got != copied {
			t.Fatalf("green's tables were synchronised again:\nbefore the first cutover\n%s\nafter the second\n%s", copied, got)
		}
		if got := pipelineStarts(t, r); got != pipelineRuns {
			t.Fatalf("pipeline steps ran again:\nbefore\n%s\nafter\n%s", pipelineRuns, got)
		}
	})
	t.Logf("cutover, rollback, cutover again: %d transactions committed through PgBouncer, %s", committed, time.Since(began).Round(time.Second))
}

// tableSync is the forward subscription's identity and the sync state of
// each of its tables on green: a table copied again gets a new state and
// position, a recreated subscription a new oid.
func tableSync(t *testing.T, r *cutoverRig) string {
	t.Helper()
	return r.green.Scalar(t, "app", `SELECT s.oid::text || ': ' || string_agg(c.relname || ' ' || sr.srsubstate::text || ' ' || coalesce(sr.srsublsn::text, '-'), ', ' ORDER BY c.relname)
	  FROM pg_subscription s JOIN pg_subscription_rel sr ON sr.srsubid = s.oid JOIN pg_class c ON c.oid = sr.srrelid
	 WHERE s.subname = 'pgshift_shop' GROUP BY s.oid`)
}

// pipelineStarts is when each pipeline step last started, from the state.
func pipelineStarts(t *testing.T, r *cutoverRig) string {
	t.Helper()
	st, err := engine.ReadState(r.statePath)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, c := range st.Steps {
		if c.ID != stepid.Cutover && c.StartedAt != nil {
			lines = append(lines, fmt.Sprintf("%s %s attempt %d", c.ID, c.StartedAt.Format(time.RFC3339Nano), c.Attempts))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// copyWatch polls, while a move runs, for any sign of a table copy: a
// table of green's subscription not ready, or a table-sync slot on blue.
type copyWatch struct {
	done     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	polls    int
	notReady int
	syncSlot int
}

func watchCopies(t *testing.T, r *cutoverRig) *copyWatch {
	w := &copyWatch{done: make(chan struct{})}
	green, blue := r.green.Conn(t, "app"), r.blue.Conn(t, "app")
	ctx := testCtx(t)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for {
			select {
			case <-w.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			var notReady, syncSlots int
			if err := green.QueryRow(ctx, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'").Scan(&notReady); err != nil {
				continue
			}
			if err := blue.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pg\_%\_sync\_%'`).Scan(&syncSlots); err != nil {
				continue
			}
			w.mu.Lock()
			w.polls++
			w.notReady = max(w.notReady, notReady)
			w.syncSlot = max(w.syncSlot, syncSlots)
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *copyWatch) stop(t *testing.T, what string) {
	t.Helper()
	close(w.done)
	w.wg.Wait()
	if w.polls == 0 {
		t.Fatalf("%s: the copy watch never read the servers", what)
	}
	if w.notReady > 0 || w.syncSlot > 0 {
		t.Fatalf("%s: a table was copied again (%d not ready on green, %d table-sync slots on blue, over %d polls)", what, w.notReady, w.syncSlot, w.polls)
	}
}

// requireRowsEqual compares every table row by row, independently of
// pgshift's verify.
func requireRowsEqual(t *testing.T, r *cutoverRig, what string) {
	t.Helper()
	ctx := testCtx(t)
	blue, green := r.blue.Conn(t, "app"), r.green.Conn(t, "app")
	tables, err := rowcompare.Tables(ctx, blue)
	if err != nil {
		t.Fatal(err)
	}
	res, err := rowcompare.Compare(ctx, blue, green, tables)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, c := range res {
		if !c.Equal {
			t.Fatalf("%s: %s", what, c)
		}
		rows = append(rows, fmt.Sprintf("%s %d", c.Table, c.BlueRows))
	}
	t.Logf("%s: rows equal (%s)", what, strings.Join(rows, ", "))
}

// requireLive checks that the state, the plan (the cutover's observation)
// and status (its live facts) name side as the live one, and only it.
func requireLive(t *testing.T, r *cutoverRig, side, what string) {
	t.Helper()
	st, err := engine.ReadState(r.statePath)
	if err != nil {
		t.Fatal(err)
	}
	var outputs map[string]string
	if c := st.Step(stepid.Cutover); c != nil && c.Status != engine.StatusRolledBack {
		outputs = c.Outputs
	}
	if got := cutover.LiveSide(outputs); got != side {
		t.Fatalf("%s: the state says %s is live, want %s", what, got, side)
	}
	if rec := outputs["live"]; outputs != nil && outputs["phase"] != "" && rec != side {
		t.Fatalf("%s: the cutover recorded live = %q, want %s", what, rec, side)
	}
	var summary string
	r.session(t, "plan", func(env *engine.Env, _ *engine.StateStore) {
		c, err := r.step.Observe(testCtx(t), env.ForStep(stepid.Cutover))
		if err != nil {
			t.Fatal(err)
		}
		summary = c.Summary
	})
	other := cutover.LiveGreen
	if side == cutover.LiveGreen {
		other = cutover.LiveBlue
	}
	if !strings.HasPrefix(summary, side+" is live") {
		t.Fatalf("%s: the plan's cutover summary %q does not say %s is live", what, summary, side)
	}
	facts := r.report(t)
	if !strings.Contains(facts, "live side: "+side) || strings.Contains(facts, "live side: "+other) {
		t.Fatalf("%s: status facts should say %s is live:\n%s", what, side, facts)
	}
}

// TestRollbackScopeCutover: `pgshift rollback --step cutover` undoes the
// cutover alone, in the real graph, and keeps the pipeline it goes on from.
func TestRollbackScopeCutover(t *testing.T) {
	sp := &spec.Spec{Name: "shop", Source: spec.Endpoint{DSN: "postgres://blue/app"}, Target: spec.Endpoint{DSN: "postgres://green/app"}}
	sp.SetDefaults()
	g, err := engine.Compile(steps.For(sp))
	if err != nil {
		t.Fatal(err)
	}
	st := &engine.State{}
	for _, id := range g.Order() {
		st.Steps = append(st.Steps, &engine.StepState{ID: id, Status: engine.StatusDone})
	}
	targets, orphans, err := engine.RollbackScope(g, st, stepid.Cutover)
	if err != nil || !slices.Equal(targets, []string{stepid.Cutover}) || len(orphans) != 0 {
		t.Fatalf("rollback --step cutover: targets %v, orphans %v, %v; want the cutover alone", targets, orphans, err)
	}
	all, _, _ := engine.RollbackScope(g, st, "")
	if len(all) != g.Len() || all[0] != stepid.Cutover {
		t.Fatalf("full rollback: %v, want every step, the cutover first", all)
	}
	if _, _, err := engine.RollbackScope(g, st, "no.such"); err == nil || !strings.Contains(err.Error(), "no such step") {
		t.Fatalf("unknown step: %v", err)
	}
}
