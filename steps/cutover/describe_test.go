package cutover

import (
	"strings"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
)

// Offline parts of the cutover: the gate, the plan text, the freeze modes
// and the reverse subscription's SQL. No server is started.

func cutoverTestSpec() *spec.Spec {
	s := &spec.Spec{
		Name:   "orders-pg17",
		Source: spec.Endpoint{DSN: "postgres://replicator@blue.internal:5432/orders"},
		Target: spec.Endpoint{DSN: "postgres://postgres@green.internal:5433/orders", PasswordEnv: "GREEN_PASSWORD"},
		Cutover: spec.CutoverSpec{
			ReverseReplication: true,
			Switch:             spec.SwitchSpec{PgBouncer: &spec.PgBouncerSwitch{AdminDSN: "postgres://pgbouncer@127.0.0.1:6432/pgbouncer", Config: "/etc/pgbouncer/pgbouncer.ini", Database: "orders"}},
		},
	}
	s.SetDefaults()
	return s
}

func TestCutoverGate(t *testing.T) {
	spec := cutoverTestSpec()
	g := (&cutoverStep{spec: spec}).Gate()
	for _, want := range []string{"pooler", "10s", "PgBouncer", "replicates green back to blue"} {
		if !strings.Contains(g, want) {
			t.Errorf("gate %q does not say %q", g, want)
		}
	}
	spec.Cutover.Approval = "auto"
	if g := (&cutoverStep{spec: spec}).Gate(); g != "" {
		t.Errorf("approval auto: gate %q", g)
	}
}

func TestCutoverDescribe(t *testing.T) {
	spec := cutoverTestSpec()
	c := (&cutoverStep{spec: spec}).Describe()
	text := c.Summary + "\n" + strings.Join(c.Details, "\n")
	if c.Action != plans.ActionCreate {
		t.Errorf("action %s", c.Action)
	}
	for _, want := range []string{
		`ALTER SUBSCRIPTION "pgshift_orders_pg17" DISABLE on green`,
		`CREATE PUBLICATION "pgshift_orders_pg17_reverse" on green`,
		`pg_create_logical_replication_slot('pgshift_orders_pg17_reverse', 'pgoutput') on green`,
		`ALTER SUBSCRIPTION "pgshift_orders_pg17_reverse" ENABLE on blue`,
		"copy every sequence + 1000",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("plan does not show %q:\n%s", want, text)
		}
	}
	// The slot is made inside the freeze, after the forward subscription
	// stopped: the plan lists them in that order.
	if strings.Index(text, "DISABLE on green") > strings.Index(text, "pg_create_logical_replication_slot") {
		t.Errorf("the reverse slot must come after the forward subscription stops:\n%s", text)
	}
	spec.Cutover.ReverseReplication = false
	c = (&cutoverStep{spec: spec}).Describe()
	if strings.Contains(strings.Join(c.Details, "\n"), "reverse") {
		t.Errorf("without reverse replication the plan mentions it:\n%s", strings.Join(c.Details, "\n"))
	}
	if d := (&cutoverStep{spec: spec}).DescribeRollback(); !strings.Contains(d, "refused") {
		t.Errorf("rollback without reverse replication should be refused: %q", d)
	}
}

func TestFreezeModes(t *testing.T) {
	for mode, want := range map[string][2]bool{"pooler": {true, false}, "read-only": {false, true}, "both": {true, true}} {
		p, ro := freezeModes(mode)
		if p != want[0] || ro != want[1] {
			t.Errorf("freeze %s: pooler %v read-only %v", mode, p, ro)
		}
	}
}

func TestAbortReserveKeepsTheFreezeWithinPauseTimeout(t *testing.T) {
	for _, pause := range []time.Duration{time.Second, 10 * time.Second, time.Minute} {
		r := abortReserve(pause)
		if r <= 0 || r >= pause {
			t.Errorf("pause %s: reserve %s", pause, r)
		}
	}
}

func TestReverseSubscriptionSQL(t *testing.T) {
	spec := cutoverTestSpec()
	full, redacted, err := pg.SubscriptionConninfo(spec.Target.DSN, `pa'ss w\rd`)
	if err != nil {
		t.Fatal(err)
	}
	sql := reverseSubscriptionSQL(spec, redacted, []string{"binary = 'true'"})
	if strings.Contains(sql, "pa'ss") || !strings.Contains(sql, "password=********") {
		t.Errorf("redacted SQL shows the password: %s", sql)
	}
	for _, want := range []string{"enabled = false", "create_slot = false", "copy_data = false", "binary = 'true'", "slot_name = 'pgshift_orders_pg17_reverse'", "host=green.internal port=5433"} {
		if !strings.Contains(sql, want) {
			t.Errorf("reverse subscription SQL lacks %q: %s", want, sql)
		}
	}
	// The real conninfo is one literal: quotes doubled, nothing escapes it.
	if got := reverseSubscriptionSQL(spec, full, nil); !strings.Contains(got, `CONNECTION E'host=green.internal port=5433 dbname=orders user=postgres password=''pa\\''ss w\\\\rd'''`) {
		t.Errorf("conninfo not quoted as a literal: %s", got)
	}
}

func TestFailedPreconditions(t *testing.T) {
	if err := failedPreconditions([]plans.Precondition{{Name: "a", OK: true}}); err != nil {
		t.Fatal(err)
	}
	err := failedPreconditions([]plans.Precondition{{Name: "verify passed", OK: false, Detail: `last verify: "failed"`}})
	if err == nil || !strings.Contains(err.Error(), "nothing was frozen") || !strings.Contains(err.Error(), "verify passed") {
		t.Fatalf("%v", err)
	}
}
