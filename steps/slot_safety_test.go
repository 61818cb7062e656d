package steps

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/steps/stepid"
)

// TestSlotSafety13To17: what preflight and source.slot say about blue's
// other slots, its long transactions, the slots and workers the initial copy
// takes, and a slot of pgshift's name that pgshift did not create.
func TestSlotSafety13To17(t *testing.T) {
	requireIntegration(t)
	p := newReplPair(t, 13, 17)

	t.Run("inactive and lost slots on blue are named with the WAL they hold and the fix", func(t *testing.T) { testOtherSlots(t, p) })
	t.Run("a long transaction is named by preflight, logged while the slot waits, and Ctrl-C leaves nothing", func(t *testing.T) { testSlotWaitsForTransactions(t, p) })
	t.Run("a slot pgshift did not create is neither used nor dropped", func(t *testing.T) { testForeignSlot(t, p) })
	t.Run("too few slots, WAL senders or workers for the table sync block", func(t *testing.T) { testSyncCapacity(t, p) })
}

// freshEnv is a new environment without outputs (as without a state file)
// and with fresh pools (a subtest may restart a server).
func freshEnv(t *testing.T, p *replPair) (*engine.Env, *pgtest.LogBuffer) {
	t.Helper()
	logs := &pgtest.LogBuffer{}
	env := engine.NewEnv(p.spec, hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}))
	t.Cleanup(env.Close)
	return env, logs
}

func observeIn(t *testing.T, env *engine.Env, s engine.Step) plans.Change {
	t.Helper()
	c, err := s.Observe(testCtx(t), env.ForStep(s.ID()))
	if err != nil {
		t.Fatalf("observe %s: %v", s.ID(), err)
	}
	return c
}

func warningWith(c plans.Change, parts ...string) string {
	for _, w := range c.Warnings {
		ok := true
		for _, part := range parts {
			ok = ok && strings.Contains(w, part)
		}
		if ok {
			return w
		}
	}
	return ""
}

