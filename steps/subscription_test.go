package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/cutover"
	"github.com/pgshift/pgshift/steps/stepid"
)

// The replication pipeline (publication, slot, subscription, catch-up,
// rollback, cleanup) on one blue/green pair per supported direction.
func TestReplicationPipeline13To17(t *testing.T) { testReplicationPipeline(t, 13, 17) }
func TestReplicationPipeline15To18(t *testing.T) { testReplicationPipeline(t, 15, 18) }

// blueSchema holds every shape the pipeline must carry: a plain table, a
// partitioned table, a table without a key but with REPLICA IDENTITY FULL,
// and an excluded table that must stay out of the publication.
const blueSchema = `
CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric NOT NULL DEFAULT 0);
CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, payload text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE notes (body text);
ALTER TABLE notes REPLICA IDENTITY FULL;
CREATE TABLE scratch (id serial PRIMARY KEY, filler text);
INSERT INTO accounts SELECT g, 'owner ' || g, g * 10 FROM generate_series(1, 5000) g;
INSERT INTO events SELECT g, date '2024-01-01' + (g % 700), 'payload ' || g FROM generate_series(1, 3000) g;
INSERT INTO notes SELECT 'note ' || g FROM generate_series(1, 100) g;
`

// greenSchema partitions events differently (by hash, three ways): rows
// published through blue's root must land in green's own partitions.
const greenSchema = `
CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric NOT NULL DEFAULT 0);
CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, payload text, PRIMARY KEY (id, at)) PARTITION BY HASH (id);
CREATE TABLE events_h0 PARTITION OF events FOR VALUES WITH (MODULUS 3, REMAINDER 0);
CREATE TABLE events_h1 PARTITION OF events FOR VALUES WITH (MODULUS 3, REMAINDER 1);
CREATE TABLE events_h2 PARTITION OF events FOR VALUES WITH (MODULUS 3, REMAINDER 2);
CREATE TABLE notes (body text);
`

const testPasswordEnv = "PGSHIFT_TEST_BLUE_PASSWORD"

// testSecret has both characters libpq and SQL quoting must escape.
const testSecret = `s3cr'et\pw`

type replPair struct {
	blue, green *pgtest.Cluster
	spec        *spec.Spec
	env         *engine.Env
	logs        *pgtest.LogBuffer

	publication, slot, subscription, catchup engine.Step
}

func requireIntegration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
}

func newReplPair(t *testing.T, blueMajor, greenMajor int) *replPair {
	t.Helper()
	cs := pgtest.StartClusters(t, []int{blueMajor, greenMajor})
	p := &replPair{blue: cs[0], green: cs[1]}
	p.blue.CreateDatabase(t, "app")
	p.green.CreateDatabase(t, "app")
	p.blue.Exec(t, "app", blueSchema)
	p.green.Exec(t, "app", greenSchema)
	// Trust authentication ignores the password, but it still travels in
	// the subscription's conninfo: the test checks where it shows.
	t.Setenv(testPasswordEnv, testSecret)
	p.spec = &spec.Spec{
		Name:   "orders-pg",
		Source: spec.Endpoint{DSN: p.blue.DSN("app"), PasswordEnv: testPasswordEnv},
		Target: spec.Endpoint{DSN: p.green.DSN("app")},
		Tables: spec.TablesSpec{Exclude: []string{"public.scratch"}},
	}
	p.spec.SetDefaults()
	p.logs = &pgtest.LogBuffer{}
	log := hclog.New(&hclog.LoggerOptions{Output: p.logs, Level: hclog.Debug})
	p.env = engine.NewEnv(p.spec, log)
	t.Cleanup(p.env.Close)
	p.publication = &publicationStep{spec: p.spec}
	p.slot = &slotStep{spec: p.spec}
	p.subscription = &subscriptionStep{spec: p.spec}
	p.catchup = &catchupStep{spec: p.spec, poll: 200 * time.Millisecond, progress: 2 * time.Second}
	return p
}

func (p *replPair) steps() []engine.Step {
	return []engine.Step{p.publication, p.slot, p.subscription, p.catchup}
}

// ctx bounds every call so that a hang fails the test instead of the suite.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (p *replPair) apply(t *testing.T, steps ...engine.Step) {
	t.Helper()
	ctx := testCtx(t)
	for _, s := range steps {
		if err := s.Apply(ctx, p.env.ForStep(s.ID())); err != nil {
			t.Fatalf("apply %s: %v\nlog:\n%s", s.ID(), err, p.logs)
		}
	}
}

