package steps

import (
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowcompare"
	"github.com/pgshift/pgshift/plans"
)

// A table that leaves the selection and comes back while green still holds
// its rows must not be copied again on top of them: the plan names it with
// the fix, apply refuses without changing anything, and once the user has
// emptied it on green, apply copies it once and both sides hold the same
// rows. With the snapshot method a table joining later goes through the
// same REFRESH ... copy_data = true, so the same rule holds.
func TestSubscriptionRejoiningTable13To17(t *testing.T) {
	requireIntegration(t)
	t.Run("native copy", func(t *testing.T) { testRejoiningTable(t, "native") })
	t.Run("snapshot copy", func(t *testing.T) { testRejoiningTable(t, "snapshot") })
}

func testRejoiningTable(t *testing.T, method string) {
	p := newReplPair(t, 13, 17)
	p.spec.Replication.InitialCopy.Method = method
	if method == "snapshot" {
		// target.copy fills green from the slot's snapshot, then restores
		// blue's keys itself: green holds blue's pre-data only, as
		// target.schema restores it under this method.
		p.green.Exec(t, "app", `ALTER TABLE accounts DROP CONSTRAINT accounts_pkey; DROP TABLE events;
			CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, payload text) PARTITION BY RANGE (at);
			CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
			CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
			CREATE TABLE scratch (id int NOT NULL, filler text);`)
		p.apply(t, p.publication, p.slot, &copyStep{spec: p.spec}, p.subscription, p.catchup)
		if v := p.green.Scalar(t, "app", "SELECT subname || ' ' || (SELECT count(*) FROM pg_subscription_rel) FROM pg_subscription"); v != "pgshift_orders_pg 3" {
			t.Fatalf("setup: subscription on green = %q", v)
		}
	} else {
		p.apply(t, p.steps()...)
	}
	p.waitSame(t, "accounts", "events", "notes")

	subscribed := func() string {
		return p.green.Scalar(t, "app", `SELECT coalesce(string_agg(c.relname, ',' ORDER BY c.relname), '') FROM pg_subscription_rel sr
			JOIN pg_class c ON c.oid = sr.srrelid JOIN pg_subscription s ON s.oid = sr.srsubid WHERE s.subname = 'pgshift_orders_pg'`)
	}
	counts := func(c *pgtest.Cluster) string {
		return c.Scalar(t, "app", "SELECT (SELECT count(*) FROM accounts) || '/' || (SELECT count(*) FROM notes) || '/' || (SELECT count(*) FROM events)")
	}

	// accounts (keyed) and notes (no key, REPLICA IDENTITY FULL) leave the
	// selection; green keeps them and their rows.
	p.spec.Tables.Exclude = []string{"public.scratch", "public.accounts", "public.notes"}
	p.apply(t, p.publication, p.subscription)
	if got := subscribed(); got != "events" {
		t.Fatalf("setup: subscribed tables after the exclude = %q, want events", got)
	}
	// Rows change on blue meanwhile: green does not follow.
	p.blue.Exec(t, "app", `INSERT INTO accounts SELECT g, 'late ' || g, g FROM generate_series(5001, 5040) g;
		DELETE FROM accounts WHERE id <= 10;
		UPDATE accounts SET balance = -1 WHERE id = 11;
		INSERT INTO notes SELECT 'later ' || g FROM generate_series(1, 20) g;
		DELETE FROM notes WHERE body = 'note 1';`)
	if got := counts(p.blue); got != "5030/119/3000" {
		t.Fatalf("setup: blue's counts accounts/notes/events = %s, want 5030/119/3000", got)
	}

	// They come back, and events leaves at the same time: a refused apply
	// must not take it out either.
	p.spec.Tables.Exclude = []string{"public.scratch", "public.events"}
	p.apply(t, p.publication)
	c := p.observe(t, p.subscription)
	text := strings.Join(c.Blockers, "\n")
	if c.Action != plans.ActionBlocker {
		t.Errorf("plan for tables rejoining with rows on green: %s %q %v, want a blocker", c.Action, c.Summary, c.Details)
	}
	for _, want := range []string{
		"green's public.accounts already holds 5000 rows from before it left the replication",
		"green's public.notes already holds 100 rows from before it left the replication",
		"TRUNCATE it on green (TRUNCATE public.accounts;), then apply",
		"TRUNCATE it on green (TRUNCATE public.notes;), then apply",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the plan's blockers lack %q:\n%s", want, text)
		}
	}
	failed := failedPreconditions(t, p)
	if !strings.Contains(failed, "public.accounts already holds 5000 rows") || !strings.Contains(failed, "public.notes already holds 100 rows") {
		t.Errorf("preconditions must fail naming both tables, failed:\n%s", failed)
	}
	before := subscribed() + " " + counts(p.green)
	err := p.subscription.Apply(testCtx(t), p.env.ForStep(p.subscription.ID()))
	if err == nil || !strings.Contains(err.Error(), "public.accounts") || !strings.Contains(err.Error(), "public.notes") || !strings.Contains(err.Error(), "TRUNCATE") {
		t.Errorf("apply with rows on green: %v, want a refusal naming both tables and the fix", err)
	}
	if after := subscribed() + " " + counts(p.green); after != before {
		t.Errorf("a refused apply changed green: %s -> %s", before, after)
	}
	if before != "events 5000/100/3000" {
		t.Errorf("green before the fix = %s, want events 5000/100/3000", before)
	}

	// The fix the message names.
	p.green.Exec(t, "app", "TRUNCATE accounts, notes")
	if c := p.observe(t, p.subscription); c.Action != plans.ActionChange {
		t.Errorf("plan after TRUNCATE on green: %s %q %v, want a change", c.Action, c.Summary, c.Blockers)
	}
	p.apply(t, p.subscription, p.catchup)
	if got := subscribed(); got != "accounts,notes" {
		t.Errorf("subscribed tables after the refresh = %q, want accounts,notes", got)
	}
	p.waitSame(t, "accounts", "notes")
	if got := counts(p.green); !strings.HasPrefix(got, "5030/119/") {
		t.Errorf("green's counts accounts/notes = %s, want 5030/119 as on blue", got)
	}
	res, err := rowcompare.Compare(testCtx(t), p.blue.Conn(t, "app"), p.green.Conn(t, "app"), []string{"public.accounts", "public.notes"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !r.Equal {
			t.Errorf("after the rejoin: %s", r)
		}
	}
	if c := p.observe(t, p.subscription); c.Action != plans.ActionNone {
		t.Errorf("plan after the rejoin: %s %q %v", c.Action, c.Summary, c.Details)
	}
	if method == "native" {
		testRecreatedOntoRows(t, p)
		testTableRemadeOnBlue(t, p)
	}
}

