package cutover_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/steptest"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps"
	"github.com/pgshift/pgshift/steps/cutover"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/pgshift/pgshift/steps/switcher"
)

// The cutover's tests run the real pipeline (publication, slot,
// subscription, catch-up, verify) from blue 13 to green 17, then cut over
// and roll back under client load through a real PgBouncer or HAProxy.

// cutoverSchema is created on both sides; blue also gets the rows. Every
// client transaction inserts one ledger row and bumps one counter, so the
// row count and the counters' sum tell exactly how many transactions
// committed.
const cutoverSchema = `
CREATE TABLE ledger (id bigserial PRIMARY KEY, client int NOT NULL, note text, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE counters (id int PRIMARY KEY, v bigint NOT NULL);
CREATE MATERIALIZED VIEW ledger_totals AS SELECT client, count(*) AS n FROM ledger GROUP BY client;
`

const cutoverRows = `
INSERT INTO counters SELECT g, 0 FROM generate_series(1, 100) g;
INSERT INTO ledger (client, note) SELECT g % 7, 'seed' FROM generate_series(1, 1000) g;
REFRESH MATERIALIZED VIEW ledger_totals;
`

const seedRows = 1000

type cutoverRig struct {
	blue, green *pgtest.Cluster
	spec        *spec.Spec
	logs        *pgtest.LogBuffer
	step        *cutover.StepT
	graph       *engine.Graph
	statePath   string
	env         *engine.Env // the last session's
}

// rigStep gives a pipeline step the dependencies the rig provides: the
// preflight, audit and schema steps are done by hand here.
type rigStep struct {
	engine.Step
	needs []string
}

func (s rigStep) Needs() []string { return s.needs }

// newCutoverRig starts blue 13 and green 17, lets configure set the
// spec's cutover, and applies the pipeline through the engine with a state
// file, as pgshift apply does: it must stop before the gated cutover.
func newCutoverRig(t *testing.T, configure func(r *cutoverRig)) *cutoverRig {
	t.Helper()
	cs := pgtest.StartClusters(t, []int{13, 17})
	r := &cutoverRig{blue: cs[0], green: cs[1]}
	for _, c := range cs {
		c.CreateDatabase(t, "app")
		c.Exec(t, "app", cutoverSchema)
	}
	r.blue.Exec(t, "app", cutoverRows)
	r.spec = &spec.Spec{
		Name:   "shop",
		Source: spec.Endpoint{DSN: r.blue.DSN("app")},
		Target: spec.Endpoint{DSN: r.green.DSN("app")},
		Cutover: spec.CutoverSpec{
			PauseTimeout:       spec.Duration(10 * time.Second),
			ReverseReplication: true,
		},
	}
	configure(r)
	r.spec.SetDefaults()
	r.logs = &pgtest.LogBuffer{}
	r.step = cutover.NewStep(r.spec, nil)
	// The real pipeline steps, with the needs the rig leaves them.
	pipeline := map[string][]string{
		stepid.Publication:  nil,
		stepid.Slot:         {stepid.Publication},
		stepid.Subscription: {stepid.Slot},
		stepid.Catchup:      {stepid.Subscription},
		stepid.Verify:       {stepid.Catchup},
	}
	run := []engine.Step{r.step}
	for _, st := range steps.For(r.spec) {
		if needs, ok := pipeline[st.ID()]; ok {
			run = append(run, rigStep{st, needs})
		}
	}
	g, err := engine.Compile(run)
	if err != nil {
		t.Fatal(err)
	}
	r.graph = g
	r.statePath = filepath.Join(t.TempDir(), "shop.pgshift-state.json")
	res := r.engineApply(t, false)
	if len(res.Failed) > 0 {
		t.Fatalf("pipeline: %v\nlog:\n%s", res.Failed, r.logs)
	}
	if len(res.Held) != 1 || res.Held[0] != stepid.Cutover || len(res.Applied) != 5 {
		t.Fatalf("apply without approval: applied %v, held %v; want the 5 pipeline steps applied and the cutover held", res.Applied, res.Held)
	}
	return r
}

// session opens the state and a fresh environment, as one pgshift command
// does, and closes both when fn returns.
func (r *cutoverRig) session(t *testing.T, op string, fn func(env *engine.Env, store *engine.StateStore)) {
	t.Helper()
	store, err := engine.OpenState(r.statePath, r.spec, r.graph, engine.StateOptions{Operation: op})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	env := engine.NewEnv(r.spec, hclog.New(&hclog.LoggerOptions{Output: r.logs, Level: hclog.Debug}))
	defer env.Close()
	for _, c := range store.Snapshot().Steps {
		env.LoadOutputs(c.ID, c.Outputs)
	}
	r.env = env
	fn(env, store)
}

func (r *cutoverRig) engineApply(t *testing.T, approve bool) *engine.ApplyResult {
	t.Helper()
	var res *engine.ApplyResult
	r.session(t, "apply", func(env *engine.Env, store *engine.StateStore) {
		opts := engine.ApplyOptions{}
		if approve {
			opts.Approve = map[string]bool{stepid.Cutover: true}
		}
		var err error
		if res, err = engine.Apply(testCtx(t), r.graph, env, store, opts); err != nil {
			t.Fatal(err)
		}
	})
	return res
}

// cutoverError is the cutover's outcome in an apply: nil when it is done.
func cutoverError(t *testing.T, res *engine.ApplyResult) error {
	t.Helper()
	for _, f := range res.Failed {
		if f.ID == stepid.Cutover {
			return f.Err
		}
	}
	if len(res.Failed) > 0 || !slices.Contains(append(res.Applied, res.Skipped...), stepid.Cutover) {
		t.Fatalf("apply: failed %v, applied %v, held %v", res.Failed, res.Applied, res.Held)
	}
	return nil
}

