package e2e

import (
	"strings"
	"testing"
)

// TestVerifyPagilaDifferences plants differences on green in pagila's
// composite-key tables, among them the partitioned payment keyed by
// (payment_date, payment_id), while pgbench keeps writing to blue: verify
// names each table with its keys, and nothing else.
func TestVerifyPagilaDifferences(t *testing.T) {
	integration(t)
	t.Parallel()
	blue, green, dir, spec := pagilaPair(t, "planted")
	bench := startPgbench(t, blue, "pagila")

	if r := pgshift(t, dir, "apply", "-f", spec, "--until", "replication.catchup"); r.code != 0 {
		t.Fatalf("apply --until replication.catchup:\n%s", r)
	}
	green.Exec(t, "pagila", `ALTER SUBSCRIPTION pgshift_planted DISABLE`)
	// Rows pgbench never writes: a payment of March (changed), film_actor
	// (one missing, one extra), film_category (missing).
	green.Exec(t, "pagila", `
		UPDATE public.payment SET amount = amount + 100
		 WHERE payment_id = (SELECT min(payment_id) FROM public.payment_p2022_03);
		DELETE FROM public.film_actor WHERE actor_id = 7 AND film_id = (SELECT min(film_id) FROM public.film_actor WHERE actor_id = 7);
		INSERT INTO public.film_actor (actor_id, film_id) VALUES (1, 999);
		DELETE FROM public.film_category WHERE film_id = 500`)
	green.Exec(t, "pagila", `ALTER SUBSCRIPTION pgshift_planted ENABLE`)
	greenConn := connect(t, green.DSN("pagila"))
	payKey := scalar[string](t, greenConn, `SELECT payment_id::text FROM public.payment_p2022_03 ORDER BY payment_id LIMIT 1`)

	r := pgshift(t, dir, "apply", "-f", spec)
	bench.stop(t)
	if r.code == 0 {
		t.Fatalf("apply passed verify with differences planted on green:\n%s", r)
	}
	out := r.stdout + r.stderr
	for _, want := range []string{"public.payment: ", "(payment_date, payment_id)=(", ", " + payKey + ") differs",
		"public.film_actor: ", "(actor_id, film_id)=(1, 999) only on green", "public.film_category: ", "(film_id, category_id)=(500, "} {
		if !strings.Contains(out, want) {
			t.Errorf("the verify report lacks %q", want)
		}
	}
	for _, tbl := range []string{"public.customer", "public.pgbench_accounts", "public.pgbench_history", "public.pgbench_tellers", "public.actor"} {
		if strings.Contains(out, tbl+":") {
			t.Errorf("the verify report names %s, where nothing was planted", tbl)
		}
	}
	if t.Failed() {
		t.Fatalf("verify report:\n%s", r)
	}
	t.Logf("verify report:\n%s", r.stdout)
}