func testOtherSlots(t *testing.T, p *replPair) {
	pre := inspecting{preflightSource{}}
	// A slot blue invalidated: max_slot_wal_keep_size bounds what it keeps.
	p.blue.Exec(t, "app", "SELECT pg_create_logical_replication_slot('old_cdc', 'pgoutput')")
	p.blue.Exec(t, "app", "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
	p.blue.Exec(t, "app", "SELECT pg_reload_conf()")
	for i := 0; p.blue.Scalar(t, "app", "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'old_cdc'") != "lost"; i++ {
		if i == 20 {
			t.Fatal("setup: blue did not invalidate old_cdc")
		}
		p.blue.Exec(t, "app", "UPDATE accounts SET balance = balance + 1")
		p.blue.Exec(t, "app", "SELECT pg_switch_wal()")
		p.blue.Exec(t, "app", "CHECKPOINT")
	}
	p.blue.Exec(t, "app", "ALTER SYSTEM RESET max_slot_wal_keep_size")
	p.blue.Exec(t, "app", "SELECT pg_reload_conf()")
	// An abandoned slot, then writes it keeps; and pgshift's own slot,
	// inactive too until green subscribes, which is not a finding.
	p.blue.Exec(t, "app", "SELECT pg_create_logical_replication_slot('abandoned', 'pgoutput')")
	p.blue.Exec(t, "app", "UPDATE accounts SET balance = balance + 1")
	p.blue.Exec(t, "app", "UPDATE accounts SET balance = balance + 1")
	p.apply(t, p.publication, p.slot)
	defer p.rollback(t, p.publication, p.slot)
	retained := p.blue.Scalar(t, "app", "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = 'abandoned'")
	if retained == "0" {
		t.Fatal("setup: the abandoned slot retains no WAL")
	}

	c := p.observe(t, pre)
	t.Logf("preflight.source: %s %q", c.Action, c.Warnings)
	w := warningWith(c, "'abandoned'", "inactive", "of WAL", "SELECT pg_drop_replication_slot('abandoned');")
	if w == "" {
		t.Errorf("no warning names the inactive slot 'abandoned', the WAL it holds and the drop: %q", c.Warnings)
	} else if !regexp.MustCompile(`retains [0-9.]+ (B|KiB|MiB|GiB) of WAL`).MatchString(w) {
		t.Errorf("the warning does not say how much WAL the slot holds (blue says %s bytes): %s", retained, w)
	}
	if warningWith(c, "'old_cdc'", "wal_status lost", "SELECT pg_drop_replication_slot('old_cdc');") == "" {
		t.Errorf("no warning names the invalidated slot 'old_cdc' and the drop: %q", c.Warnings)
	}
	if w := warningWith(c, p.spec.SlotName()); w != "" {
		t.Errorf("pgshift's own slot is warned about: %s", w)
	}
	if c.Action != plans.ActionWarning {
		t.Errorf("preflight.source: %s, want a warning (a slot of someone else's is not pgshift's to drop)", c.Action)
	}
	p.blue.Exec(t, "app", "SELECT pg_drop_replication_slot('abandoned'); SELECT pg_drop_replication_slot('old_cdc')")
	if c := p.observe(t, pre); warningWith(c, "replication slot") != "" {
		t.Errorf("warnings after the slots are dropped: %q", c.Warnings)
	}
}

// openTxOn opens a transaction on blue under an application name; with
// write, it inserts a row, so that it holds a transaction id.
func openTxOn(t *testing.T, p *replPair, app string, write bool) (pgx.Tx, int32) {
	t.Helper()
	ctx := testCtx(t)
	conn, err := pgx.Connect(ctx, p.blue.DSN("app")+"&application_name="+app)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	opts := pgx.TxOptions{}
	if !write {
		opts.IsoLevel = pgx.RepeatableRead
	}
	tx, err := conn.BeginTx(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if write {
		_, err = tx.Exec(ctx, "INSERT INTO notes VALUES ('report in progress')")
	} else {
		_, err = tx.Exec(ctx, "SELECT count(*) FROM accounts")
	}
	if err != nil {
		t.Fatal(err)
	}
	return tx, int32(conn.PgConn().PID())
}

func testSlotWaitsForTransactions(t *testing.T, p *replPair) {
	if !strings.Contains(p.blue.DSN("app"), "?") {
		t.Fatalf("the test adds application_name to a DSN with parameters: %s", p.blue.DSN("app"))
	}
	saved := longTxAge
	longTxAge = 2 * time.Second
	defer func() { longTxAge = saved }()
	p.apply(t, p.publication)
	defer p.rollback(t, p.publication)

	writer, writerPID := openTxOn(t, p, "stuck-report", true)
	_, readerPID := openTxOn(t, p, "long-read", false)
	time.Sleep(2500 * time.Millisecond)

	// The plan names both, and says which one the slot waits for.
	c := p.observe(t, inspecting{preflightSource{}})
	t.Logf("preflight.source warnings: %q", c.Warnings)
	if warningWith(c, fmt.Sprintf("pid %d", writerPID), `"stuck-report"`, "INSERT INTO notes", "waits",
		fmt.Sprintf("pg_terminate_backend(%d)", writerPID)) == "" {
		t.Errorf("no warning names the writing transaction (pid %d, application, query, the fix): %q", writerPID, c.Warnings)
	}
	if w := warningWith(c, fmt.Sprintf("pid %d", readerPID), `"long-read"`); w == "" || !strings.Contains(w, "does not wait") {
		t.Errorf("the read-only transaction (pid %d) is not named as holding only vacuum back: %q", readerPID, c.Warnings)
	}

	// Ctrl-C while the creation waits: the error names the transaction,
	// and blue holds no slot and no creation afterwards.
	slot := &slotStep{spec: p.spec, waitLog: 300 * time.Millisecond}
	env, logs := freshEnv(t, p)
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { done <- slot.Apply(ctx, env.ForStep(stepid.Slot)) }()
	waitUntil(t, "the creation to log what it waits for", func() bool {
		return strings.Contains(logs.String(), fmt.Sprintf("blocker_pid=%d", writerPID))
	})
	t.Logf("log while waiting:\n%s", logs)
	for _, want := range []string{"creating the slot waits for transactions on blue to end", "blocker_application=stuck-report",
		"blocker_state=\"idle in transaction\"", "INSERT INTO notes", "blocker_age="} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the wait's log lacks %q", want)
		}
	}
	if strings.Contains(logs.String(), fmt.Sprintf("blocker_pid=%d", readerPID)) {
		t.Errorf("the read-only transaction (pid %d) is logged as a blocker", readerPID)
	}
	cancel()
	err := <-done
	if err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", writerPID)) ||
		!strings.Contains(err.Error(), "nothing was created") {
		t.Errorf("cancelled creation: %v, want the cancel, the transaction waited for and that nothing was created", err)
	}
	if got := p.blue.Scalar(t, "app", "SELECT count(*) FROM pg_replication_slots"); got != "0" {
		t.Errorf("slots on blue right after the cancelled creation: %s, want 0", got)
	}
	if got := p.blue.Scalar(t, "app", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_create_logical_replication_slot%' AND state = 'active' AND pid <> pg_backend_pid()"); got != "0" {
		t.Errorf("backends still creating a slot on blue: %s", got)
	}

	// Without Ctrl-C the creation waits for the writer, and only for it:
	// the read-only transaction stays open throughout.
	env, logs = freshEnv(t, p)
	go func() { done <- slot.Apply(testCtx(t), env.ForStep(stepid.Slot)) }()
	waitUntil(t, "the creation to log what it waits for", func() bool {
		return strings.Contains(logs.String(), fmt.Sprintf("blocker_pid=%d", writerPID))
	})
	if err := writer.Commit(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("creation after the writer committed: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the creation still waits after the writer committed, with only a read-only transaction open:\n%s", logs)
	}
	if got := p.blue.Scalar(t, "app", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgshift_orders_pg'"); got != "1" {
		t.Errorf("pgshift's slot after the creation: %s", got)
	}
	if err := slot.Rollback(testCtx(t), env.ForStep(stepid.Slot)); err != nil {
		t.Fatal(err)
	}
}