// direct runs fn on the cutover step with the state hooked as the engine
// hooks it (every output written as recorded), outside the engine's walk:
// for a run killed mid-way.
func (r *cutoverRig) direct(t *testing.T, fn func(env *engine.Env)) {
	t.Helper()
	r.session(t, "apply", func(env *engine.Env, store *engine.StateStore) {
		env.OnRecord(func(step, key, value string) {
			_ = store.UpdateStep(step, func(c *engine.StepState) {
				if c.Outputs == nil {
					c.Outputs = map[string]string{}
				}
				c.Outputs[key] = value
			})
		})
		defer env.OnRecord(nil)
		fn(env.ForStep(stepid.Cutover))
	})
}

// killedRun runs the cutover's Apply or Rollback until stage, where it
// ends as a killed process would: no abort, no unfreeze.
func (r *cutoverRig) killedRun(t *testing.T, stage string, rollback bool) {
	t.Helper()
	r.step.SetHook(func(s string) error {
		if s == stage {
			runtime.Goexit()
		}
		return nil
	})
	defer r.step.SetHook(nil)
	r.direct(t, func(env *engine.Env) {
		done := make(chan error, 1)
		go func() {
			defer close(done)
			if rollback {
				done <- r.step.Rollback(testCtx(t), env)
			} else {
				done <- r.step.Apply(testCtx(t), env)
			}
		}()
		if err, ok := <-done; ok {
			t.Fatalf("the run returned %v before stage %s", err, stage)
		}
	})
}

// report is what pgshift status shows for the cutover.
func (r *cutoverRig) report(t *testing.T) string {
	t.Helper()
	var facts []string
	r.session(t, "status", func(env *engine.Env, _ *engine.StateStore) {
		var err error
		if facts, err = r.step.Report(testCtx(t), env.ForStep(stepid.Cutover)); err != nil {
			t.Fatal(err)
		}
	})
	return strings.Join(facts, "\n")
}

func (r *cutoverRig) output(key string) string {
	st, err := engine.ReadState(r.statePath)
	if err != nil {
		return ""
	}
	if c := st.Step(stepid.Cutover); c != nil {
		return c.Outputs[key]
	}
	return ""
}

func count(t *testing.T, c *pgtest.Cluster, sql string) int {
	t.Helper()
	n, err := strconv.Atoi(c.Scalar(t, "app", sql))
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// waitCount polls until sql returns want on c (replication is
// asynchronous), failing after a minute with the last value.
func waitCount(t *testing.T, c *pgtest.Cluster, sql string, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := count(t, c, sql)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s = %d on PostgreSQL %d, want %d", what, sql, got, c.Major, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkTotals asserts that c holds exactly the seed rows plus one ledger
// row and one counter increment per committed client transaction.
func checkTotals(t *testing.T, c *pgtest.Cluster, committed int, what string) {
	t.Helper()
	waitCount(t, c, "SELECT count(*) FROM ledger", seedRows+committed, what+": ledger rows")
	if got := count(t, c, "SELECT coalesce(sum(v), 0) FROM counters"); got != committed {
		t.Fatalf("%s: counters sum to %d on PostgreSQL %d, want %d (one per committed transaction)", what, got, c.Major, committed)
	}
	if got := count(t, c, "SELECT count(DISTINCT id) FROM ledger"); got != seedRows+committed {
		t.Fatalf("%s: %d distinct ids on PostgreSQL %d, want %d", what, got, c.Major, seedRows+committed)
	}
}

// pgbench runs Debian's pgbench with a write script at a fixed rate.
type pgbench struct {
	cmd    *exec.Cmd
	out    strings.Builder
	prefix string
	done   chan error
}

type pgbenchResult struct {
	processed, failed int
	maxLatency        time.Duration
	output            string
	err               error
}

const pgbenchScript = `\set c random(1, 100)
BEGIN;
INSERT INTO ledger (client, note) VALUES (:client_id, 'pgbench');
UPDATE counters SET v = v + 1 WHERE id = :c;
END;
`

func startPgbench(t *testing.T, host string, port int, seconds int) *pgbench {
	t.Helper()
	bin := pgtest.RequireClientBin(t, "pgbench")
	dir := t.TempDir()
	script := filepath.Join(dir, "write.sql")
	if err := os.WriteFile(script, []byte(pgbenchScript), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &pgbench{prefix: filepath.Join(dir, "tx"), done: make(chan error, 1)}
	p.cmd = exec.Command(bin, "-n", "-M", "simple", "-c", "4", "-j", "2", "-R", "200",
		"-T", strconv.Itoa(seconds), "-P", "1", "-f", script, "-l", "--log-prefix", p.prefix,
		"-h", host, "-p", strconv.Itoa(port), "-U", "postgres", "app")
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start pgbench: %v", err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
		}
	})
	return p
}

var (
	processedRe = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	failedRe    = regexp.MustCompile(`number of failed transactions: (\d+)`)
)

