package steps

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/steps/stepid"
)

// testSlotCreationAwaited runs on the pipeline's pair with no slot on blue:
// a run killed while pg_create_logical_replication_slot waits for a running
// transaction leaves a backend still creating the slot. The next apply must
// wait for that creation to finish and use the slot, not fail or make
// another.
func testSlotCreationAwaited(t *testing.T, p *replPair) {
	ctx := testCtx(t)
	p.apply(t, p.publication)

	// A transaction with an xid holds back the slot's consistent point.
	holder, err := pgx.Connect(ctx, p.blue.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO notes VALUES ('held open')"); err != nil {
		t.Fatal(err)
	}

	// The "killed" run: a client process starts the creation and is killed
	// with SIGKILL, so its socket closes with no cancel request, as when
	// pgshift itself is killed.
	psql := pgtest.RequireClientBin(t, "psql")
	dead := exec.Command(psql, "-X", "-d", p.blue.DSN("app"), "-c", "SELECT pg_create_logical_replication_slot('pgshift_orders_pg', 'pgoutput')")
	if err := dead.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the first creation to hold the slot", func() bool {
		return p.blue.Scalar(t, "app", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgshift_orders_pg' AND active") == "1"
	})
	// The killed run had claimed the name and recorded its backend before
	// starting the creation, as source.slot does.
	creator := p.blue.Scalar(t, "app", "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'pgshift_orders_pg'")
	senv := p.env.ForStep(stepid.Slot)
	senv.Record(SlotClaimed, "true")
	senv.Record(SlotCreatorPID, creator)
	_ = dead.Process.Kill()
	_ = dead.Wait()

	done := make(chan error, 1)
	go func() { done <- p.slot.Apply(ctx, p.env.ForStep(stepid.Slot)) }()
	waitUntil(t, "apply to wait for the earlier creation", func() bool {
		return strings.Contains(p.logs.String(), "waiting for an earlier creation of the slot")
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("apply after an interrupted creation: %v", err)
	}
	if got := p.blue.Scalar(t, "app", "SELECT count(*) || ' ' || string_agg(plugin || '/' || (NOT temporary)::text, ',') FROM pg_replication_slots"); got != "1 pgoutput/true" {
		t.Errorf("slots on blue: %s, want the one permanent pgoutput slot", got)
	}
	p.rollback(t, p.publication, p.slot)
}

// waitUntil polls cond; the bound only turns a hang into a failure.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