func (p *replPair) rollback(t *testing.T, steps ...engine.Step) {
	t.Helper()
	ctx := testCtx(t)
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		if err := s.Rollback(ctx, p.env.ForStep(s.ID())); err != nil {
			t.Fatalf("rollback %s: %v\nlog:\n%s", s.ID(), err, p.logs)
		}
	}
}

func (p *replPair) observe(t *testing.T, s engine.Step) plans.Change {
	t.Helper()
	c, err := s.Observe(testCtx(t), p.env.ForStep(s.ID()))
	if err != nil {
		t.Fatalf("observe %s: %v", s.ID(), err)
	}
	return c
}

// objects counts pgshift's replication objects on both sides.
func (p *replPair) objects(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("publications=%s slots=%s subscriptions=%s",
		p.blue.Scalar(t, "app", "SELECT count(*) FROM pg_publication"),
		p.blue.Scalar(t, "app", "SELECT count(*) FROM pg_replication_slots"),
		p.green.Scalar(t, "app", "SELECT count(*) FROM pg_subscription"))
}

// tableDigest is an order-independent fingerprint of a table's rows,
// computed by the servers themselves.
func tableDigest(t *testing.T, c *pgtest.Cluster, table string) string {
	t.Helper()
	return c.Scalar(t, "app", fmt.Sprintf(
		"SELECT count(*) || ':' || coalesce(md5(string_agg(md5(x::text), '' ORDER BY md5(x::text))), '') FROM %s x", table))
}