func (p *pgbench) wait(t *testing.T) pgbenchResult {
	t.Helper()
	var res pgbenchResult
	select {
	case res.err = <-p.done:
	case <-time.After(2 * time.Minute):
		_ = p.cmd.Process.Kill()
		t.Fatalf("pgbench did not end:\n%s", p.out.String())
	}
	res.output = p.out.String()
	if m := processedRe.FindStringSubmatch(res.output); m != nil {
		res.processed, _ = strconv.Atoi(m[1])
	} else {
		t.Fatalf("pgbench printed no transaction count (exit %v):\n%s", res.err, res.output)
	}
	if m := failedRe.FindStringSubmatch(res.output); m != nil {
		res.failed, _ = strconv.Atoi(m[1])
	}
	files, _ := filepath.Glob(p.prefix + ".*")
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseInt(fields[2], 10, 64)
			if err != nil {
				res.failed++ // "failed" or "skipped" in place of a latency
				continue
			}
			if d := time.Duration(us) * time.Microsecond; d > res.maxLatency {
				res.maxLatency = d
			}
		}
		fh.Close()
	}
	return res
}

// requireClean fails unless pgbench ended normally with no failed
// transaction.
func requireClean(t *testing.T, res pgbenchResult, what string) {
	t.Helper()
	if res.err != nil || res.failed != 0 {
		t.Fatalf("%s: pgbench exit %v, %d failed transactions:\n%s", what, res.err, res.failed, res.output)
	}
	t.Logf("%s: pgbench committed %d transactions, 0 failed, longest latency %s", what, res.processed, res.maxLatency.Round(time.Millisecond))
}

