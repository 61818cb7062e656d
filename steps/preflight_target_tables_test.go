package steps

import (
	"strings"
	"testing"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

// TestPreflightTargetGreenTablesEmpty13To17: a table green already holds
// rows in is a blocker before the initial copy (the copy would add blue's
// rows on top), naming the tables and the TRUNCATE; emptied, it clears.
func TestPreflightTargetGreenTablesEmpty13To17(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	const schema = `CREATE TABLE accounts (id int PRIMARY KEY); CREATE TABLE "Odd Notes" (body text);`
	for _, c := range cs {
		c.CreateDatabase(t, "app")
		c.Exec(t, "app", schema)
	}
	blue.Exec(t, "app", `INSERT INTO accounts SELECT generate_series(1, 10); INSERT INTO "Odd Notes" VALUES ('a')`)
	green.Exec(t, "app", `INSERT INTO accounts VALUES (3); INSERT INTO "Odd Notes" VALUES ('left over')`)
	sp := &spec.Spec{
		Name:   "app-pg17",
		Source: spec.Endpoint{DSN: blue.DSN("app")},
		Target: spec.Endpoint{DSN: green.DSN("app")},
	}
	sp.SetDefaults()
	target := stepOf(t, sp, stepid.PreflightTarget)
	observe := func() plans.Change {
		t.Helper()
		env := engine.NewEnv(sp, nil)
		defer env.Close()
		c, err := target.Observe(prepCtx(t), env)
		if err != nil {
			t.Fatalf("observe: %v", err)
		}
		return c
	}
	c := observe()
	blockers := strings.Join(c.Blockers, "\n")
	if c.Action != plans.ActionBlocker || !strings.Contains(blockers, `green tables public."Odd Notes", public.accounts already hold rows`) || !strings.Contains(blockers, `(TRUNCATE public."Odd Notes", public.accounts;)`) {
		t.Fatalf("green tables holding rows: want a blocker naming both and the TRUNCATE, got %s %q", c.Action, c.Blockers)
	}
	green.Exec(t, "app", `TRUNCATE accounts, "Odd Notes"`)
	if c := observe(); strings.Contains(strings.Join(c.Blockers, "\n"), "already hold") {
		t.Fatalf("after the TRUNCATE the blocker remains: %q", c.Blockers)
	}
}
