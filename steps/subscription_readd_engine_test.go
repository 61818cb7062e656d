package steps

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/rowcompare"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/steps/stepid"
)

// pipeStep gives a real pipeline step the needs this test leaves it (the
// preflight, audit and schema steps are the rig's); the two kinds below
// keep the abilities the engine looks for.
type pipeStep struct {
	engine.Step
	needs []string
}

func (s pipeStep) Needs() []string { return s.needs }

type convergingPipeStep struct{ pipeStep }

func (convergingPipeStep) Converges() {}

type recheckingPipeStep struct{ pipeStep }

func (recheckingPipeStep) Rechecks() {}

// The rejoin as pgshift plan and apply run it: engine.BuildPlan shows the
// blocker with the fix, engine.Apply leaves the done subscription as it
// is (drifted, not applied again: nothing on green changes), and after the
// TRUNCATE the next apply converges it and catch-up runs again.
func TestSubscriptionRejoiningTableThroughTheEngine13To17(t *testing.T) {
	requireIntegration(t)
	p := newReplPair(t, 13, 17)
	g, err := engine.Compile([]engine.Step{
		convergingPipeStep{pipeStep{p.publication, nil}},
		pipeStep{p.slot, []string{stepid.Publication}},
		convergingPipeStep{pipeStep{p.subscription, []string{stepid.Slot}}},
		recheckingPipeStep{pipeStep{p.catchup, []string{stepid.Subscription}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(t.TempDir(), "orders.pgshift-state.json")
	session := func(fn func(env *engine.Env, store *engine.StateStore)) {
		t.Helper()
		store, err := engine.OpenState(statePath, p.spec, g, engine.StateOptions{Operation: "apply", AcceptSpecChange: true})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		env := engine.NewEnv(p.spec, hclog.New(&hclog.LoggerOptions{Output: p.logs, Level: hclog.Debug}))
		defer env.Close()
		for _, c := range store.Snapshot().Steps {
			env.LoadOutputs(c.ID, c.Outputs)
		}
		fn(env, store)
	}
	apply := func() *engine.ApplyResult {
		t.Helper()
		var res *engine.ApplyResult
		session(func(env *engine.Env, store *engine.StateStore) {
			var err error
			if res, err = engine.Apply(testCtx(t), g, env, store, engine.ApplyOptions{}); err != nil {
				t.Fatal(err)
			}
		})
		if len(res.Failed) > 0 {
			t.Fatalf("apply failed: %v\nlog:\n%s", res.Failed, p.logs)
		}
		return res
	}
	plan := func() (*plans.Plan, string) {
		t.Helper()
		var pl *plans.Plan
		session(func(env *engine.Env, _ *engine.StateStore) {
			var err error
			if pl, err = engine.BuildPlan(testCtx(t), g, env, engine.PlanOptions{}); err != nil {
				t.Fatal(err)
			}
		})
		var b strings.Builder
		if err := pl.Text(&b, plans.TextOptions{}); err != nil {
			t.Fatal(err)
		}
		return pl, b.String()
	}
	subscribed := func() string {
		return p.green.Scalar(t, "app", `SELECT coalesce(string_agg(c.relname, ',' ORDER BY c.relname), '') FROM pg_subscription_rel sr
			JOIN pg_class c ON c.oid = sr.srrelid JOIN pg_subscription s ON s.oid = sr.srsubid WHERE s.subname = 'pgshift_orders_pg'`)
	}

	apply()
	p.waitSame(t, "accounts", "events", "notes")
	p.spec.Tables.Exclude = []string{"public.scratch", "public.notes"}
	if res := apply(); !strings.Contains(strings.Join(res.Converged, ","), stepid.Subscription) {
		t.Fatalf("setup: apply after the exclude converged %v, want the subscription among them", res.Converged)
	}
	if got := subscribed(); got != "accounts,events" {
		t.Fatalf("setup: subscribed tables = %q", got)
	}
	p.blue.Exec(t, "app", "INSERT INTO notes SELECT 'later ' || g FROM generate_series(1, 20) g; DELETE FROM notes WHERE body = 'note 1'")

	p.spec.Tables.Exclude = []string{"public.scratch"}
	// The publication must take notes back first: a first apply does that,
	// and must leave the subscription drifted.
	res := apply()
	if !strings.Contains(strings.Join(res.Drifted, ","), stepid.Subscription) {
		t.Errorf("apply with notes' rows still on green: drifted %v, converged %v; want the subscription drifted (left as it is)", res.Drifted, res.Converged)
	}
	if !strings.Contains(p.logs.String(), "green's public.notes already holds 100 rows from before it left the replication") {
		t.Errorf("the apply's log does not name the table and its rows:\n%s", p.logs)
	}
	if got := subscribed(); got != "accounts,events" {
		t.Errorf("a refused apply changed the subscription's tables: %q", got)
	}
	if n := p.green.Scalar(t, "app", "SELECT count(*) FROM notes"); n != "100" {
		t.Errorf("a refused apply changed green's notes: %s rows, want 100", n)
	}
	pl, text := plan()
	for _, s := range pl.Steps {
		if s.ID == stepid.Subscription && s.Action != plans.ActionBlocker {
			t.Errorf("plan: %s is %s, want a blocker", s.ID, s.Action)
		}
	}
	if !strings.Contains(text, "green's public.notes already holds 100 rows") || !strings.Contains(text, "TRUNCATE it on green (TRUNCATE public.notes;), then apply") {
		t.Errorf("the plan does not name the table and the fix:\n%s", text)
	}

	p.green.Exec(t, "app", "TRUNCATE notes")
	res = apply()
	if !strings.Contains(strings.Join(res.Converged, ","), stepid.Subscription) || !strings.Contains(strings.Join(res.Converged, ","), stepid.Catchup) {
		t.Errorf("apply after TRUNCATE: converged %v, want the subscription and catch-up", res.Converged)
	}
	p.waitSame(t, "notes")
	p.waitSame(t, "accounts", "events")
	r, err := rowcompare.Compare(testCtx(t), p.blue.Conn(t, "app"), p.green.Conn(t, "app"), []string{"public.notes", "public.accounts", "public.events"})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range r {
		if !x.Equal || (x.Table == "public.notes" && x.GreenRows != 119) {
			t.Errorf("after the rejoin: %s (notes: want 119 rows)", x)
		}
	}
	pl, text = plan()
	for _, s := range pl.Steps {
		if (s.ID == stepid.Subscription || s.ID == stepid.Publication) && s.Action != plans.ActionNone {
			t.Errorf("plan after the rejoin: %s is %s:\n%s", s.ID, s.Action, text)
		}
	}
}
