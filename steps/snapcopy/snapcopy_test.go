package snapcopy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestSnapshotCopyUnderWrites copies from blue's exported snapshot while
// pgbench writes on blue, then streams the rest through a subscription on
// the same slot and compares every table row by row: a row lost or doubled
// at the snapshot boundary shows as a different hash. Before that, an
// interrupted copy is reset and started over, as a resume does.
func TestSnapshotCopyUnderWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	for _, c := range []struct{ blue, green int }{{15, 17}, {13, 17}} {
		t.Run(fmt.Sprintf("blue%d_green%d", c.blue, c.green), func(t *testing.T) {
			testSnapshotCopy(t, c.blue, c.green)
		})
	}
}

func testSnapshotCopy(t *testing.T, blueMajor, greenMajor int) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	p := startPair(t, blueMajor, greenMajor, 5)
	blue, green := connect(t, p.blue), connect(t, p.green)
	blueCfg, greenCfg := connConfig(t, p.blue), connConfig(t, p.green)
	p.blue.Exec(t, "app", `CREATE PUBLICATION pub FOR TABLE pgbench_accounts, pgbench_branches, pgbench_tellers,
		pgbench_history, typed, typed_notes, events WITH (publish_via_partition_root = true)`)
	stopWrites := p.startWrites(t)

	tables, err := Inventory(ctx, blue, green, copiedRelations)
	if err != nil {
		t.Fatal(err)
	}
	var accounts *Table
	for i := range tables {
		tb := &tables[i]
		switch tb.Source.Name {
		case "pgbench_accounts":
			accounts = tb
			if !tb.Binary {
				t.Errorf("pgbench_accounts copies as text (%s), want binary: all its types are builtin", tb.TextReason)
			}
		case "typed":
			if tb.Binary || !strings.Contains(tb.TextReason, `"m"`) {
				t.Errorf("typed: binary=%v reason=%q, want text because of the enum column m", tb.Binary, tb.TextReason)
			}
			for _, col := range tb.Columns {
				if col.Name == "g" {
					t.Errorf("typed: generated column g is in the copy's column list")
				}
			}
		}
	}
	var leaves []string
	for _, tb := range tables {
		if tb.Target.Name == "events" {
			leaves = append(leaves, tb.Source.Name)
		}
	}
	if strings.Join(leaves, ",") != "events_2024,events_2025,events_default" {
		t.Errorf("events copies from %v, want its three leaf partitions", leaves)
	}
	if accounts == nil {
		t.Fatal("pgbench_accounts missing from the inventory")
	}
	// Small enough that pgbench_accounts splits into 5 parts. On 13 the
	// planner caps parts at its worker count, so tell it 5 workers while 2 copy.
	opts := PlanOptions{SplitBytes: accounts.Bytes/5 + 1, Workers: 5, SourceMajor: blueMajor}
	parts := PlanParts(tables, opts)
	if n := parts[0].Of; parts[0].Table.Source.Name != "pgbench_accounts" || n < 4 {
		t.Fatalf("first part is %s of %d parts, want pgbench_accounts split in 4 or more", parts[0].String(), n)
	}

	t.Run("interrupted copy resets cleanly", func(t *testing.T) {
		snap, err := ExportSnapshot(ctx, blueCfg, "pgshift_app")
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close(ctx)
		cctx, stop := context.WithCancel(ctx)
		defer stop()
		// Stop as soon as green has committed one part: the reset must then
		// remove real rows.
		c := &Copier{Source: blueCfg, Target: greenCfg, Snapshot: snap.Name, Workers: 2,
			Observer: Funcs{OnRows: func(string, int64) { stop() }}}
		if _, err := c.Run(cctx, parts); !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted copy returned %v, want context.Canceled", err)
		}
		snap.Close(ctx)
		if got := p.green.Scalar(t, "app", "SELECT count(*) FROM pgbench_accounts"); got == "0" {
			t.Fatalf("no part of pgbench_accounts reached green before the interruption")
		}
		// The snapshot is gone with its connection: importing it now fails.
		if _, err := (&Copier{Source: blueCfg, Target: greenCfg, Snapshot: snap.Name, Workers: 1}).Run(ctx, parts[:1]); err == nil {
			t.Fatal("copy from a closed snapshot succeeded")
		}
		if err := Reset(ctx, blue, green, "pgshift_app", Targets(tables)); err != nil {
			t.Fatal(err)
		}
		if n := p.blue.Scalar(t, "app", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgshift_app'"); n != "0" {
			t.Errorf("slot still on blue after Reset")
		}
		for _, c := range compared {
			if n := p.green.Scalar(t, "app", "SELECT count(*) FROM "+pgx.Identifier{c.table}.Sanitize()); n != "0" {
				t.Errorf("green %s holds %s rows after Reset, want 0", c.table, n)
			}
		}
		// Reset again is harmless.
		if err := Reset(ctx, blue, green, "pgshift_app", Targets(tables)); err != nil {
			t.Fatalf("second Reset: %v", err)
		}
	})
	if t.Failed() {
		return
	}

	snap, err := ExportSnapshot(ctx, blueCfg, "pgshift_app")
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	if _, err := ExportSnapshot(ctx, blueCfg, "pgshift_app"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second slot of the same name: %v, want an 'already exists' error", err)
	}
	counters := &Counters{}
	mem := watchMemory()
	res, err := (&Copier{Source: blueCfg, Target: greenCfg, Snapshot: snap.Name, Workers: 2, Observer: counters}).Run(ctx, parts)
	heap, rss := mem.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("copied %d rows, %d MB in %d parts in %s; peak Go heap %d MB, peak RSS of the test process %d MB",
		res.Rows, res.Bytes>>20, res.Parts, res.Elapsed.Round(time.Millisecond), heap>>20, rss>>20)
	if res.Parts != len(parts) || counters.TotalBytes() != res.Bytes || counters.TotalRows() != res.Rows {
		t.Errorf("result %d parts %d bytes %d rows, observer %d bytes %d rows, planned %d parts",
			res.Parts, res.Bytes, res.Rows, counters.TotalBytes(), counters.TotalRows(), len(parts))
	}
	// Streaming: the heap stays far below the data moved (a whole-table
	// buffer would hold pgbench_accounts, about 13 MB per scale unit).
	if heap > uint64(res.Bytes)/2 {
		t.Errorf("peak Go heap %d MB for %d MB copied: the copy buffers instead of streaming", heap>>20, res.Bytes>>20)
	}
	if err := snap.Close(ctx); err != nil {
		t.Fatal(err)
	}
	copiedHistory := res.Tables[Relation{"public", "pgbench_history"}].Rows

	stmts, err := SplitStatements(p.postData)
	if err != nil {
		t.Fatal(err)
	}
	pd := &PostData{Target: greenCfg, Workers: 2}
	if err := pd.Apply(ctx, stmts); err != nil {
		t.Fatal(err)
	}
	objects := `SELECT (SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public')
		|| ' constraints, ' || (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public') || ' indexes'`
	if b, g := p.blue.Scalar(t, "app", objects), p.green.Scalar(t, "app", objects); b != g {
		t.Errorf("after post-data: blue has %s, green %s", b, g)
	}
	// Applying again after an interruption finishes without error.
	pd.SkipExisting = true
	if err := pd.Apply(ctx, stmts); err != nil {
		t.Errorf("post-data applied twice with SkipExisting: %v", err)
	}

	p.green.Exec(t, "app", fmt.Sprintf(`CREATE SUBSCRIPTION sub CONNECTION %s PUBLICATION pub
		WITH (copy_data = false, create_slot = false, slot_name = 'pgshift_app')`, sqlLiteral(p.blue.DSN("app"))))
	time.Sleep(time.Second) // let some writes go through streaming too
	stopWrites()
	end := p.blue.Scalar(t, "app", "SELECT pg_current_wal_lsn()")
	deadline := time.Now().Add(3 * time.Minute)
	for p.blue.Scalar(t, "app", fmt.Sprintf("SELECT coalesce(confirmed_flush_lsn >= '%s', false) FROM pg_replication_slots WHERE slot_name = 'pgshift_app'", end)) != "t" {
		if time.Now().After(deadline) {
			t.Fatalf("green did not catch up to %s in 3 minutes: blue slot %s; green %s", end,
				p.blue.Scalar(t, "app", "SELECT row(s.*)::text FROM pg_replication_slots s WHERE slot_name = 'pgshift_app'"),
				p.green.Scalar(t, "app", "SELECT string_agg(row(a.pid, a.backend_type, a.state, a.wait_event_type, a.wait_event, left(a.query, 60))::text, E'\\n') FROM pg_stat_activity a"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	finalHistory := p.blue.Scalar(t, "app", "SELECT count(*) FROM pgbench_history")
	if fmt.Sprint(copiedHistory) == finalHistory {
		t.Errorf("pgbench wrote nothing after the snapshot (%s history rows): the test proves nothing", finalHistory)
	}
	t.Logf("pgbench_history: %d rows in the snapshot, %s at the end", copiedHistory, finalHistory)
	for _, c := range compared {
		bn, bs, err := digest(ctx, blue, c.table, c.order)
		if err != nil {
			t.Fatal(err)
		}
		gn, gs, err := digest(ctx, green, c.table, c.order)
		if err != nil {
			t.Fatal(err)
		}
		if bn != gn || bs != gs {
			t.Errorf("%s: blue %d rows (sha256 %.12s), green %d rows (sha256 %.12s)", c.table, bn, bs, gn, gs)
		}
	}
	p.green.Exec(t, "app", "DROP SUBSCRIPTION sub")

	// Starting over empties the copied tables; one outside the copy that
	// references them stops that, and the error must name it.
	p.green.Exec(t, "app", `CREATE TABLE "Outside Ref" (bid int REFERENCES pgbench_branches (bid))`)
	err = TruncateTargets(ctx, green, Targets(tables))
	if err == nil || !strings.Contains(err.Error(), `Outside Ref`) || !strings.Contains(err.Error(), "empty it too") {
		t.Errorf("emptying tables a table outside the copy references: %v, want an error naming it and the fix", err)
	}
}

func sqlLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