func currentSide(t *testing.T, sp *spec.Spec) switcher.Side {
	t.Helper()
	drv, err := cutover.NewSwitchDriver(sp)
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Close()
	side, err := drv.Current(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return side
}

func requireUnfrozen(t *testing.T, c *pgtest.Cluster, what string) {
	t.Helper()
	if c.ReadOnly(t, "app") {
		t.Fatalf("%s: database app on PostgreSQL %d still has a default_transaction_read_only setting", what, c.Major)
	}
}

// TestCutoverPgBouncer drives one blue/green pair through PgBouncer with
// pgbench writing all along, through the engine and its state file as
// pgshift apply does: a cutover that aborts because green goes away at the
// switch; a run killed right after the switch, finished by the next apply;
// the rollback of that cutover, which resumes the forward replication; a
// clean cutover; and the full rollback.
func TestCutoverPgBouncer(t *testing.T) {
	requireIntegration(t)
	var bouncer *pgtest.PgBouncer
	r := newCutoverRig(t, func(r *cutoverRig) {
		bouncer = pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{Databases: map[string]string{
			"app": fmt.Sprintf("host=127.0.0.1 port=%d dbname=app", r.blue.Port),
		}})
		r.spec.Cutover.Freeze = "pooler"
		r.spec.Cutover.Switch.PgBouncer = &spec.PgBouncerSwitch{AdminDSN: bouncer.AdminDSN, Config: bouncer.ConfigPath, Database: "app"}
		// The application's own path: after the unfreeze pgshift writes
		// through it and checks the write landed on green.
		r.spec.Cutover.Confirm = &spec.ConfirmSpec{DSN: bouncer.DSN("app")}
	})
	committed := 0

	t.Run("gate", func(t *testing.T) {
		if g := r.step.Gate(); !strings.Contains(g, "10s") || !strings.Contains(g, "PgBouncer") {
			t.Fatalf("gate %q should say the pause bound and the switch", g)
		}
		auto := *r.spec
		auto.Cutover.Approval = "auto"
		if g := (cutover.NewStep(&auto, nil)).Gate(); g != "" {
			t.Fatalf("approval auto: gate %q, want none", g)
		}
	})

	t.Run("abort when green goes away at the switch", func(t *testing.T) {
		r.step.SetHook(func(stage string) error {
			if stage == "after-switch" {
				r.green.Stop(t)
			}
			return nil
		})
		defer r.step.SetHook(nil)
		bench := startPgbench(t, bouncer.Host, bouncer.Port, 6)
		time.Sleep(2 * time.Second)
		err := cutoverError(t, r.engineApply(t, true))
		res := bench.wait(t)
		if err == nil || !strings.Contains(err.Error(), "cutover aborted") || !strings.Contains(err.Error(), "nothing was lost") {
			t.Fatalf("apply with green gone: %v\nlog:\n%s", err, r.logs)
		}
		t.Logf("abort: %v", err)
		t.Logf("abort: write pause %s ms", r.output(cutover.CoPauseMS))
		requireClean(t, res, "abort")
		committed += res.processed
		if side := currentSide(t, r.spec); side != switcher.Blue {
			t.Fatalf("after the abort PgBouncer sends traffic to %s, want blue", side)
		}
		if r.output(cutover.CoPhase) != cutover.PhaseAborted {
			t.Fatalf("phase %q after the abort", r.output(cutover.CoPhase))
		}
		checkTotals(t, r.blue, committed, "blue after the abort")
		r.green.Start(t)
	})

	t.Run("killed after the switch, finished by the next apply", func(t *testing.T) {
		bench := startPgbench(t, bouncer.Host, bouncer.Port, 8)
		time.Sleep(2 * time.Second)
		r.killedRun(t, "after-switch", false)
		// PgBouncer is paused and already points at green: clients wait.
		if text := r.report(t); !strings.Contains(text, "BLUE IS FROZEN") || !strings.Contains(text, `RESUME "app"`) {
			t.Fatalf("status after the kill should say blue is frozen and how to undo it:\n%s", text)
		}
		if err := cutoverError(t, r.engineApply(t, true)); err != nil {
			t.Fatalf("apply after the kill: %v\nlog:\n%s", err, r.logs)
		}
		res := bench.wait(t)
		requireClean(t, res, "killed cutover finished")
		committed += res.processed
		if side := currentSide(t, r.spec); side != switcher.Green {
			t.Fatalf("traffic on %s", side)
		}
		checkTotals(t, r.green, committed, "green after the finished cutover")
		checkTotals(t, r.blue, committed, "blue through reverse replication")
		requireConfirmedThroughSwitch(t, r)
	})

	t.Run("rollback of the cutover resumes forward replication", func(t *testing.T) {
		bench := startPgbench(t, bouncer.Host, bouncer.Port, 8)
		time.Sleep(2 * time.Second)
		r.direct(t, func(env *engine.Env) {
			if err := r.step.Rollback(testCtx(t), env); err != nil {
				t.Fatalf("rollback: %v\nlog:\n%s", err, r.logs)
			}
		})
		res := bench.wait(t)
		requireClean(t, res, "rollback")
		committed += res.processed
		t.Logf("rollback: write pause %s ms (pgshift's measure): %s", r.output(cutover.RbPauseMS), r.lastBreakdown())
		if side := currentSide(t, r.spec); side != switcher.Blue {
			t.Fatalf("after the rollback PgBouncer sends traffic to %s", side)
		}
		// The rows written on green while it was live are on blue, and the
		// forward subscription follows blue again without replaying them.
		checkTotals(t, r.blue, committed, "blue after the rollback")
		checkTotals(t, r.green, committed, "green following blue again")
		requireNoReverse(t, r)
		// As engine.Rollback records a rolled-back step.
		r.session(t, "rollback", func(_ *engine.Env, store *engine.StateStore) {
			if err := store.UpdateStep(stepid.Cutover, func(c *engine.StepState) { c.Status, c.Outputs = engine.StatusRolledBack, nil }); err != nil {
				t.Fatal(err)
			}
		})
	})

	t.Run("cutover under load", func(t *testing.T) {
		bench := startPgbench(t, bouncer.Host, bouncer.Port, 10)
		time.Sleep(3 * time.Second)
		if err := cutoverError(t, r.engineApply(t, true)); err != nil {
			t.Fatalf("cutover: %v\nlog:\n%s", err, r.logs)
		}
		requirePauseMetric(t, r.env.Metrics, "cutover", r.output(cutover.CoPauseMS))
		res := bench.wait(t)
		requireClean(t, res, "cutover")
		committed += res.processed
		t.Logf("cutover: write pause %s ms (pgshift's measure, state file written as in pgshift apply): %s", r.output(cutover.CoPauseMS), r.lastBreakdown())
		if side := currentSide(t, r.spec); side != switcher.Green {
			t.Fatalf("after the cutover PgBouncer sends traffic to %s", side)
		}
		// Every row, from before, during and after the cutover, is on green,
		// and green's writes flow back to blue.
		checkTotals(t, r.green, committed, "green after the cutover")
		checkTotals(t, r.blue, committed, "blue through reverse replication")
		requireConfirmedThroughSwitch(t, r)
		if got := r.green.Scalar(t, "app", "SELECT subenabled FROM pg_subscription WHERE subname = 'pgshift_shop'"); got != "f" {
			t.Fatalf("forward subscription enabled = %s after the cutover", got)
		}
		if got := r.blue.Scalar(t, "app", "SELECT subenabled FROM pg_subscription WHERE subname = 'pgshift_shop_reverse'"); got != "t" {
			t.Fatalf("reverse subscription enabled = %s on blue", got)
		}
		// A second apply changes nothing.
		res2 := r.engineApply(t, true)
		if !slices.Contains(res2.Skipped, stepid.Cutover) || len(res2.Failed) > 0 {
			t.Fatalf("apply again after the cutover: skipped %v, failed %v", res2.Skipped, res2.Failed)
		}
		if text := r.report(t); !strings.Contains(text, "cutover done") || !strings.Contains(text, "pgbouncer sends traffic to green") ||
			!strings.Contains(text, "the forward slot pgshift_shop holds ") {
			t.Fatalf("status facts:\n%s", text)
		}
	})

	t.Run("a write that reaches blue is not confirmed", func(t *testing.T) {
		// As if the switch had left the application on blue: the path named
		// by confirm.dsn reaches blue directly.
		sp := *r.spec
		sp.Cutover.Confirm = &spec.ConfirmSpec{DSN: r.blue.DSN("app")}
		step := cutover.NewStep(&sp, nil)
		r.session(t, "status", func(env *engine.Env, _ *engine.StateStore) {
			env = env.ForStep(stepid.Cutover)
			err := cutover.ConfirmThroughSwitch(testCtx(t), step, env)
			if err == nil || !strings.Contains(err.Error(), "landed on BLUE") || !strings.Contains(err.Error(), "pgshift rollback") {
				t.Fatalf("confirmation through blue: %v, want an error saying it landed on blue and how to roll back", err)
			}
			if got, _ := env.Output(stepid.Cutover, cutover.CoConfirmed); got != "false" {
				t.Fatalf("%s = %q, want false", cutover.CoConfirmed, got)
			}
		})
		if n := r.blue.Scalar(t, "app", "SELECT count(*) FROM pg_class WHERE relname = 'pgshift_confirm'"); n != "0" {
			t.Fatalf("%s pgshift_confirm tables left on blue", n)
		}
		// The identity is readable by any application role, on both versions.
		for _, side := range []*pgtest.Cluster{r.blue, r.green} {
			if ok := side.Scalar(t, "app", "SELECT has_function_privilege('public', 'pg_control_system()', 'EXECUTE')"); ok != "t" {
				t.Fatalf("pg_control_system() is not executable by PUBLIC on port %d", side.Port)
			}
		}
	})

	t.Run("full rollback under load", func(t *testing.T) {
		bench := startPgbench(t, bouncer.Host, bouncer.Port, 8)
		time.Sleep(3 * time.Second)
		var rb *engine.RollbackResult
		r.session(t, "rollback", func(env *engine.Env, store *engine.StateStore) {
			var err error
			if rb, err = engine.Rollback(testCtx(t), r.graph, env, store, engine.RollbackOptions{}); err != nil {
				t.Fatal(err)
			}
		})
		pause := ""
		if m := regexp.MustCompile(`cutover rolled back: traffic on blue, write pause ([0-9.]+m?s)`).FindAllStringSubmatch(r.logs.String(), -1); m != nil {
			pause = m[len(m)-1][1]
		}
		res := bench.wait(t)
		if !rb.Complete() {
			t.Fatalf("rollback: %+v\nlog:\n%s", rb, r.logs)
		}
		requireClean(t, res, "full rollback")
		committed += res.processed
		t.Logf("full rollback: write pause %s (pgshift's measure, through engine.Rollback): %s", pause, r.lastBreakdown())
		if side := currentSide(t, r.spec); side != switcher.Blue {
			t.Fatalf("after the rollback PgBouncer sends traffic to %s", side)
		}
		checkTotals(t, r.blue, committed, "blue after the full rollback")
		requireNoReverse(t, r)
		if n := count(t, r.blue, "SELECT count(*) FROM pg_replication_slots"); n != 0 {
			t.Fatalf("%d slots left on blue", n)
		}
	})
}

