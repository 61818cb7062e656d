package steps

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
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
	"github.com/pgshift/pgshift/steps/stepid"
)

// copySchema adds, next to pgbench's tables, a partitioned table, an enum
// column (copied as text) and a generated column.
const copySchema = `
ALTER TABLE pgbench_history REPLICA IDENTITY FULL;
CREATE TYPE level AS ENUM ('low', 'high');
CREATE TABLE readings (id bigint PRIMARY KEY, lvl level, v numeric, doubled numeric GENERATED ALWAYS AS (v * 2) STORED);
INSERT INTO readings SELECT i, (CASE WHEN i % 2 = 0 THEN 'low' ELSE 'high' END)::level, i / 3.0 FROM generate_series(1, 20000) i;
CREATE TABLE logs (id bigint NOT NULL, at date NOT NULL, msg text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE logs_a PARTITION OF logs FOR VALUES FROM ('2020-01-01') TO ('2022-01-01');
CREATE TABLE logs_b PARTITION OF logs FOR VALUES FROM ('2022-01-01') TO ('2030-01-01');
INSERT INTO logs SELECT i, date '2020-06-01' + i % 2000, 'm' || i FROM generate_series(1, 20000) i;
`

// TestCopyStepSnapshotMethod runs target.copy between the real steps around
// it (pre-data schema, publication, slot, subscription, catch-up) under
// writes on blue, interrupts the first copy half-way, checks that the plan
// says it will start over, applies again, and compares every table.
func TestCopyStepSnapshotMethod(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	pgbench := pgtest.RequireClientBin(t, "pgbench")
	cs := pgtest.StartClusters(t, []int{15, 17})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(t, "app")
	green.CreateDatabase(t, "app")
	runTool(t, pgbench, "-i", "-q", "-s", "3", "-h", blue.Host, "-p", strconv.Itoa(blue.Port), "-U", "postgres", "app")
	blue.Exec(t, "app", copySchema)

	spec := &spec.Spec{
		Name:   "copy-test",
		Source: spec.Endpoint{DSN: blue.DSN("app")},
		Target: spec.Endpoint{DSN: green.DSN("app")},
	}
	spec.SetDefaults()
	spec.Schema.Copy = true
	spec.Replication.InitialCopy.Method = "snapshot"
	spec.Replication.InitialCopy.Workers = 2
	spec.Replication.InitialCopy.SplitTablesLargerThan = 1 << 20
	logs := &pgtest.LogBuffer{}
	env := engine.NewEnv(spec, hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}))
	t.Cleanup(env.Close)
	byID := map[string]engine.Step{}
	for _, s := range For(spec) {
		byID[s.ID()] = s
	}
	step := func(id string) engine.Step {
		s, ok := byID[id]
		if !ok {
			t.Fatalf("no step %s under the snapshot method", id)
		}
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	apply := func(ctx context.Context, id string) error {
		return step(id).Apply(ctx, env.ForStep(id))
	}
	observe := func(id string) plans.Change {
		c, err := step(id).Observe(ctx, env.ForStep(id))
		if err != nil {
			t.Fatalf("observe %s: %v", id, err)
		}
		return c
	}
	for _, id := range []string{"target.schema", stepid.Publication, stepid.Slot} {
		if err := apply(ctx, id); err != nil {
			t.Fatalf("apply %s: %v\n%s", id, err, logs)
		}
	}
	if n := green.Scalar(t, "app", "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'"); n != "0" {
		t.Fatalf("green has %s indexes before the copy: target.schema restored more than pre-data", n)
	}
	if c := observe(stepid.Copy); c.Action != plans.ActionCreate {
		t.Fatalf("plan before the copy: %s %q, want create", c.Action, c.Summary)
	}

	stopWrites := make(chan struct{})
	writes := make(chan error, 1)
	go func() { writes <- copyTestWriter(blue.DSN("app"), stopWrites) }()
	defer func() {
		select {
		case <-stopWrites:
		default:
			close(stopWrites)
		}
	}()

	// First attempt: cancelled as soon as green has committed some rows,
	// as an operator's Ctrl-C or a crash would leave it.
	// The step's own row counter moves when a part has committed on green;
	// watching it in process reacts within a millisecond, however loaded
	// the machine.
	cctx, stop := context.WithCancel(ctx)
	go func() {
		defer stop()
		for cctx.Err() == nil && copiedRows(env) == 0 {
			time.Sleep(time.Millisecond)
		}
	}()
	if err := apply(cctx, stepid.Copy); err == nil {
		t.Fatal("the first copy finished before it could be interrupted: make the data larger")
	}
	stop()
	c := observe(stepid.Copy)
	if c.Action != plans.ActionChange || len(c.Warnings) == 0 || !strings.Contains(c.Warnings[0], "starts over") {
		t.Fatalf("plan after an interrupted copy: %s %q %q, want a change that says the copy starts over", c.Action, c.Summary, c.Warnings)
	}
	if err := apply(ctx, stepid.Copy); err != nil {
		t.Fatalf("apply %s again: %v\n%s", stepid.Copy, err, logs)
	}
	if !strings.Contains(logs.String(), "an earlier copy was interrupted") {
		t.Errorf("the second apply did not say it started over")
	}
	if got := green.Scalar(t, "app", "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'pgbench_accounts' AND last_analyze IS NOT NULL"); got != "1" {
		t.Errorf("pgbench_accounts on green has no statistics after the copy (last_analyze unset)")
	}
	if n, _ := env.Output(stepid.Copy, CopyRestarts); n != "1" {
		t.Errorf("recorded restarts = %q, want 1: the state must say the copy started over", n)
	}
	if c := observe(stepid.Copy); c.Action != plans.ActionNone {
		t.Errorf("plan after the copy: %s %q, want nothing to do", c.Action, c.Summary)
	}
	// Post-data came after the rows: keys and indexes as on blue.
	indexes := "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'"
	if b, g := blue.Scalar(t, "app", indexes), green.Scalar(t, "app", indexes); b != g {
		t.Errorf("indexes after the copy: blue %s, green %s", b, g)
	}
	rows, _ := env.Output(stepid.Copy, CopyRows)
	if metric := copyMetricSum(t, env, "pgshift_copy_rows_total"); metric < mustAtoi(t, rows) {
		t.Errorf("pgshift_copy_rows_total = %d, below the %s rows of the finished copy", metric, rows)
	}

	for _, id := range []string{stepid.Subscription, stepid.Catchup} {
		if err := apply(ctx, id); err != nil {
			t.Fatalf("apply %s: %v\n%s", id, err, logs)
		}
	}
	// A run that lost its state must not start the copy over under the
	// subscription that now streams from the slot.
	lost := engine.NewEnv(spec, hclog.NewNullLogger())
	defer lost.Close()
	if c, err := step(stepid.Copy).Observe(ctx, lost.ForStep(stepid.Copy)); err != nil || c.Action != plans.ActionBlocker {
		t.Errorf("plan without the state, subscription streaming: %s %q (%v), want a blocker", c.Action, c.Summary, err)
	}
	before := green.Scalar(t, "app", "SELECT count(*) FROM pgbench_accounts")
	if err := step(stepid.Copy).Apply(ctx, lost.ForStep(stepid.Copy)); err == nil || !strings.Contains(err.Error(), "subscription") {
		t.Errorf("apply without the state, subscription streaming: %v, want a refusal naming the subscription", err)
	}
	if after := green.Scalar(t, "app", "SELECT count(*) FROM pgbench_accounts"); after != before {
		t.Errorf("green's pgbench_accounts went from %s to %s rows", before, after)
	}

	close(stopWrites)
	if err := <-writes; err != nil {
		t.Fatalf("writer on blue: %v", err)
	}
	lsn := blue.Scalar(t, "app", "SELECT pg_current_wal_lsn()")
	deadline := time.Now().Add(time.Minute)
	for blue.Scalar(t, "app", fmt.Sprintf("SELECT confirmed_flush_lsn >= '%s' FROM pg_replication_slots WHERE slot_name = %s", lsn, pg.QuoteLiteral(spec.SlotName()))) != "t" {
		if time.Now().After(deadline) {
			t.Fatalf("green did not catch up with %s within a minute", lsn)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, tb := range []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history", "readings", "logs"} {
		if b, g := tableDigest(t, blue, tb), tableDigest(t, green, tb); b != g {
			t.Errorf("%s: blue %s, green %s", tb, b, g)
		}
	}
	if strings.Contains(logs.String(), "password") {
		t.Errorf("the log mentions a password")
	}

	// The slot lost after a finished copy (dropped by hand, or invalidated
	// by max_slot_wal_keep_size): blue's changes can no longer reach green,
	// and the plan must say so rather than call the copy done.
	sub := pg.QuoteIdent(spec.SubscriptionName())
	green.Exec(t, "app", "ALTER SUBSCRIPTION "+sub+" DISABLE; ALTER SUBSCRIPTION "+sub+" SET (slot_name = NONE)")
	// The disabled worker's walsender on blue ends a moment later: the
	// slot can be dropped only once it is released.
	for deadline := time.Now().Add(time.Minute); blue.Scalar(t, "app", "SELECT active FROM pg_replication_slots WHERE slot_name = "+pg.QuoteLiteral(spec.SlotName())) == "t"; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("slot %s still active on blue a minute after the subscription was disabled", spec.SlotName())
		}
	}
	blue.Exec(t, "app", "SELECT pg_drop_replication_slot("+pg.QuoteLiteral(spec.SlotName())+")")
	if c, err := step(stepid.Copy).Observe(ctx, env.ForStep(stepid.Copy)); err != nil || c.Action != plans.ActionBlocker ||
		!hasLine(c.Blockers, "slot "+spec.SlotName()+" is gone from blue", "pgshift rollback") {
		t.Errorf("plan after the slot was dropped: %s %q %q (%v), want a blocker naming the lost slot", c.Action, c.Summary, c.Blockers, err)
	}
	if err := step(stepid.Copy).Apply(ctx, env.ForStep(stepid.Copy)); err == nil || !strings.Contains(err.Error(), "is gone from blue") {
		t.Errorf("apply after the slot was dropped: %v, want a refusal naming the lost slot", err)
	}
}