func testForeignSlot(t *testing.T, p *replPair) {
	p.apply(t, p.publication)
	defer p.rollback(t, p.publication)
	// Someone else's slot under pgshift's name, of the very shape pgshift
	// would make.
	p.blue.Exec(t, "app", "SELECT pg_create_logical_replication_slot('pgshift_orders_pg', 'pgoutput')")
	defer p.blue.Exec(t, "app", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'pgshift_orders_pg'")
	exists := func() string {
		return p.blue.Scalar(t, "app", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgshift_orders_pg'")
	}

	// A state of this upgrade: the publication recorded, no creation of the
	// slot.
	senv, _ := freshEnv(t, p)
	senv.ForStep(stepid.Publication).Record("tables", "3")
	c := observeIn(t, senv, p.slot)
	if c.Action != plans.ActionBlocker || len(c.Blockers) != 1 || !strings.Contains(c.Blockers[0], "not created by pgshift") ||
		!strings.Contains(c.Blockers[0], "SELECT pg_drop_replication_slot('pgshift_orders_pg');") || !strings.Contains(c.Blockers[0], "replication.slot") {
		t.Errorf("plan of a slot pgshift did not create: %s %q, want a blocker naming it, the drop and replication.slot", c.Action, c.Blockers)
	}
	err := p.slot.Apply(testCtx(t), senv.ForStep(stepid.Slot))
	if err == nil || !strings.Contains(err.Error(), "not created by pgshift") {
		t.Errorf("apply on a slot pgshift did not create: %v", err)
	}
	if got := senv.Outputs(stepid.Slot); len(got) != 0 {
		t.Errorf("apply recorded the foreign slot as pgshift's: %v", got)
	}
	if err := p.slot.Rollback(testCtx(t), senv.ForStep(stepid.Slot)); err != nil {
		t.Errorf("rollback: %v", err)
	}
	if exists() != "1" {
		t.Fatalf("rollback dropped a slot pgshift did not create")
	}
	plan, err := PlanCleanup(testCtx(t), senv.ForStep("cleanup"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range plan.Actions {
		if a.Kind == "slot" && a.Side == "blue" {
			t.Errorf("cleanup would drop a slot pgshift did not create: %+v", a)
		}
	}
	if !strings.Contains(strings.Join(plan.Notes, "\n"), "slot pgshift_orders_pg on blue kept") {
		t.Errorf("cleanup does not say it keeps the slot: %q", plan.Notes)
	}
	// With no state at all and pgshift's publication gone, cleanup keeps it too.
	p.rollback(t, p.publication)
	env, _ := freshEnv(t, p)
	plan, err = PlanCleanup(testCtx(t), env.ForStep("cleanup"))
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Actions) != 0 {
		t.Errorf("cleanup without a state would drop: %+v", plan.Actions)
	}
	if exists() != "1" {
		t.Fatalf("the user's slot is gone")
	}
	p.apply(t, p.publication)

	// A state file at the spec's default path (as cleanup finds it) that
	// records no creation of the slot rules, even beside pgshift's own
	// publication.
	savedFile := p.spec.File
	p.spec.File = filepath.Join(t.TempDir(), "orders.yaml")
	g, err := engine.Compile(For(p.spec))
	if err != nil {
		t.Fatal(err)
	}
	store, err := engine.OpenState(p.spec.StatePath(), p.spec, g, engine.StateOptions{Operation: "apply"})
	if err != nil {
		t.Fatal(err)
	}
	_ = store.UpdateStep(stepid.Publication, func(c *engine.StepState) {
		c.Status, c.Outputs = engine.StatusDone, map[string]string{"tables": "3"}
	})
	_ = store.UpdateStep(stepid.Slot, func(c *engine.StepState) {
		c.Status, c.Error = engine.StatusFailed, foreignSlotError("pgshift_orders_pg").Error()
	})
	store.Close()
	env, _ = freshEnv(t, p)
	plan, err = PlanCleanup(testCtx(t), env.ForStep("cleanup"))
	p.spec.File = savedFile
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range plan.Actions {
		if a.Kind == "slot" {
			t.Errorf("cleanup with a state that records no creation would drop: %+v", a)
		}
	}
	if !strings.Contains(strings.Join(plan.Notes, "\n"), "slot pgshift_orders_pg on blue kept") {
		t.Errorf("cleanup with the state does not say it keeps the slot: %q", plan.Notes)
	}

	// A creation under pgshift's name that pgshift did not start is not
	// awaited as its own.
	p.blue.Exec(t, "app", "SELECT pg_drop_replication_slot('pgshift_orders_pg')")
	holder, _ := openTxOn(t, p, "holder", true)
	other, err := pgx.Connect(testCtx(t), p.blue.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	go func() {
		_, _ = other.Exec(context.Background(), "SELECT pg_create_logical_replication_slot('pgshift_orders_pg', 'pgoutput')")
	}()
	waitUntil(t, "the other creation to hold the slot", func() bool {
		return p.blue.Scalar(t, "app", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgshift_orders_pg' AND active") == "1"
	})
	env, _ = freshEnv(t, p)
	err = p.slot.Apply(testCtx(t), env.ForStep(stepid.Slot))
	if err == nil || !strings.Contains(err.Error(), "did not start that creation") {
		t.Errorf("apply beside someone else's creation: %v, want a refusal", err)
	}
	if err := holder.Commit(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the other creation to finish", func() bool {
		return p.blue.Scalar(t, "app", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgshift_orders_pg' AND NOT active") == "1"
	})
}

// setAndRestart changes settings of a server and restarts it.
func setAndRestart(t *testing.T, c *pgtest.Cluster, settings map[string]string) {
	t.Helper()
	for k, v := range settings {
		if v == "" {
			c.Exec(t, "postgres", "ALTER SYSTEM RESET "+k)
		} else {
			c.Exec(t, "postgres", "ALTER SYSTEM SET "+k+" = "+v)
		}
	}
	c.Restart(t)
}

func testSyncCapacity(t *testing.T, p *replPair) {
	// Blue: 3 selected tables, green's default 2 sync workers: the
	// subscription's slot and 2 table-sync slots and WAL senders at once.
	setAndRestart(t, p.blue, map[string]string{"max_replication_slots": "2", "max_wal_senders": "2"})
	defer setAndRestart(t, p.blue, map[string]string{"max_replication_slots": "", "max_wal_senders": ""})
	env, _ := freshEnv(t, p)
	c := observeIn(t, env, inspecting{preflightSource{}})
	t.Logf("preflight.source: %s %q", c.Action, c.Blockers)
	blockers := strings.Join(c.Blockers, "\n")
	if c.Action != plans.ActionBlocker {
		t.Fatalf("2 slots for a copy that needs 3: %s, want a blocker", c.Action)
	}
	for _, want := range []string{
		"blue has 2 free replication slots (max_replication_slots=2, 0 in use) and the upgrade needs 3 at once",
		"2 for green's table-sync workers (3 tables to copy, max_sync_workers_per_subscription=2 on green)",
		"ALTER SYSTEM SET max_replication_slots = 3;", "restart blue",
		"blue has 2 free WAL senders", "ALTER SYSTEM SET max_wal_senders = 3;",
		"ALTER SYSTEM SET max_sync_workers_per_subscription = 1;",
	} {
		if !strings.Contains(blockers, want) {
			t.Errorf("blockers lack %q:\n%s", want, blockers)
		}
	}
	if err := (inspecting{preflightSource{}}).Apply(testCtx(t), env.ForStep(stepid.PreflightSource)); err == nil {
		t.Errorf("preflight.source apply passes with too few slots")
	}
	pcs, err := p.slot.Check(testCtx(t), env.ForStep(stepid.Slot))
	if err != nil {
		t.Fatal(err)
	}
	for _, pc := range pcs {
		if strings.HasPrefix(pc.Name, "free replication slots") && (pc.OK || pc.Detail != "2 free, 3 needed") {
			t.Errorf("source.slot's precondition: %+v, want 2 free, 3 needed", pc)
		}
	}
	// Green out of reach: its default is assumed, and said.
	off := *p.spec
	off.Target.DSN = "postgres://postgres@127.0.0.1:1/app?sslmode=disable&connect_timeout=2"
	offEnv := engine.NewEnv(&off, nil)
	defer offEnv.Close()
	c = observeIn(t, offEnv, inspecting{preflightSource{}})
	if !strings.Contains(strings.Join(c.Blockers, "\n"), "ALTER SYSTEM SET max_replication_slots = 3;") ||
		warningWith(c, "green is out of reach", "default max_sync_workers_per_subscription of 2") == "" {
		t.Errorf("green out of reach: %s %q %q, want the blocker counted with green's default and a warning saying so", c.Action, c.Blockers, c.Warnings)
	}
	// Fewer sync workers on green (a reload) make the copy fit.
	p.green.Exec(t, "postgres", "ALTER SYSTEM SET max_sync_workers_per_subscription = 1")
	p.green.Exec(t, "postgres", "SELECT pg_reload_conf()")
	waitUntil(t, "green to reload", func() bool {
		return p.green.Scalar(t, "app", "SHOW max_sync_workers_per_subscription") == "1"
	})
	if c := observeIn(t, env, inspecting{preflightSource{}}); c.Action == plans.ActionBlocker {
		t.Errorf("1 sync worker, 2 slots: still blocked: %q", c.Blockers)
	}
	p.green.Exec(t, "postgres", "ALTER SYSTEM RESET max_sync_workers_per_subscription")
	p.green.Exec(t, "postgres", "SELECT pg_reload_conf()")
	waitUntil(t, "green to reload", func() bool {
		return p.green.Scalar(t, "app", "SHOW max_sync_workers_per_subscription") == "2"
	})

	// Green: 1 apply worker and 2 table-sync workers.
	setAndRestart(t, p.green, map[string]string{"max_logical_replication_workers": "2"})
	defer setAndRestart(t, p.green, map[string]string{"max_logical_replication_workers": ""})
	env, _ = freshEnv(t, p)
	c = observeIn(t, env, inspecting{preflightTarget{}})
	t.Logf("preflight.target: %s %q", c.Action, c.Blockers)
	blockers = strings.Join(c.Blockers, "\n")
	for _, want := range []string{
		"green has 2 free logical replication workers (max_logical_replication_workers=2, 0 in use)",
		"needs 3 at once: 1 apply worker and 2 table-sync workers",
		"ALTER SYSTEM SET max_logical_replication_workers = 3;", "restart green",
	} {
		if !strings.Contains(blockers, want) {
			t.Errorf("preflight.target blockers lack %q:\n%s", want, blockers)
		}
	}
}
