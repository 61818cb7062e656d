package verify_test

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowcompare"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps"
	"github.com/pgshift/pgshift/steps/verify"
)

const (
	db  = "app"
	sub = "verify_sub"
)

// pair is blue and green replicating db through publication/subscription
// created with plain SQL, so that these tests depend on no other step.
type pair struct {
	blue, green *pgtest.Cluster
	pgbench     string
}

func (p *pair) connect(c *pgtest.Cluster) verify.Connector {
	return func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, c.DSN(db)) }
}

func startPair(t *testing.T, blueMajor, greenMajor int, scale int) *pair {
	t.Helper()
	pgbench := pgtest.RequireClientBin(t, "pgbench")
	cs := pgtest.StartClusters(t, []int{blueMajor, greenMajor})
	p := &pair{blue: cs[0], green: cs[1], pgbench: pgbench}
	for _, c := range cs {
		c.CreateDatabase(t, db)
		c.LoadSQLFile(t, db, "testdata/schema.sql")
	}
	p.blue.LoadSQLFile(t, db, "testdata/data.sql")
	p.run(t, p.blue, "-i", "-q", "-s", fmt.Sprint(scale))
	p.run(t, p.green, "-i", "-q", "-I", "dtp", "-s", fmt.Sprint(scale)) // tables and keys, no rows
	p.blue.Exec(t, db, `CREATE PUBLICATION verify_pub FOR TABLE kinds, composite, textkey, nokey, events, sparse,
		pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history
		WITH (publish_via_partition_root = true)`)
	p.green.Exec(t, db, fmt.Sprintf(`CREATE SUBSCRIPTION %s CONNECTION 'host=%s port=%d user=postgres dbname=%s'
		PUBLICATION verify_pub`, sub, p.blue.Host, p.blue.Port, db))
	waitFor(t, 3*time.Minute, "every table synchronised", func() bool {
		return p.green.Scalar(t, db, `SELECT count(*) FILTER (WHERE srsubstate <> 'r') = 0 AND count(*) = 10
			FROM pg_subscription_rel`) == "t"
	})
	p.caughtUp(t)
	return p
}