// waitSame waits until green holds the same rows as blue in every table
// (replication is asynchronous; the bound only stops a hang).
func (p *replPair) waitSame(t *testing.T, tables ...string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var diff []string
		for _, tb := range tables {
			b, g := tableDigest(t, p.blue, tb), tableDigest(t, p.green, tb)
			if b != g {
				diff = append(diff, fmt.Sprintf("%s: blue %s green %s", tb, b, g))
			}
		}
		if len(diff) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("green never matched blue:\n%s\nlog:\n%s", strings.Join(diff, "\n"), p.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var replicatedTables = []string{"accounts", "events", "notes", "late"}

func testReplicationPipeline(t *testing.T, blueMajor, greenMajor int) {
	requireIntegration(t)
	p := newReplPair(t, blueMajor, greenMajor)

	t.Run("plan shows creates with the SQL and no secret", func(t *testing.T) {
		for _, s := range []engine.Step{p.publication, p.slot, p.subscription} {
			c := p.observe(t, s)
			if c.Action != plans.ActionCreate {
				t.Errorf("%s: action %s (%s), want create", s.ID(), c.Action, c.Summary)
			}
		}
		pub := p.observe(t, p.publication)
		sql := strings.Join(pub.Details, "\n")
		if !strings.Contains(sql, `FOR TABLE "public"."accounts", "public"."events", "public"."notes"`) ||
			!strings.Contains(sql, "publish_via_partition_root = true") || strings.Contains(sql, "scratch") {
			t.Errorf("publication SQL must list exactly the selected tables, via the partition root:\n%s", sql)
		}
		sub := p.observe(t, p.subscription)
		all := sub.Summary + strings.Join(sub.Details, "\n")
		if strings.Contains(all, "s3cr") || !strings.Contains(all, "password=********") {
			t.Errorf("subscription plan must show the password masked, never in clear:\n%s", all)
		}
		if !strings.Contains(all, "create_slot = false") || !strings.Contains(all, "slot_name = 'pgshift_orders_pg'") {
			t.Errorf("subscription must use the slot source.slot creates:\n%s", all)
		}
	})

	t.Run("apply creates the objects and rows flow", func(t *testing.T) {
		p.apply(t, p.steps()...)
		got := p.blue.Scalar(t, "app", `SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_publication_rel pr
			JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = 'pgshift_orders_pg'`)
		if got != "accounts,events,notes" {
			t.Errorf("published tables = %s, want accounts,events,notes", got)
		}
		if v := p.blue.Scalar(t, "app", "SELECT pubviaroot FROM pg_publication WHERE pubname = 'pgshift_orders_pg'"); v != "t" {
			t.Errorf("pubviaroot = %s, want t", v)
		}
		if v := p.blue.Scalar(t, "app", "SELECT plugin || '/' || slot_type FROM pg_replication_slots WHERE slot_name = 'pgshift_orders_pg'"); v != "pgoutput/logical" {
			t.Errorf("slot = %s", v)
		}
		if lsn, ok := p.env.Output(stepid.Slot, "consistent_lsn"); !ok || !strings.Contains(lsn, "/") {
			t.Errorf("slot's consistent LSN not recorded: %q", lsn)
		}
		if n, _ := p.env.Output(stepid.Catchup, "tables"); n != "3" {
			t.Errorf("catch-up recorded %q tables, want 3", n)
		}
		p.waitSame(t, replicatedTables[:3]...)
		// Every green partition got rows: they were routed by green's layout.
		for _, part := range []string{"events_h0", "events_h1", "events_h2"} {
			if n := p.green.Scalar(t, "app", "SELECT count(*) FROM "+part); n == "0" {
				t.Errorf("green partition %s is empty", part)
			}
		}
		// Changes after the copy: updates and deletes, also on the
		// key-less table through REPLICA IDENTITY FULL.
		p.blue.Exec(t, "app", `UPDATE accounts SET balance = balance + 1 WHERE id % 7 = 0;
			DELETE FROM accounts WHERE id > 4900;
			UPDATE events SET at = at + 30 WHERE id % 11 = 0;
			UPDATE notes SET body = body || ' edited' WHERE body LIKE 'note 1%';
			DELETE FROM notes WHERE body = 'note 2';`)
		p.waitSame(t, replicatedTables[:3]...)
	})

	t.Run("the password reaches green's conninfo only", func(t *testing.T) {
		conninfo := p.green.Scalar(t, "app", "SELECT subconninfo FROM pg_subscription WHERE subname = 'pgshift_orders_pg'")
		if !strings.Contains(conninfo, `password='s3cr\'et\\pw'`) {
			t.Errorf("green authenticates with the password from password_env; stored conninfo: %q", strings.ReplaceAll(conninfo, testSecret, "<secret>"))
		}
		if strings.Contains(p.logs.String(), "s3cr") {
			t.Errorf("the log shows the password")
		}
	})

	t.Run("apply twice is a no-op", func(t *testing.T) {
		before := p.objects(t)
		for _, s := range p.steps() {
			if c := p.observe(t, s); c.Action != plans.ActionNone {
				t.Errorf("%s: action %s (%s %v), want none", s.ID(), c.Action, c.Summary, c.Details)
			}
		}
		p.apply(t, p.steps()...)
		if after := p.objects(t); after != before {
			t.Errorf("second apply changed the objects: %s -> %s", before, after)
		}
	})

	t.Run("reverse subscription takes the options blue's version accepts", func(t *testing.T) {
		ctx := testCtx(t)
		sp := *p.spec
		sp.Replication.Options = map[string]string{"binary": "true", "streaming": "on", "disable_on_error": "true", "origin": "none", "failover": "true"}
		env := engine.NewEnv(&sp, p.env.Log)
		defer env.Close()
		blue, err := env.Source.Pool(ctx)
		if err != nil {
			t.Fatal(err)
		}
		green, err := env.Target.Pool(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := cutover.EnsureReversePublication(ctx, env, blue, green); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := cutover.DropReverse(ctx, env, blue, green); err != nil {
				t.Errorf("drop reverse objects: %v", err)
			}
		}()
		if err := cutover.EnsureReverseSubscription(ctx, env, blue); err != nil {
			t.Fatal(err)
		}
		// streaming since 14, disable_on_error since 15, origin since 16;
		// binary and failover never on the reverse.
		skipped := []string{"binary", "streaming", "disable_on_error", "origin", "failover"}
		if blueMajor >= 15 {
			skipped = []string{"binary", "origin", "failover"}
			// substream is a boolean before 16 and a char ('f', 't', 'p') since.
			got := p.blue.Scalar(t, "app", "SELECT subbinary::text || '/' || (substream::text IN ('t', 'true'))::text FROM pg_subscription WHERE subname = 'pgshift_orders_pg_reverse'")
			if got != "false/true" {
				t.Errorf("reverse subscription on PostgreSQL %d: binary/streaming = %s, want false/true", blueMajor, got)
			}
		} else if n := p.blue.Scalar(t, "app", "SELECT count(*) FROM pg_subscription WHERE subname = 'pgshift_orders_pg_reverse'"); n != "1" {
			t.Errorf("no reverse subscription on PostgreSQL %d", blueMajor)
		}
		if blueMajor >= 15 {
			if v := p.blue.Scalar(t, "app", "SELECT subdisableonerr FROM pg_subscription WHERE subname = 'pgshift_orders_pg_reverse'"); v != "t" {
				t.Errorf("disable_on_error = %s on the reverse subscription, want t", v)
			}
		}
		for _, name := range skipped {
			if !strings.Contains(p.logs.String(), "replication.options."+name+": not used on the reverse subscription") {
				t.Errorf("the log does not say that %s was left off the reverse subscription:\n%s", name, p.logs)
			}
		}
	})

	t.Run("slot rollback refuses while green streams from it, naming the holder", func(t *testing.T) {
		// A walsender between two connections would let the slot go.
		waitUntil(t, "green's walsender to hold the slot", func() bool {
			return p.blue.Scalar(t, "app", "SELECT active FROM pg_replication_slots WHERE slot_name = 'pgshift_orders_pg'") == "t"
		})
		slot := &slotStep{spec: p.spec, inactiveWait: time.Second}
		err := slot.Rollback(testCtx(t), p.env.ForStep(stepid.Slot))
		if err == nil || !strings.Contains(err.Error(), "in use by walsender pid") || !strings.Contains(err.Error(), `"pgshift_orders_pg"`) {
			t.Errorf("want a refusal naming the walsender and the subscription, got %v", err)
		}
		if n := p.blue.Scalar(t, "app", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgshift_orders_pg'"); n != "1" {
			t.Errorf("the slot must be kept")
		}
	})

	t.Run("a table added on blue joins the publication and the subscription", func(t *testing.T) {
		ddl := "CREATE TABLE late (id int PRIMARY KEY, v text)"
		p.blue.Exec(t, "app", ddl+"; INSERT INTO late SELECT g, 'v' || g FROM generate_series(1, 50) g")
		p.green.Exec(t, "app", ddl)
		c := p.observe(t, p.publication)
		if c.Action != plans.ActionChange || !strings.Contains(strings.Join(c.Details, "\n"), "+ table public.late") {
			t.Errorf("publication: %s %v, want a change adding public.late", c.Action, c.Details)
		}
		p.apply(t, p.publication)
		c = p.observe(t, p.subscription)
		if c.Action != plans.ActionChange || !strings.Contains(strings.Join(c.Details, "\n"), "REFRESH PUBLICATION") {
			t.Errorf("subscription: %s %v, want a refresh", c.Action, c.Details)
		}
		p.apply(t, p.subscription, p.catchup)
		p.waitSame(t, "late")
		for _, s := range []engine.Step{p.publication, p.subscription} {
			if c := p.observe(t, s); c.Action != plans.ActionNone {
				t.Errorf("%s after the refresh: %s %v", s.ID(), c.Action, c.Details)
			}
		}
	})

	t.Run("catch-up returns while writes continue on blue", func(t *testing.T) {
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- writeUntil(p.blue.DSN("app"), stop) }()
		time.Sleep(500 * time.Millisecond)
		p.apply(t, p.catchup)
		close(stop)
		if err := <-done; err != nil {
			t.Fatalf("writer: %v", err)
		}
		lag, _ := p.env.Output(stepid.Catchup, "lag_bytes")
		var n int64
		if _, err := fmt.Sscan(lag, &n); err != nil || n < 0 || n > pg.CatchupThreshold(p.spec.Cutover.MaxLagBytes) {
			t.Errorf("catch-up returned with lag %q, threshold %d", lag, pg.CatchupThreshold(p.spec.Cutover.MaxLagBytes))
		}
		if !strings.Contains(p.logs.String(), "green caught up") {
			t.Errorf("no catch-up line in the log")
		}
		p.waitSame(t, replicatedTables...)
	})

	t.Run("catch-up on an idle blue after writes to an unpublished table", func(t *testing.T) {
		// 40 MB of WAL the subscription never receives: the slot must still
		// confirm past it once blue falls idle.
		p.blue.Exec(t, "app", "INSERT INTO scratch (filler) SELECT repeat('x', 1000) FROM generate_series(1, 40000)")
		p.apply(t, p.catchup)
		st, err := pg.ReadSlot(testCtx(t), mustPool(t, p.env.Source), p.spec.SlotName())
		if err != nil {
			t.Fatal(err)
		}
		if st.LagBytes < 0 || st.LagBytes > pg.CatchupThreshold(p.spec.Cutover.MaxLagBytes) {
			t.Errorf("lag after catch-up = %d", st.LagBytes)
		}
		// The marker catch-up writes when the lag stalls is valid on blue's
		// version.
		if lsn := p.blue.Scalar(t, "app", "SELECT pg_logical_emit_message(false, 'pgshift', 'catchup')"); !strings.Contains(lsn, "/") {
			t.Errorf("pg_logical_emit_message returned %q", lsn)
		}
		p.apply(t, p.catchup)
	})

	t.Run("catch-up waits until a lag above the threshold drains", func(t *testing.T) {
		// With the subscription disabled nothing consumes the slot, so the
		// lag is certainly above 16 MiB when catch-up starts.
		p.green.Exec(t, "app", "ALTER SUBSCRIPTION pgshift_orders_pg DISABLE")
		p.blue.Exec(t, "app", "INSERT INTO accounts SELECT 5000000 + g, repeat('w', 500), g FROM generate_series(1, 60000) g")
		st, err := pg.ReadSlot(testCtx(t), mustPool(t, p.env.Source), p.spec.SlotName())
		if err != nil {
			t.Fatal(err)
		}
		if st.LagBytes <= pg.CatchupThreshold(p.spec.Cutover.MaxLagBytes) {
			t.Fatalf("setup: lag %d is not above the threshold %d", st.LagBytes, pg.CatchupThreshold(p.spec.Cutover.MaxLagBytes))
		}
		c := p.observe(t, p.catchup)
		if c.Action != plans.ActionCreate || !strings.Contains(c.Summary, "wait:") {
			t.Errorf("plan with a large lag: %s %q, want a wait", c.Action, c.Summary)
		}
		// target.subscription's Apply enables it again.
		p.apply(t, p.subscription, p.catchup)
		st, err = pg.ReadSlot(testCtx(t), mustPool(t, p.env.Source), p.spec.SlotName())
		if err != nil {
			t.Fatal(err)
		}
		if st.LagBytes < 0 || st.LagBytes > pg.CatchupThreshold(p.spec.Cutover.MaxLagBytes) {
			t.Errorf("catch-up returned with lag %d, threshold %d", st.LagBytes, pg.CatchupThreshold(p.spec.Cutover.MaxLagBytes))
		}
		p.waitSame(t, replicatedTables...)
		// Keep the later copies small.
		p.blue.Exec(t, "app", "DELETE FROM accounts WHERE id > 5000000")
		p.waitSame(t, replicatedTables...)
	})

	t.Run("status reports per-table sync state and lag", func(t *testing.T) {
		var lines []string
		for _, s := range []engine.Step{p.subscription, p.catchup} {
			r, ok := s.(engine.Reporter)
			if !ok {
				t.Fatalf("%s does not report live facts", s.ID())
			}
			l, err := r.Report(testCtx(t), p.env)
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, l...)
		}
		text := strings.Join(lines, "\n")
		for _, want := range []string{"public.accounts", "public.late", "r (ready)", "4/4 tables ready", "lag "} {
			if !strings.Contains(text, want) {
				t.Errorf("status lacks %q:\n%s", want, text)
			}
		}
		families, err := p.env.Metrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		exported := false
		for _, f := range families {
			if f.GetName() != "pgshift_replication_lag_bytes" {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "subscription" && l.GetValue() == "pgshift_orders_pg" && m.GetGauge().GetValue() >= 0 {
						exported = true
					}
				}
			}
		}
		if !exported {
			t.Errorf("pgshift_replication_lag_bytes{subscription=\"pgshift_orders_pg\"} not exported")
		}
	})

	t.Run("catch-up names a slot blue invalidated", func(t *testing.T) {
		// Green stops reading; blue keeps at most 1 MB of WAL for the slot
		// and writes past it.
		p.green.Exec(t, "app", "ALTER SUBSCRIPTION "+pg.QuoteIdent(p.spec.SubscriptionName())+" DISABLE")
		p.blue.Exec(t, "app", "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
		p.blue.Exec(t, "app", "SELECT pg_reload_conf()")
		defer func() {
			p.blue.Exec(t, "app", "ALTER SYSTEM RESET max_slot_wal_keep_size")
			p.blue.Exec(t, "app", "SELECT pg_reload_conf()")
		}()
		lost := `SELECT coalesce(wal_status = 'lost', false) FROM pg_replication_slots WHERE slot_name = ` + pg.QuoteLiteral(p.spec.SlotName())
		for i := 0; p.blue.Scalar(t, "app", lost) != "t"; i++ {
			if i == 20 {
				t.Fatal("setup: blue did not invalidate the slot")
			}
			p.blue.Exec(t, "app", "UPDATE accounts SET balance = balance + 1")
			p.blue.Exec(t, "app", "SELECT pg_switch_wal()")
			p.blue.Exec(t, "app", "CHECKPOINT")
		}
		catchup := &catchupStep{spec: p.spec, poll: 100 * time.Millisecond}
		err := catchup.Apply(testCtx(t), p.env.ForStep(stepid.Catchup))
		if err == nil || !strings.Contains(err.Error(), "invalidated") || !strings.Contains(err.Error(), "max_slot_wal_keep_size") {
			t.Errorf("catch-up on an invalidated slot: %v, want an error naming the invalidation and the setting", err)
		}
	})

	t.Run("rollback drops everything without hanging", func(t *testing.T) {
		p.rollback(t, p.steps()...)
		if got := p.objects(t); got != "publications=0 slots=0 subscriptions=0" {
			t.Errorf("after rollback: %s", got)
		}
		// Idempotent.
		p.rollback(t, p.steps()...)
	})

	t.Run("a slot creation left waiting by a killed run is awaited, not repeated", func(t *testing.T) {
		testSlotCreationAwaited(t, p)
	})

	t.Run("apply after a partial state completes", func(t *testing.T) {
		// As after a crash right after source.slot: publication and slot on
		// blue, no subscription on green (whose tables were emptied).
		p.green.Exec(t, "app", "TRUNCATE accounts, events, notes, late")
		p.apply(t, p.publication, p.slot)
		if c := p.observe(t, p.subscription); c.Action != plans.ActionCreate {
			t.Fatalf("subscription: %s, want create", c.Action)
		}
		if c := p.observe(t, p.slot); c.Action != plans.ActionNone {
			t.Fatalf("slot: %s, want none", c.Action)
		}
		p.apply(t, p.steps()...)
		p.waitSame(t, replicatedTables...)
	})

	t.Run("apply finishes a rollback stopped after detaching the slot", func(t *testing.T) {
		p.green.Exec(t, "app", `ALTER SUBSCRIPTION pgshift_orders_pg DISABLE;
			ALTER SUBSCRIPTION pgshift_orders_pg SET (slot_name = NONE)`)
		if c := p.observe(t, p.subscription); c.Action != plans.ActionChange {
			t.Errorf("detached subscription: %s, want change", c.Action)
		}
		p.apply(t, p.subscription)
		p.blue.Exec(t, "app", "INSERT INTO late VALUES (1000, 'after reattach')")
		p.waitSame(t, replicatedTables...)
	})

	t.Run("rollback during the initial copy leaves no table-sync slot", func(t *testing.T) {
		p.rollback(t, p.subscription)
		p.green.Exec(t, "app", "TRUNCATE accounts, events, notes, late")
		// Large enough that the copy is still running when rollback starts.
		p.blue.Exec(t, "app", "INSERT INTO accounts SELECT g, repeat('o', 200), g FROM generate_series(100001, 250000) g")
		p.apply(t, p.subscription)
		p.rollback(t, p.steps()...)
		if got := p.objects(t); got != "publications=0 slots=0 subscriptions=0" {
			t.Errorf("after rollback mid-copy: %s", got)
		}
	})

	t.Run("subscription options are checked against the real servers", func(t *testing.T) {
		checkOptionMatrix(t, p.blue)
		checkOptionMatrix(t, p.green)
	})

	t.Run("an option green's version lacks is a clear error", func(t *testing.T) {
		// Use blue's cluster as an older "green": the step must refuse an
		// option that version does not have, naming both.
		opt, since := "binary", 14
		if blueMajor >= 14 {
			opt, since = "origin", 16
		}
		val := "true"
		if opt == "origin" {
			val = "none"
		}
		p.blue.CreateDatabase(t, "oldgreen")
		sp := *p.spec
		sp.Target = spec.Endpoint{DSN: p.blue.DSN("oldgreen")}
		sp.Replication.Options = map[string]string{opt: val}
		env := engine.NewEnv(&sp, hclog.NewNullLogger())
		defer env.Close()
		step := &subscriptionStep{spec: &sp}
		err := step.Apply(testCtx(t), env.ForStep(step.ID()))
		var ue *pg.UnsupportedOptionError
		if !errors.As(err, &ue) || ue.Green != blueMajor || ue.Since != since {
			t.Fatalf("want pg.UnsupportedOptionError naming PostgreSQL %d and %d, got %v", blueMajor, since, err)
		}
		if msg := err.Error(); !strings.Contains(msg, opt) || !strings.Contains(msg, fmt.Sprint(blueMajor)) {
			t.Errorf("message must name the option and green's version: %s", msg)
		}
		c, err := step.Observe(testCtx(t), env.ForStep(step.ID()))
		if err != nil || c.Action != plans.ActionBlocker {
			t.Errorf("plan must show a blocker: %v %v", c, err)
		}
	})

	t.Run("catch-up gives up, saying why, when the copy keeps failing", func(t *testing.T) {
		// Workers retry every wal_retrieve_retry_interval; make that quick.
		p.green.Exec(t, "app", "ALTER SYSTEM SET wal_retrieve_retry_interval = '200ms'")
		p.green.Exec(t, "app", "SELECT pg_reload_conf()")
		p.green.Exec(t, "app", "TRUNCATE accounts, events, notes, late; INSERT INTO accounts VALUES (1, 'already here', 0)")
		p.apply(t, p.publication, p.slot, p.subscription)
		catchup := &catchupStep{spec: p.spec, poll: 100 * time.Millisecond, maxErrors: 2}
		err := catchup.Apply(testCtx(t), p.env.ForStep(stepid.Catchup))
		if err == nil || !strings.Contains(err.Error(), "keeps failing") || !strings.Contains(err.Error(), "duplicate key") {
			t.Errorf("want an error naming the failing copy and the usual cause, got %v", err)
		}
		p.rollback(t, p.publication, p.slot, p.subscription)
		p.green.Exec(t, "app", "TRUNCATE accounts")
	})

	t.Run("cleanup drops every object and a second cleanup is a no-op", func(t *testing.T) {
		testCleanup(t, p)
	})

	t.Run("green authenticates to blue with the password it is given", func(t *testing.T) {
		testPasswordAuth(t, p)
	})
}