// testTableRemadeOnBlue: a table dropped and made again on blue leaves the
// publication and comes back while green keeps its old copy: the same
// blocker, the same fix.
func testTableRemadeOnBlue(t *testing.T, p *replPair) {
	p.blue.Exec(t, "app", "DROP TABLE notes")
	p.apply(t, p.publication, p.subscription)
	p.blue.Exec(t, "app", `CREATE TABLE notes (body text); ALTER TABLE notes REPLICA IDENTITY FULL;
		INSERT INTO notes SELECT 'remade ' || g FROM generate_series(1, 7) g`)
	p.apply(t, p.publication)
	c := p.observe(t, p.subscription)
	if text := strings.Join(c.Blockers, "\n"); c.Action != plans.ActionBlocker || !strings.Contains(text, "green's public.notes already holds 119 rows") {
		t.Errorf("plan for notes made again on blue: %s %q %v, want a blocker naming green's 119 rows", c.Action, c.Summary, c.Blockers)
	}
	p.green.Exec(t, "app", "TRUNCATE notes")
	p.apply(t, p.subscription, p.catchup)
	p.waitSame(t, "notes")
	if n := p.green.Scalar(t, "app", "SELECT count(*) FROM notes"); n != "7" {
		t.Errorf("green's notes after the copy: %s rows, want 7", n)
	}
}

// failedPreconditions runs the step's Check as apply does before Apply.
func failedPreconditions(t *testing.T, p *replPair) string {
	t.Helper()
	pre, err := p.subscription.Check(testCtx(t), p.env.ForStep(p.subscription.ID()))
	if err != nil {
		t.Fatal(err)
	}
	failed := ""
	for _, pc := range pre {
		if !pc.OK {
			failed += pc.Name + ": " + pc.Detail + "\n"
		}
	}
	return failed
}

// testRecreatedOntoRows: a subscription rolled back on its own (rollback
// --step target.subscription) is created again with the native copy long
// after preflight.target looked, onto tables that kept their rows: its
// preconditions must stop that copy, and pass once green is emptied.
func testRecreatedOntoRows(t *testing.T, p *replPair) {
	p.rollback(t, p.subscription)
	failed := failedPreconditions(t, p)
	for _, want := range []string{
		"green tables empty before the initial copy",
		"green's public.accounts already holds 5030 rows, and the initial copy adds all of blue's rows on top of them: TRUNCATE it on green (TRUNCATE public.accounts;), then apply",
		"green's public.notes already holds 119 rows",
	} {
		if !strings.Contains(failed, want) {
			t.Errorf("preconditions of a second CREATE SUBSCRIPTION onto full tables lack %q; failed:\n%s", want, failed)
		}
	}
	p.green.Exec(t, "app", "TRUNCATE accounts, notes")
	if failed := failedPreconditions(t, p); failed != "" {
		t.Errorf("preconditions after TRUNCATE on green failed:\n%s", failed)
	}
	p.apply(t, p.subscription, p.catchup)
	p.waitSame(t, "accounts", "notes")
	res, err := rowcompare.Compare(testCtx(t), p.blue.Conn(t, "app"), p.green.Conn(t, "app"), []string{"public.accounts", "public.notes"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !r.Equal || r.GreenRows != map[string]int64{"public.accounts": 5030, "public.notes": 119}[r.Table] {
			t.Errorf("after the second copy: %s", r)
		}
	}
}