// lastBreakdown is the last pause breakdown pgshift logged.
func (r *cutoverRig) lastBreakdown() string {
	m := regexp.MustCompile(`breakdown="([^"]*)"`).FindAllStringSubmatch(r.logs.String(), -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}

// requirePauseMetric checks the exported pause against the recorded one.
func requirePauseMetric(t *testing.T, m *engine.Metrics, operation, pauseMS string) {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := strconv.ParseFloat(pauseMS, 64)
	for _, f := range families {
		if f.GetName() != "pgshift_cutover_pause_seconds" {
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "operation" && l.GetValue() == operation {
					if v := mt.GetGauge().GetValue(); v <= 0 || v*1000 < ms || v*1000 >= ms+1 {
						t.Fatalf("pgshift_cutover_pause_seconds{operation=%q} = %v, recorded pause %s ms", operation, v, pauseMS)
					}
					return
				}
			}
		}
	}
	t.Fatalf("no pgshift_cutover_pause_seconds{operation=%q} exported", operation)
}

// requireNoReverse checks that no reverse replication object is left.
func requireNoReverse(t *testing.T, r *cutoverRig) {
	t.Helper()
	for _, q := range []struct {
		c   *pgtest.Cluster
		sql string
	}{
		{r.blue, "SELECT count(*) FROM pg_subscription WHERE subname = 'pgshift_shop_reverse'"},
		{r.green, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgshift_shop_reverse'"},
		{r.green, "SELECT count(*) FROM pg_publication WHERE pubname = 'pgshift_shop_reverse'"},
	} {
		if n := count(t, q.c, q.sql); n != 0 {
			t.Fatalf("reverse replication left behind on PostgreSQL %d: %s = %d", q.c.Major, q.sql, n)
		}
	}
}

// appWriters are application clients through HAProxy: one statement per
// transaction, reconnecting after any error, as an application would.
type appWriters struct {
	mu      sync.Mutex
	acked   []int64
	errs    int
	lastErr string
	lastOK  time.Time
	maxGap  time.Duration
	errLog  []string
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startWriters(t *testing.T, dsn string, n int) *appWriters {
	w := &appWriters{stop: make(chan struct{}), lastOK: time.Now()}
	for i := 1; i <= n; i++ {
		w.wg.Add(1)
		go func(client int) {
			defer w.wg.Done()
			var conn *pgx.Conn
			defer func() {
				if conn != nil {
					conn.Close(context.Background())
				}
			}()
			for {
				select {
				case <-w.stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				var err error
				if conn == nil {
					conn, err = pgx.Connect(ctx, dsn)
				}
				var id int64
				if err == nil {
					err = conn.QueryRow(ctx, `WITH i AS (INSERT INTO ledger (client, note) VALUES ($1, 'go') RETURNING id),
					                              u AS (UPDATE counters SET v = v + 1 WHERE id = $1)
					                         SELECT id FROM i`, client).Scan(&id)
				}
				cancel()
				w.mu.Lock()
				if err != nil {
					w.errs++
					w.lastErr = err.Error()
					if len(w.errLog) < 400 {
						w.errLog = append(w.errLog, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
					if conn != nil {
						conn.Close(context.Background())
						conn = nil
					}
				} else {
					now := time.Now()
					if gap := now.Sub(w.lastOK); gap > w.maxGap {
						w.maxGap = gap
					}
					w.lastOK = now
					w.acked = append(w.acked, id)
				}
				w.mu.Unlock()
			}
		}(i)
	}
	t.Cleanup(w.halt)
	return w
}

func (w *appWriters) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// requireAcked checks that every acknowledged row is on c and that c holds
// no more client rows than were acknowledged plus those whose
// acknowledgement an error may have swallowed.
func (w *appWriters) requireAcked(t *testing.T, c *pgtest.Cluster, before int, what string) {
	t.Helper()
	w.mu.Lock()
	ids := make([]string, len(w.acked))
	for i, id := range w.acked {
		ids[i] = strconv.FormatInt(id, 10)
	}
	errs := w.errs
	w.mu.Unlock()
	missing := count(t, c, "SELECT count(*) FROM unnest('{"+strings.Join(ids, ",")+"}'::bigint[]) a(id) WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.id = a.id)")
	if missing != 0 {
		t.Fatalf("%s: %d acknowledged rows missing on PostgreSQL %d; client errors:\n%s", what, missing, c.Major, w.errorLog())
	}
	extra := count(t, c, "SELECT count(*) FROM ledger WHERE note = 'go'") - before - len(ids)
	if extra < 0 || extra > errs {
		t.Fatalf("%s: %d client rows on PostgreSQL %d beyond the %d acknowledged (%d errors)", what, extra, c.Major, len(ids), errs)
	}
}

// errorLog lists the client errors with their times, for a failure message.
func (w *appWriters) errorLog() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.errLog, "\n")
}

func (w *appWriters) summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("%d rows acknowledged, %d client errors (last: %s), longest gap between acknowledged writes %s",
		len(w.acked), w.errs, w.lastErr, w.maxGap.Round(time.Millisecond))
}

// newHAProxyRig is the cutover rig behind a real HAProxy (backend pg,
// servers blue and green, blue active; opts adds HealthCheck) with the
// read-only freeze HAProxy needs; configure, when set, changes the spec
// further before the pipeline runs.
func newHAProxyRig(t *testing.T, opts pgtest.HAProxyOptions, configure func(r *cutoverRig)) (*cutoverRig, *pgtest.HAProxy) {
	t.Helper()
	var proxy *pgtest.HAProxy
	r := newCutoverRig(t, func(r *cutoverRig) {
		opts.Backend, opts.Active = "pg", "blue"
		opts.Servers = []pgtest.HAProxyServer{
			{Name: "blue", Addr: fmt.Sprintf("127.0.0.1:%d", r.blue.Port)},
			{Name: "green", Addr: fmt.Sprintf("127.0.0.1:%d", r.green.Port)},
		}
		proxy = pgtest.StartHAProxy(t, opts)
		r.spec.Cutover.Freeze = "read-only"
		r.spec.Cutover.Switch.HAProxy = &spec.HAProxySwitch{Socket: proxy.Socket, Backend: "pg", BlueServer: "blue", GreenServer: "green"}
		if configure != nil {
			configure(r)
		}
	})
	return r, proxy
}

// TestCutoverHAProxy cuts over through HAProxy with the read-only freeze:
// HAProxy cannot hold queries, so clients see errors during the pause and
// reconnect; every acknowledged write must be on green. It also checks the
// recovery of a run killed inside its freeze, which left blue read-only,
// a run killed right after its switch and rolled back, the abort past
// pause_timeout, the abort when an exec switch command
// fails, and a rollback killed inside its own freeze.
func TestCutoverHAProxy(t *testing.T) {
	requireIntegration(t)
	r, proxy := newHAProxyRig(t, pgtest.HAProxyOptions{}, nil)
	ctx := testCtx(t)

	t.Run("pooler freeze refused with HAProxy", func(t *testing.T) {
		bad := *r.spec
		bad.Cutover.Freeze = "pooler"
		r.session(t, "status", func(env *engine.Env, _ *engine.StateStore) {
			pre, err := (cutover.NewStep(&bad, nil)).Check(ctx, env.ForStep(stepid.Cutover))
			if err != nil {
				t.Fatal(err)
			}
			if err := cutover.FailedPreconditions(pre); err == nil || !strings.Contains(err.Error(), "read-only") {
				t.Fatalf("freeze pooler with HAProxy: %v", err)
			}
		})
	})

	t.Run("a sequence green lacks stops the cutover before the freeze", func(t *testing.T) {
		r.blue.Exec(t, "app", `CREATE SEQUENCE "Odd Seq"; SELECT nextval('"Odd Seq"')`)
		defer r.blue.Exec(t, "app", `DROP SEQUENCE "Odd Seq"`)
		r.session(t, "status", func(env *engine.Env, _ *engine.StateStore) {
			pre, err := r.step.Check(ctx, env.ForStep(stepid.Cutover))
			if err != nil {
				t.Fatal(err)
			}
			err = cutover.FailedPreconditions(pre)
			if err == nil || !strings.Contains(err.Error(), "public.Odd Seq") || !strings.Contains(err.Error(), "missing on green") {
				t.Fatalf("a sequence only on blue: %v", err)
			}
		})
	})

	t.Run("a table published but not subscribed stops the cutover before the freeze", func(t *testing.T) {
		for _, c := range []*pgtest.Cluster{r.blue, r.green} {
			c.Exec(t, "app", `CREATE TABLE "Late Table" (id int PRIMARY KEY)`)
		}
		pub := pgx.Identifier{r.spec.PublicationName()}.Sanitize()
		r.blue.Exec(t, "app", `ALTER PUBLICATION `+pub+` ADD TABLE "Late Table"`)
		defer func() {
			r.blue.Exec(t, "app", `ALTER PUBLICATION `+pub+` DROP TABLE "Late Table"`)
			for _, c := range []*pgtest.Cluster{r.blue, r.green} {
				c.Exec(t, "app", `DROP TABLE "Late Table"`)
			}
		}()
		r.session(t, "status", func(env *engine.Env, _ *engine.StateStore) {
			pre, err := r.step.Check(ctx, env.ForStep(stepid.Cutover))
			if err != nil {
				t.Fatal(err)
			}
			err = cutover.FailedPreconditions(pre)
			if err == nil || !strings.Contains(err.Error(), "every published table subscribed") || !strings.Contains(err.Error(), `public."Late Table"`) {
				t.Fatalf("a table in blue's publication and not in green's subscription: %v", err)
			}
		})
	})

	t.Run("killed inside the freeze, then rolled back", func(t *testing.T) {
		r.killedRun(t, "frozen", false)
		if !cutover.FrozenPhase(r.output(cutover.CoPhase)) {
			t.Fatalf("phase %q recorded by the killed run", r.output(cutover.CoPhase))
		}
		if got := r.blue.Scalar(t, "app", "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'app'"); got != "1" {
			t.Fatalf("the killed run should have left blue read-only (%s settings)", got)
		}
		if text := r.report(t); !strings.Contains(text, "BLUE IS FROZEN") || !strings.Contains(text, `ALTER DATABASE "app" RESET default_transaction_read_only`) {
			t.Fatalf("status should say blue is frozen and how to undo it:\n%s", text)
		}
		r.session(t, "status", func(env *engine.Env, _ *engine.StateStore) {
			if pre, err := r.step.Check(ctx, env.ForStep(stepid.Cutover)); err != nil || cutover.FailedPreconditions(pre) != nil {
				t.Fatalf("with a freeze in place the preconditions must let apply run: %v %v", pre, err)
			}
		})
		r.direct(t, func(env *engine.Env) {
			if err := r.step.Rollback(ctx, env); err != nil {
				t.Fatalf("rollback of the interrupted cutover: %v\nlog:\n%s", err, r.logs)
			}
		})
		requireUnfrozen(t, r.blue, "blue after the rollback of an interrupted cutover")
		if side := currentSide(t, r.spec); side != switcher.Blue {
			t.Fatalf("traffic on %s", side)
		}
		if got := r.green.Scalar(t, "app", "SELECT subenabled FROM pg_subscription WHERE subname = 'pgshift_shop'"); got != "t" {
			t.Fatalf("forward subscription enabled = %s after undoing the interrupted cutover", got)
		}
		requireNoReverse(t, r)
	})

	t.Run("killed after the switch, then rolled back: blue takes writes again", func(t *testing.T) {
		r.killedRun(t, "after-switch", false)
		if side := currentSide(t, r.spec); side != switcher.Green {
			t.Fatalf("the killed run should have switched to green, traffic on %s", side)
		}
		r.direct(t, func(env *engine.Env) {
			if err := r.step.Rollback(ctx, env); err != nil {
				t.Fatalf("rollback of the cutover killed after its switch: %v\nlog:\n%s", err, r.logs)
			}
		})
		if side := currentSide(t, r.spec); side != switcher.Blue {
			t.Fatalf("traffic on %s after the rollback", side)
		}
		requireUnfrozen(t, r.blue, "blue after the rollback of a cutover killed after its switch")
		requireUnfrozen(t, r.green, "green after the rollback of a cutover killed after its switch")
		if got := r.green.Scalar(t, "app", "SELECT subenabled FROM pg_subscription WHERE subname = 'pgshift_shop'"); got != "t" {
			t.Fatalf("forward subscription enabled = %s after the rollback", got)
		}
		requireNoReverse(t, r)
		// As engine.Rollback records a rolled-back step.
		r.session(t, "rollback", func(_ *engine.Env, store *engine.StateStore) {
			if err := store.UpdateStep(stepid.Cutover, func(c *engine.StepState) { c.Status, c.Outputs = engine.StatusRolledBack, nil }); err != nil {
				t.Fatal(err)
			}
		})
	})

	t.Run("pause_timeout reached: aborted back to blue", func(t *testing.T) {
		short := *r.spec
		short.Cutover.PauseTimeout = spec.Duration(2 * time.Second)
		slow := cutover.NewStep(&short, func(stage string) error {
			if stage == "frozen" {
				time.Sleep(3 * time.Second) // something inside the freeze takes too long
			}
			return nil
		})
		r.direct(t, func(env *engine.Env) {
			err := slow.Apply(ctx, env)
			if err == nil || !strings.Contains(err.Error(), "cutover aborted") || !strings.Contains(err.Error(), "pause_timeout 2s reached") {
				t.Fatalf("apply past pause_timeout: %v\nlog:\n%s", err, r.logs)
			}
		})
		requireUnfrozen(t, r.blue, "blue after the timeout")
		if side := currentSide(t, r.spec); side != switcher.Blue {
			t.Fatalf("traffic on %s after the timeout", side)
		}
		if got := r.green.Scalar(t, "app", "SELECT subenabled FROM pg_subscription WHERE subname = 'pgshift_shop'"); got != "t" {
			t.Fatalf("forward subscription enabled = %s after the timeout", got)
		}
		requireNoReverse(t, r)
	})

	t.Run("exec switch command fails: aborted back to blue", func(t *testing.T) {
		failing := *r.spec
		failing.Cutover.Switch = spec.SwitchSpec{Exec: &spec.ExecSwitch{
			Switch: []string{"sh", "-c", "echo green is not reachable from here >&2; exit 3"},
			Back:   []string{"true"},
		}}
		r.direct(t, func(env *engine.Env) {
			err := (cutover.NewStep(&failing, nil)).Apply(ctx, env)
			if err == nil || !strings.Contains(err.Error(), "cutover aborted") || !strings.Contains(err.Error(), "green is not reachable from here") {
				t.Fatalf("apply with a failing switch command: %v\nlog:\n%s", err, r.logs)
			}
		})
		requireUnfrozen(t, r.blue, "blue after the failed switch")
		if got := r.green.Scalar(t, "app", "SELECT subenabled FROM pg_subscription WHERE subname = 'pgshift_shop'"); got != "t" {
			t.Fatalf("forward subscription enabled = %s after the failed switch", got)
		}
		requireNoReverse(t, r)
	})

	t.Run("cutover under load", func(t *testing.T) {
		w := startWriters(t, proxy.DSN("app"), 3)
		time.Sleep(2 * time.Second)
		if err := cutoverError(t, r.engineApply(t, true)); err != nil {
			t.Fatalf("cutover: %v\nlog:\n%s", err, r.logs)
		}
		time.Sleep(2 * time.Second)
		w.halt()
		t.Logf("cutover: write pause %s ms (pgshift's measure): %s; clients: %s", r.output(cutover.CoPauseMS), r.lastBreakdown(), w.summary())
		if side := currentSide(t, r.spec); side != switcher.Green {
			t.Fatalf("after the cutover HAProxy sends traffic to %s", side)
		}
		w.requireAcked(t, r.green, 0, "green after the cutover")
		requireUnfrozen(t, r.blue, "blue after the cutover")
		waitCount(t, r.blue, "SELECT count(*) FROM ledger", count(t, r.green, "SELECT count(*) FROM ledger"), "blue through reverse replication")
	})

	t.Run("killed inside the rollback freeze, then rolled back again under load", func(t *testing.T) {
		before := count(t, r.green, "SELECT count(*) FROM ledger WHERE note = 'go'")
		w := startWriters(t, proxy.DSN("app"), 3)
		time.Sleep(2 * time.Second)
		r.killedRun(t, "rollback-frozen", true)
		if text := r.report(t); !strings.Contains(text, "GREEN IS FROZEN") {
			t.Fatalf("status should say green is frozen:\n%s", text)
		}
		r.direct(t, func(env *engine.Env) {
			if err := r.step.Rollback(ctx, env); err != nil {
				t.Fatalf("rollback: %v\nlog:\n%s", err, r.logs)
			}
		})
		time.Sleep(2 * time.Second)
		w.halt()
		t.Logf("rollback: write pause %s ms (pgshift's measure): %s; clients: %s", r.output(cutover.RbPauseMS), r.lastBreakdown(), w.summary())
		if side := currentSide(t, r.spec); side != switcher.Blue {
			t.Fatalf("after the rollback HAProxy sends traffic to %s", side)
		}
		w.requireAcked(t, r.blue, before, "blue after the rollback")
		requireUnfrozen(t, r.green, "green after the rollback")
		requireNoReverse(t, r)
		waitCount(t, r.green, "SELECT count(*) FROM ledger", count(t, r.blue, "SELECT count(*) FROM ledger"), "green following blue again")
	})
}

// requireConfirmedThroughSwitch checks that the cutover recorded a write
// through cutover.confirm.dsn as landed on green, and that the write left
// nothing behind on either side.
func requireConfirmedThroughSwitch(t *testing.T, r *cutoverRig) {
	t.Helper()
	if got := r.output(cutover.CoConfirmed); got != "true" {
		t.Fatalf("%s = %q after the cutover, want true\nlog:\n%s", cutover.CoConfirmed, got, r.logs)
	}
	if !strings.Contains(r.logs.String(), "write through the switch landed on green") {
		t.Fatalf("the log does not say the write through the switch landed on green:\n%s", r.logs)
	}
	for _, side := range []*pgtest.Cluster{r.green, r.blue} {
		if n := side.Scalar(t, "app", "SELECT count(*) FROM pg_class WHERE relname = 'pgshift_confirm'"); n != "0" {
			t.Fatalf("%s pgshift_confirm tables left on port %d after the confirmation", n, side.Port)
		}
	}
}

// TestCutoverLifecycle holds the cutover to the contract every step keeps
// (steptest): apply, apply again changes nothing, observe then shows it in
// place, rollback twice; through a real PgBouncer.
func TestCutoverLifecycle(t *testing.T) {
	requireIntegration(t)
	r := newCutoverRig(t, func(r *cutoverRig) {
		bouncer := pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{Databases: map[string]string{
			"app": fmt.Sprintf("host=127.0.0.1 port=%d dbname=app", r.blue.Port),
		}})
		r.spec.Cutover.Freeze = "pooler"
		r.spec.Cutover.Switch.PgBouncer = &spec.PgBouncerSwitch{AdminDSN: bouncer.AdminDSN, Config: bouncer.ConfigPath, Database: "app"}
	})
	objects := func(t *testing.T) string {
		return fmt.Sprintf("traffic on %s; blue: subscriptions=%s read-only settings=%s; green: subscriptions enabled=%s slots=%s publications=%s",
			currentSide(t, r.spec),
			r.blue.Scalar(t, "app", "SELECT string_agg(subname || ':' || subenabled, ',' ORDER BY subname) FROM pg_subscription"),
			r.blue.Scalar(t, "app", "SELECT count(*) FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%read_only%'"),
			r.green.Scalar(t, "app", "SELECT string_agg(subname || ':' || subenabled, ',' ORDER BY subname) FROM pg_subscription"),
			r.green.Scalar(t, "app", "SELECT count(*) FROM pg_replication_slots"),
			r.green.Scalar(t, "app", "SELECT count(*) FROM pg_publication"))
	}
	ctx := testCtx(t)
	r.direct(t, func(env *engine.Env) {
		steptest.ApplyTwice(t, ctx, env, r.step, objects)
		if side := currentSide(t, r.spec); side != switcher.Green {
			t.Fatalf("after the cutover traffic goes to %s", side)
		}
		steptest.InPlace(t, ctx, env, []engine.Step{r.step})
		steptest.RollbackTwice(t, ctx, env, r.step, objects)
	})
	if side := currentSide(t, r.spec); side != switcher.Blue {
		t.Fatalf("after the rollback traffic goes to %s", side)
	}
	requireUnfrozen(t, r.blue, "after the rollback")
	requireUnfrozen(t, r.green, "after the rollback")
	if t.Failed() {
		t.Logf("log:\n%s", r.logs)
	}
}