// checkOptionMatrix creates, inside a rolled-back transaction and without
// connecting, a subscription with each option of the matrix: a major at or
// past the option's "since" must accept it, an older one must refuse it.
func checkOptionMatrix(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	ctx := testCtx(t)
	conn, err := pgx.Connect(ctx, c.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	sample := func(name string) []string {
		switch name {
		case "synchronous_commit":
			return []string{"off"}
		case "origin":
			return []string{"none"}
		case "streaming":
			return []string{"on", "parallel"}
		}
		return []string{"true"}
	}
	for _, name := range pg.KnownSubscriptionOptions() {
		for _, v := range sample(name) {
			since := pg.OptionSince(name, v)
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(ctx, fmt.Sprintf("CREATE SUBSCRIPTION matrix_probe CONNECTION 'host=127.0.0.1 dbname=none' PUBLICATION p WITH (connect = false, %s = %s)", name, pg.QuoteLiteral(v)))
			_ = tx.Rollback(ctx)
			if accepted := err == nil; accepted != (c.Major >= since) {
				t.Errorf("PostgreSQL %d: option %s = %s accepted=%v (server: %v), but the matrix says since %d", c.Major, name, v, accepted, err, since)
			}
		}
	}
}

func mustPool(t *testing.T, db *engine.Database) pg.Querier {
	t.Helper()
	pool, err := db.Pool(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// writeUntil inserts and updates rows on blue, as an application would,
// until stop closes.
func writeUntil(dsn string, stop <-chan struct{}) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for i := 1000000; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		if _, err := conn.Exec(ctx, "INSERT INTO accounts VALUES ($1::bigint, 'writer', $1::bigint)", i); err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, "UPDATE accounts SET balance = balance + 1 WHERE id = $1::bigint", i-500); err != nil {
			return err
		}
	}
}

func init() {
	// Keep a developer's own password variable from leaking into tests.
	_ = os.Unsetenv(testPasswordEnv)
}
