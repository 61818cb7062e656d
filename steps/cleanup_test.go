package steps

import (
	"strconv"
	"strings"
	"testing"
)

// testCleanup runs on the pipeline's pair (see subscription_test.go): it
// builds the forward objects with the steps and reverse ones by hand, as the
// cutover leaves them, then cleans up twice.
func testCleanup(t *testing.T, p *replPair) {
	p.green.Exec(t, "app", "TRUNCATE accounts, events, notes, late")
	p.apply(t, p.publication, p.slot, p.subscription)
	reverse := p.spec.ReverseName()
	p.green.Exec(t, "app", "CREATE PUBLICATION "+reverse+" FOR TABLE accounts")
	p.green.Exec(t, "app", "SELECT pg_create_logical_replication_slot('"+reverse+"', 'pgoutput')")
	// Disabled: an enabled reverse subscription would echo forward changes.
	p.blue.Exec(t, "app", "CREATE SUBSCRIPTION "+reverse+" CONNECTION 'host=127.0.0.1 port="+strconv.Itoa(p.green.Port)+
		" dbname=app user=postgres' PUBLICATION "+reverse+" WITH (create_slot = false, slot_name = '"+reverse+"', enabled = false, copy_data = false)")

	ctx := testCtx(t)
	env := p.env.ForStep("cleanup")
	plan, err := PlanCleanup(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range plan.Actions {
		got = append(got, a.Side+" "+a.Kind+" "+a.Name)
	}
	want := []string{
		"green subscription pgshift_orders_pg",
		"blue subscription pgshift_orders_pg_reverse",
		"blue slot pgshift_orders_pg",
		"green slot pgshift_orders_pg_reverse",
		"blue publication pgshift_orders_pg",
		"green publication pgshift_orders_pg_reverse",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("cleanup plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, a := range plan.Actions {
		if err := a.Drop(ctx, env); err != nil {
			t.Fatalf("drop %s %s: %v", a.Kind, a.Name, err)
		}
	}
	if got := p.objects(t); got != "publications=0 slots=0 subscriptions=0" {
		t.Errorf("after cleanup, blue publications/slots, green subscriptions: %s", got)
	}
	green := p.green.Scalar(t, "app", "SELECT (SELECT count(*) FROM pg_publication) || '/' || (SELECT count(*) FROM pg_replication_slots)")
	blue := p.blue.Scalar(t, "app", "SELECT count(*) FROM pg_subscription")
	if green != "0/0" || blue != "0" {
		t.Errorf("reverse objects left: green publications/slots %s, blue subscriptions %s", green, blue)
	}

	again, err := PlanCleanup(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Actions) != 0 {
		t.Errorf("second cleanup wants to drop %d objects", len(again.Actions))
	}

	// A publication of that name pgshift did not create is kept.
	p.blue.Exec(t, "app", "CREATE PUBLICATION pgshift_orders_pg FOR TABLE accounts")
	kept, err := PlanCleanup(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept.Actions) != 0 || len(kept.Notes) != 1 || !strings.Contains(kept.Notes[0], "kept") {
		t.Errorf("a user's publication must be kept and said so: %+v", kept)
	}
	p.blue.Exec(t, "app", "DROP PUBLICATION pgshift_orders_pg")
}