// copyTestWriter changes rows on blue as an application would until stop closes.
func copyTestWriter(dsn string, stop <-chan struct{}) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for i := 1; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		for _, q := range []string{
			"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $1",
			"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, $1, 1, now())",
			"UPDATE readings SET lvl = 'high', v = v + 1 WHERE id = $1",
			"INSERT INTO logs VALUES (100000 + $1, date '2021-01-01' + $1 % 3000, 'new')",
			"DELETE FROM logs WHERE id = $1",
		} {
			if _, err := conn.Exec(ctx, q, int64(i)); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
	}
}

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

func copyMetricSum(t *testing.T, env *engine.Env, name string) int64 {
	t.Helper()
	mfs, err := env.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return int64(sum)
}

func mustAtoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return n
}

func TestCopyFingerprintIgnoresTableSizes(t *testing.T) {
	spec := &spec.Spec{Name: "fp"}
	spec.SetDefaults()
	spec.Replication.InitialCopy.Method = "snapshot"
	s := &copyStep{spec: spec}
	a, b := s.describeCreate(3, 100<<20), s.describeCreate(3, 120<<20)
	if a.Summary == b.Summary {
		t.Fatalf("summaries should show the sizes: %q", a.Summary)
	}
	if s.Fingerprint(a) != s.Fingerprint(b) {
		t.Errorf("a saved plan would go stale when blue's tables grow: %q vs %q", s.Fingerprint(a), s.Fingerprint(b))
	}
	blocked := plans.Change{Action: plans.ActionBlocker, Blockers: []string{nonEmptyMessage([]string{"public.t"})}}
	if s.Fingerprint(blocked) == s.Fingerprint(a) {
		t.Errorf("a blocker and a create share a fingerprint")
	}
}

// copiedRows is pgshift_copy_rows_total summed over tables, 0 before the
// copy has registered it.
func copiedRows(env *engine.Env) float64 {
	families, err := env.Metrics.Registry.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, f := range families {
		if f.GetName() == "pgshift_copy_rows_total" {
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