// run runs pgbench against a cluster.
func (p *pair) run(t *testing.T, c *pgtest.Cluster, args ...string) {
	t.Helper()
	cmd := exec.Command(p.pgbench, append([]string{"-h", c.Host, "-p", fmt.Sprint(c.Port), "-U", "postgres"}, append(args, db)...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgbench %v: %v\n%s", args, err, out)
	}
}

// load starts pgbench writing to blue for d; wait returns once it ended.
func (p *pair) load(t *testing.T, d time.Duration) (wait func()) {
	t.Helper()
	cmd := exec.Command(p.pgbench, "-h", p.blue.Host, "-p", fmt.Sprint(p.blue.Port), "-U", "postgres",
		"-n", "-c", "2", "-T", fmt.Sprint(int(d.Seconds())), db)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pgbench: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	return func() {
		t.Helper()
		if err := <-done; err != nil {
			t.Fatalf("pgbench load: %v\n%s", err, out.String())
		}
		done <- nil // for the cleanup
		if !strings.Contains(out.String(), "number of transactions actually processed") {
			t.Fatalf("pgbench load did not run:\n%s", out.String())
		}
	}
}

// caughtUp waits until green has applied everything blue has written so far.
func (p *pair) caughtUp(t *testing.T) {
	t.Helper()
	lsn := p.blue.Scalar(t, db, "SELECT pg_current_wal_lsn()")
	waitFor(t, 2*time.Minute, "green caught up to "+lsn, func() bool {
		return p.blue.Scalar(t, db, fmt.Sprintf(
			"SELECT confirmed_flush_lsn >= '%s' FROM pg_replication_slots WHERE slot_name = '%s'", lsn, sub)) == "t"
	})
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (p *pair) tables(t *testing.T) []verify.Table {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.blue.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	spec := &spec.Spec{}
	spec.SetDefaults()
	sel, err := pg.SelectedTables(ctx, conn, spec.Tables.Include, spec.Tables.Exclude)
	if err != nil {
		t.Fatal(err)
	}
	var out []verify.Table
	for _, s := range sel {
		out = append(out, verify.Table{Schema: s.Schema, Name: s.Name, Key: s.PrimaryKey})
	}
	if len(out) != 10 {
		t.Fatalf("want the 10 test tables on blue, got %v", out)
	}
	return out
}

func (p *pair) verify(t *testing.T, mode verify.Mode) *verify.Report {
	t.Helper()
	r, err := verify.Run(context.Background(), p.connect(p.blue), p.connect(p.green), p.tables(t), verify.Options{
		Mode: mode, Workers: 2, ChunkBytes: 64 << 10, Subscription: sub,
	})
	if err != nil {
		t.Fatalf("verify %s: %v", mode, err)
	}
	t.Logf("%s", r.Summary())
	for _, tr := range r.Tables {
		t.Logf("  %-26s %-18s %4d segments %8d rows, %d re-checked, %d rounds", tr.Table, tr.Method, tr.Segments, tr.Rows, tr.Rechecked, tr.Rounds)
	}
	return r
}

// rowcompare runs the independent comparison on every table.
func (p *pair) rowcompare(t *testing.T) []rowcompare.Result {
	t.Helper()
	ctx := context.Background()
	blue, err := pgx.Connect(ctx, p.blue.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer blue.Close(ctx)
	green, err := pgx.Connect(ctx, p.green.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer green.Close(ctx)
	names, err := rowcompare.Tables(ctx, blue)
	if err != nil {
		t.Fatal(err)
	}
	res, err := rowcompare.Compare(ctx, blue, green, names)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func differingTables(r *verify.Report) []string {
	var out []string
	for _, tr := range r.Tables {
		if len(tr.Differences) > 0 {
			out = append(out, tr.Table)
		}
	}
	return out
}

func differingRowcompare(res []rowcompare.Result) []string {
	var out []string
	for _, r := range res {
		if !r.Equal {
			out = append(out, r.Table)
		}
	}
	sort.Strings(out)
	return out
}

// TestVerifyBlue13Green17 runs verify on a live pair under pgbench load:
// equal data passes in both modes, planted differences are found and named,
// and the independent row comparison agrees.
func TestVerifyBlue13Green17(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	p := startPair(t, 13, 17, 2)

	t.Run("rowcompare equal after the initial copy", func(t *testing.T) {
		for _, r := range p.rowcompare(t) {
			if !r.Equal {
				t.Errorf("%s", r)
			}
			if r.BlueRows == 0 && r.Table != "public.pgbench_history" {
				t.Errorf("%s: no rows compared", r)
			}
		}
	})

	t.Run("equal while pgbench writes to blue", func(t *testing.T) {
		wait := p.load(t, 12*time.Second)
		time.Sleep(time.Second) // let the load start
		for _, mode := range []verify.Mode{verify.ModeChecksum, verify.ModeCount} {
			r := p.verify(t, mode)
			if !r.OK() {
				t.Errorf("%s mode found differences in equal data:\n%s", mode, r.Error())
			}
			if len(r.Tables) != 10 || r.Rows() < 200000 {
				t.Errorf("%s mode compared %d tables, %d rows; want 10 tables and every pgbench account", mode, len(r.Tables), r.Rows())
			}
		}
		wait()
		p.caughtUp(t)
		if diff := differingRowcompare(p.rowcompare(t)); len(diff) > 0 {
			t.Errorf("rowcompare after the load: %v differ, want none", diff)
		}
	})

	t.Run("the verify step passes and records its result", func(t *testing.T) {
		ctx := context.Background()
		env, step := verifyStep(t, p)
		ch, err := step.Observe(ctx, env)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Action != plans.ActionCreate || !strings.Contains(ch.Summary, "compare 10 tables") {
			t.Errorf("Observe before apply: %s %q", ch.Action, ch.Summary)
		}
		pre, err := step.Check(ctx, env)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range pre {
			if !c.OK {
				t.Errorf("precondition %q failed: %s", c.Name, c.Detail)
			}
		}
		if err := step.Apply(ctx, env); err != nil {
			t.Fatalf("Apply on equal data: %v", err)
		}
		if res, _ := env.Output("verify", "result"); res != "passed" {
			t.Errorf("recorded result %q, want passed", res)
		}
		if rows, _ := env.Output("verify", "rows"); rows == "" || rows == "0" {
			t.Errorf("recorded rows %q", rows)
		}
		if got := metric(t, env, "pgshift_verify_rows_checked"); got < 200000 {
			t.Errorf("pgshift_verify_rows_checked = %v after verifying every pgbench account", got)
		}
		if got, total := metric(t, env, "pgshift_verify_bytes_checked"), metric(t, env, "pgshift_verify_bytes_total"); total <= 0 || got < total*0.9 {
			t.Errorf("pgshift_verify_bytes_checked = %v of %v after verify finished", got, total)
		}
		ch, err = step.Observe(ctx, env)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Action != plans.ActionNone || !strings.Contains(ch.Summary, "no differences") {
			t.Errorf("Observe after a passed verify: %s %q, want none (✓)", ch.Action, ch.Summary)
		}
	})

	t.Run("a disabled subscription is refused", func(t *testing.T) { testDisabledSubscription(t, p) })

	t.Run("planted differences on green are found under load", func(t *testing.T) {
		p.green.Exec(t, db, `
			UPDATE kinds SET txt = 'planted' WHERE id = 77;
			DELETE FROM composite WHERE (tenant, day, seq) = (2, date '2024-01-02', 101);
			INSERT INTO textkey VALUES ('zzz planted', 1);
			UPDATE nokey SET b = 'planted' WHERE a = 5;
			DELETE FROM events WHERE id = 123;
			UPDATE sparse SET v = -1 WHERE id = 1500::bigint * 1000003;`)
		wait := p.load(t, 10*time.Second)
		time.Sleep(time.Second)
		r := p.verify(t, verify.ModeChecksum)
		want := []string{"public.composite", "public.events", "public.kinds", "public.nokey", "public.sparse", "public.textkey"}
		if got := differingTables(r); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("checksum mode: differences in %v, want exactly %v:\n%s", got, want, r.Error())
		}
		msg := r.Error()
		for _, w := range []string{
			"public.kinds: id ", "1 changed: id=77 differs",
			"1 missing on green: (tenant, day, seq)=(2, 2024-01-02, 101) missing on green",
			"1 only on green: code=zzz planted only on green",
			"(id, at)=(123, 2023-05-04) missing on green",
			"public.nokey: ", "1 missing on green, 1 only on green",
			"1 changed: id=1500004500 differs",
		} {
			if !strings.Contains(msg, w) {
				t.Errorf("report lacks %q:\n%s", w, msg)
			}
		}
		// The kinds difference names its primary-key range, the composite one a row-comparison range.
		for _, re := range []string{`public\.kinds: id (< \d+|>= \d+|in \[\d+, \d+\)): `, `public\.composite: \(tenant, day, seq\) (<|>=|in \[)`,
			`public\.sparse: id in \[\d+, \d+\): `} {
			if !regexp.MustCompile(re).MatchString(msg) {
				t.Errorf("report does not name a primary-key range matching %s:\n%s", re, msg)
			}
		}
		t.Logf("report:\n%s", msg)

		rc := p.verify(t, verify.ModeCount)
		wantCount := []string{"public.composite", "public.events", "public.textkey"} // changed rows keep counts
		if got := differingTables(rc); strings.Join(got, " ") != strings.Join(wantCount, " ") {
			t.Errorf("count mode: differences in %v, want exactly %v:\n%s", got, wantCount, rc.Error())
		}
		wait()
		p.caughtUp(t)
		if got := differingRowcompare(p.rowcompare(t)); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("rowcompare: %v differ, verify found %v", got, want)
		}

		ctx := context.Background()
		env, step := verifyStep(t, p)
		err := step.Apply(ctx, env)
		if err == nil || !strings.Contains(err.Error(), "public.kinds") || !strings.Contains(err.Error(), "id=77") {
			t.Errorf("Apply with planted differences: %v; want a failure naming public.kinds and id=77", err)
		}
		if res, _ := env.Output("verify", "result"); res != "failed" {
			t.Errorf("recorded result %q, want failed", res)
		}
		if got := metric(t, env, "pgshift_verify_differences"); got != 6 {
			t.Errorf("pgshift_verify_differences = %v, want 6", got)
		}
	})
}

// testDisabledSubscription: with the subscription disabled,
// green does not follow blue and re-checks could never settle, so verify
// refuses to start and says how to fix it.
func testDisabledSubscription(t *testing.T, p *pair) {
	p.green.Exec(t, db, "ALTER SUBSCRIPTION "+sub+" DISABLE")
	defer p.green.Exec(t, db, "ALTER SUBSCRIPTION "+sub+" ENABLE")
	_, err := verify.Run(context.Background(), p.connect(p.blue), p.connect(p.green), p.tables(t), verify.Options{Subscription: sub})
	if err == nil || !strings.Contains(err.Error(), "disabled") || !strings.Contains(err.Error(), "ENABLE") {
		t.Fatalf("verify with a disabled subscription: %v; want an error saying it is disabled and how to enable it", err)
	}
}

// verifyStep is the registered verify step for a spec pointing at the pair.
func verifyStep(t *testing.T, p *pair) (*engine.Env, engine.Step) {
	t.Helper()
	spec := &spec.Spec{Name: "verify-test"}
	spec.Source.DSN = p.blue.DSN(db)
	spec.Target.DSN = p.green.DSN(db)
	spec.Replication.Subscription = sub
	spec.SetDefaults()
	env := engine.NewEnv(spec, nil)
	t.Cleanup(env.Close)
	for _, s := range steps.For(spec) {
		if s.ID() == "verify" {
			if got := strings.Join(s.Needs(), ","); got != "replication.catchup" {
				t.Errorf("verify needs %q, want replication.catchup", got)
			}
			return env.ForStep("verify"), s
		}
	}
	t.Fatal("no step with ID verify is registered")
	return nil, nil
}

// metric reads a gauge from the run's registry.
func metric(t *testing.T, env *engine.Env, name string) float64 {
	t.Helper()
	families, err := env.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
