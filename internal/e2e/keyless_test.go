package e2e

import (
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestKeylessTableAndVerify: a table without a primary key blocks the plan
// and apply (naming it and the fix) until it gets REPLICA IDENTITY FULL;
// then its rows, updates and deletes replicate. Differences planted on
// green (a changed row, a missing row, an extra row) are found by verify,
// which names the table and the key range, and apply fails with that
// report; once green is repaired, apply passes verify and stops at the gate.
func TestKeylessTableAndVerify(t *testing.T) {
	integration(t)
	t.Parallel()
	cs := pgtest.StartClusters(t, []int{13, 16})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(t, "shop")
	green.CreateDatabase(t, "shop")
	blue.Exec(t, "shop", `
		CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2));
		INSERT INTO public.items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 2000) g;
		CREATE TABLE public.events (at timestamptz NOT NULL, kind text, payload jsonb);
		INSERT INTO public.events SELECT timestamptz '2024-01-01' + g * interval '1 minute', 'k' || (g % 7), jsonb_build_object('n', g)
		  FROM generate_series(1, 500) g;`)
	dir, spec := writeSpec(t, specOptions{name: "shop", blue: blue.DSN("shop"), green: green.DSN("shop")})
	blueConn, greenConn := connect(t, blue.DSN("shop")), connect(t, green.DSN("shop"))

	t.Run("a table without a key is a blocker", func(t *testing.T) {
		r := pgshift(t, dir, "plan", "-f", spec, "--no-color")
		if !strings.Contains(r.stdout, "public.events") || !strings.Contains(r.stdout, "REPLICA IDENTITY FULL") ||
			strings.Contains(r.stdout, " 0 blockers") || r.code != 1 {
			t.Fatalf("plan does not block on public.events with the fix:\n%s", r)
		}
		var blocked bool
		for _, s := range planSteps(t, dir, spec).Steps {
			if s.Action == "blocker" && strings.Contains(strings.Join(s.Blockers, "\n"), "public.events") {
				blocked = true
			}
		}
		if !blocked {
			t.Fatal("plan --format json: no step blocks on public.events")
		}
		r = pgshift(t, dir, "apply", "-f", spec)
		if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "public.events") || !strings.Contains(r.stdout+r.stderr, "REPLICA IDENTITY FULL") {
			t.Fatalf("apply with a keyless table: want a failure naming public.events\n%s", r)
		}
		if o := countObjects(t, blueConn, greenConn); o.publications != 0 || o.slots != 0 || o.subscriptions != 0 {
			t.Fatalf("apply refused yet created objects: %+v", o)
		}
		if n := scalar[int](t, greenConn, `SELECT count(*)::int FROM pg_tables WHERE schemaname = 'public'`); n != 0 {
			t.Fatalf("apply refused yet green holds %d tables", n)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("with REPLICA IDENTITY FULL it replicates", func(t *testing.T) {
		blue.Exec(t, "shop", `ALTER TABLE public.events REPLICA IDENTITY FULL`)
		r := pgshift(t, dir, "plan", "-f", spec, "--no-color")
		if r.code != 0 || !strings.Contains(r.stdout, "0 blockers") {
			t.Fatalf("plan after REPLICA IDENTITY FULL:\n%s", r)
		}
		// Up to the catch-up only: verify runs in the next subtest, after
		// green has been tampered with.
		r = pgshift(t, dir, "apply", "-f", spec, "--until", "replication.catchup")
		if r.code != 0 {
			t.Fatalf("apply --until replication.catchup:\n%s", r)
		}
		blue.Exec(t, "shop", `
			INSERT INTO public.events VALUES ('2025-01-01', 'late', '{"n": 0}');
			UPDATE public.events SET kind = 'changed' WHERE payload->>'n' = '10';
			DELETE FROM public.events WHERE payload->>'n' = '20';
			UPDATE public.items SET price = price + 1 WHERE id <= 10`)
		waitCaughtUp(t, blueConn, "pgshift_shop")
		res := compareAll(t, blue.DSN("shop"), green.DSN("shop"))
		if ev := res["public.events"]; ev.GreenRows != 500 {
			t.Fatalf("public.events on green: %s, want 500 rows", ev)
		}
		if n := scalar[int](t, greenConn, `SELECT count(*)::int FROM public.events WHERE kind = 'changed'`); n != 1 {
			t.Fatalf("an update of the keyless table did not reach green (%d changed rows)", n)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("verify names planted differences", func(t *testing.T) {
		// The subscription is stopped while green is tampered with, so that
		// nothing of blue's races the planted rows; verify needs it running.
		green.Exec(t, "shop", `ALTER SUBSCRIPTION pgshift_shop DISABLE`)
		green.Exec(t, "shop", `
			UPDATE public.items SET name = 'tampered' WHERE id = 1200;
			DELETE FROM public.items WHERE id = 1500;
			INSERT INTO public.items VALUES (900000, 'extra', 1);
			DELETE FROM public.events WHERE payload->>'n' = '30'`)
		green.Exec(t, "shop", `ALTER SUBSCRIPTION pgshift_shop ENABLE`)
		r := pgshift(t, dir, "apply", "-f", spec)
		if r.code == 0 {
			t.Fatalf("apply passed verify with differences planted on green:\n%s", r)
		}
		out := r.stdout + r.stderr
		for _, want := range []string{"verify", "public.items", "id=1200", "id=1500", "id=900000", "public.events"} {
			if !strings.Contains(out, want) {
				t.Errorf("the verify report lacks %q", want)
			}
		}
		if !strings.Contains(out, "id=1200 .. id=900000") {
			t.Errorf("the verify report lacks the key range of public.items (id=1200 .. id=900000)")
		}
		if t.Failed() {
			t.Fatalf("verify report:\n%s", r)
		}
		t.Logf("verify report:\n%s", r.stdout)
		st, _ := readState(t, spec[:strings.LastIndex(spec, "/")]+"/shop.pgshift-state.json")
		if s := st.status("verify"); s != "failed" {
			t.Fatalf("verify is %q in the state, want failed", s)
		}
		if s := st.status("cutover"); s == "done" || s == "running" {
			t.Fatalf("cutover is %q after a failed verify", s)
		}

		// Repaired, verify passes and apply stops at the cutover gate.
		green.Exec(t, "shop", `ALTER SUBSCRIPTION pgshift_shop DISABLE`)
		green.Exec(t, "shop", `
			UPDATE public.items SET name = 'item 1200' WHERE id = 1200;
			INSERT INTO public.items VALUES (1500, 'item 1500', 2250.00);
			DELETE FROM public.items WHERE id = 900000;
			INSERT INTO public.events SELECT * FROM (VALUES (timestamptz '2024-01-01' + 30 * interval '1 minute', 'k2', '{"n": 30}'::jsonb)) v`)
		green.Exec(t, "shop", `ALTER SUBSCRIPTION pgshift_shop ENABLE`)
		compareAll(t, blue.DSN("shop"), green.DSN("shop"))
		r = pgshift(t, dir, "apply", "-f", spec)
		if r.code != 0 || !strings.Contains(r.stdout, "Apply stopped before cutover") {
			t.Fatalf("apply after green was repaired:\n%s", r)
		}
	})
}
