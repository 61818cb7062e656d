package cutover_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/cutover"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/pgshift/pgshift/steps/switcher"
)

// TestCutoverFaultsPgBouncer breaks what production breaks inside the
// cutover's freeze, through a real PgBouncer with application clients
// writing all along (reconnecting after errors, as applications do):
//   - PgBouncer killed and restarted inside the freeze: it forgets its
//     PAUSE, so writes reach blue after the drain; the cutover must not
//     switch (those writes would not be on green) and aborts to blue;
//   - a transaction left open on blue: PgBouncer's PAUSE waits for it, the
//     freeze is bounded by pause_timeout, the abort names its pid;
//   - green stopped at the switch: aborted back to blue;
//
// each time nothing is lost (every acknowledged row on blue, green equal
// to blue once it catches up), PgBouncer is not left paused, and status
// says what happened and how to go on; then a clean cutover succeeds.
func TestCutoverFaultsPgBouncer(t *testing.T) {
	requireIntegration(t)
	var bouncer *pgtest.PgBouncer
	r := newCutoverRig(t, func(r *cutoverRig) {
		bouncer = pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{Databases: map[string]string{
			"app": fmt.Sprintf("host=127.0.0.1 port=%d dbname=app", r.blue.Port),
		}})
		r.spec.Cutover.Freeze = "pooler"
		r.spec.Cutover.Switch.PgBouncer = &spec.PgBouncerSwitch{AdminDSN: bouncer.AdminDSN, Config: bouncer.ConfigPath, Database: "app"}
	})
	// PgBouncer 1.18 carries no prepared statement across transactions.
	clientDSN := bouncer.DSN("app") + "&default_query_exec_mode=simple_protocol"
	ctx := testCtx(t)
	before := 0

	// aborted checks what every fault must leave: traffic on blue, nothing
	// paused or read-only, every acknowledged row on blue and, once
	// replication catches up, green equal to blue; status names the abort
	// and the next command.
	aborted := func(t *testing.T, w *appWriters, what string) {
		t.Helper()
		if side := currentSide(t, r.spec); side != switcher.Blue {
			t.Fatalf("%s: PgBouncer sends traffic to %s, want blue", what, side)
		}
		if r.output(cutover.CoPhase) != cutover.PhaseAborted {
			t.Fatalf("%s: phase %q, want aborted", what, r.output(cutover.CoPhase))
		}
		if bouncer.Paused(t, "app") {
			t.Fatalf("%s: PgBouncer still holds database app paused", what)
		}
		requireUnfrozen(t, r.blue, what)
		requireUnfrozen(t, r.green, what)
		time.Sleep(time.Second) // writes go on after the abort
		w.halt()
		t.Logf("%s: clients %s", what, w.summary())
		w.requireAcked(t, r.blue, before, what+": blue")
		before = count(t, r.blue, "SELECT count(*) FROM ledger WHERE note = 'go'")
		waitCount(t, r.green, "SELECT count(*) FROM ledger", count(t, r.blue, "SELECT count(*) FROM ledger"), what+": green catching up")
		requireRowsEqual(t, r, what)
		requireLive(t, r, cutover.LiveBlue, what)
		if text := r.report(t); !strings.Contains(text, "last cutover aborted, traffic on blue") || !strings.Contains(text, "pgshift apply --approve-cutover again") {
			t.Fatalf("%s: status should say the cutover aborted and how to go on:\n%s", what, text)
		}
	}

	t.Run("PgBouncer killed and restarted inside the freeze", func(t *testing.T) {
		w := startWriters(t, clientDSN, 3)
		time.Sleep(time.Second)
		r.step.SetHook(func(stage string) error {
			if stage == "frozen" {
				bouncer.Kill(t)
				bouncer.Start(t)
				time.Sleep(300 * time.Millisecond) // clients reconnect and write to blue
			}
			return nil
		})
		defer r.step.SetHook(nil)
		err := cutoverError(t, r.engineApply(t, true))
		if err == nil || !strings.Contains(err.Error(), "cutover aborted") || !strings.Contains(err.Error(), "no longer holds database app paused") {
			t.Fatalf("cutover with PgBouncer restarted inside the freeze: %v, want an abort saying the pause was lost\nlog:\n%s", err, r.logs)
		}
		t.Logf("abort: %v", err)
		aborted(t, w, "PgBouncer restarted inside the freeze")
	})

	t.Run("a transaction left open on blue bounds the freeze by pause_timeout", func(t *testing.T) {
		w := startWriters(t, clientDSN, 3)
		cfg, err := pgx.ParseConfig(clientDSN)
		if err != nil {
			t.Fatal(err)
		}
		long, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer long.Close(context.Background())
		tx, err := long.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var pid int
		if err := tx.QueryRow(ctx, "INSERT INTO ledger (client, note) VALUES (99, 'long') RETURNING pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		const pause = 4 * time.Second
		short := *r.spec
		short.Cutover.PauseTimeout = spec.Duration(pause)
		step := cutover.NewStep(&short, nil)
		began := time.Now()
		r.direct(t, func(env *engine.Env) {
			err = step.Apply(ctx, env)
		})
		took := time.Since(began)
		if err == nil || !strings.Contains(err.Error(), "cutover aborted") || !strings.Contains(err.Error(), fmt.Sprintf("pid %d ", pid)) ||
			!strings.Contains(err.Error(), "pg_terminate_backend") || !strings.Contains(err.Error(), "pause_timeout 4s reached") {
			t.Fatalf("cutover with a transaction open on blue (pid %d): %v, want an abort at pause_timeout naming the pid and how to end it\nlog:\n%s", pid, err, r.logs)
		}
		t.Logf("abort after %s: %v", took.Round(time.Millisecond), err)
		ms, _ := strconv.Atoi(r.output(cutover.CoPauseMS))
		if time.Duration(ms)*time.Millisecond > pause+time.Second {
			t.Fatalf("the freeze lasted %d ms, past pause_timeout %s", ms, pause)
		}
		// The transaction was never broken: it commits, and its row
		// reaches green.
		if err := tx.Commit(ctx); err != nil {
			t.Fatalf("the open transaction could not commit after the abort: %v", err)
		}
		aborted(t, w, "a transaction open on blue")
		if n := count(t, r.green, "SELECT count(*) FROM ledger WHERE note = 'long'"); n != 1 {
			t.Fatalf("green holds %d rows of the long transaction, want 1", n)
		}
	})

	t.Run("green refusing connections at the switch", func(t *testing.T) {
		w := startWriters(t, clientDSN, 3)
		time.Sleep(time.Second)
		r.step.SetHook(func(stage string) error {
			if stage == "before-switch" {
				r.green.Stop(t)
			}
			return nil
		})
		defer r.step.SetHook(nil)
		err := cutoverError(t, r.engineApply(t, true))
		if err == nil || !strings.Contains(err.Error(), "cutover aborted") || !strings.Contains(err.Error(), "traffic is on blue") ||
			!strings.Contains(err.Error(), `ALTER SUBSCRIPTION "pgshift_shop" ENABLE`) {
			t.Fatalf("cutover with green stopped at the switch: %v, want an abort to blue saying how to re-enable the forward subscription\nlog:\n%s", err, r.logs)
		}
		t.Logf("abort: %v", err)
		r.green.Start(t)
		// What the abort says to do, by hand here (the next apply
		// --approve-cutover does it too, then cuts over).
		r.green.Exec(t, "app", `ALTER SUBSCRIPTION "pgshift_shop" ENABLE`)
		aborted(t, w, "green stopped at the switch")
	})

	t.Run("a clean cutover after the faults", func(t *testing.T) {
		w := startWriters(t, clientDSN, 3)
		time.Sleep(time.Second)
		if err := cutoverError(t, r.engineApply(t, true)); err != nil {
			t.Fatalf("cutover after the faults: %v\nlog:\n%s", err, r.logs)
		}
		time.Sleep(time.Second)
		w.halt()
		if side := currentSide(t, r.spec); side != switcher.Green {
			t.Fatalf("traffic on %s after the cutover", side)
		}
		if bouncer.Paused(t, "app") {
			t.Fatal("PgBouncer left paused after the cutover")
		}
		w.requireAcked(t, r.green, before, "green after the cutover")
		waitCount(t, r.blue, "SELECT count(*) FROM ledger", count(t, r.green, "SELECT count(*) FROM ledger"), "blue through reverse replication")
		requireRowsEqual(t, r, "after the cutover")
		requireLive(t, r, cutover.LiveGreen, "after the cutover")
	})
}

// TestCutoverFaultsHAProxy: HAProxy's runtime socket gone when the switch
// begins (the switch cannot be reached, traffic did not move): the cutover
// aborts back to blue and unfreezes it, rather than leave blue read-only
// for want of a switch back it does not need. Then a run killed inside its
// switch with both servers left in service: the next apply finishes
// forward, and green's writes are kept.
func TestCutoverFaultsHAProxy(t *testing.T) {
	requireIntegration(t)
	r, proxy := newHAProxyRig(t, pgtest.HAProxyOptions{}, nil)
	w := startWriters(t, proxy.DSN("app"), 3)
	time.Sleep(time.Second)
	gone := proxy.Socket + ".gone"
	r.step.SetHook(func(stage string) error {
		if stage == "before-switch" {
			if err := os.Rename(proxy.Socket, gone); err != nil {
				t.Error(err)
			}
		}
		return nil
	})
	err := cutoverError(t, r.engineApply(t, true))
	r.step.SetHook(nil)
	if _, serr := os.Stat(gone); serr == nil {
		if err := os.Rename(gone, proxy.Socket); err != nil {
			t.Fatal(err)
		}
	}
	if err == nil || !strings.Contains(err.Error(), "cutover aborted") || !strings.Contains(err.Error(), "traffic did not move") ||
		!strings.Contains(err.Error(), "cutover.switch.haproxy.socket") {
		t.Fatalf("cutover with HAProxy's socket gone: %v, want an abort saying traffic did not move and naming the socket setting\nlog:\n%s", err, r.logs)
	}
	t.Logf("abort: %v", err)
	requireUnfrozen(t, r.blue, "blue after the abort")
	if side := currentSide(t, r.spec); side != switcher.Blue {
		t.Fatalf("HAProxy sends traffic to %s after the abort", side)
	}
	if r.output(cutover.CoPhase) != cutover.PhaseAborted {
		t.Fatalf("phase %q after the abort", r.output(cutover.CoPhase))
	}
	time.Sleep(time.Second)
	w.halt()
	t.Logf("clients: %s", w.summary())
	w.requireAcked(t, r.blue, 0, "blue after the abort")
	waitCount(t, r.green, "SELECT count(*) FROM ledger", count(t, r.blue, "SELECT count(*) FROM ledger"), "green catching up")
	requireRowsEqual(t, r, "after the abort")
	requireLive(t, r, cutover.LiveBlue, "after the abort")
	if text := r.report(t); !strings.Contains(text, "last cutover aborted") || !strings.Contains(text, "traffic did not move") || !strings.Contains(text, "apply --approve-cutover again") {
		t.Fatalf("status after the abort:\n%s", text)
	}

	// A run killed inside its switch, and HAProxy left with both servers
	// in service (as when the socket went between the switch's commands):
	// clients reaching green write there. The next apply cannot tell where
	// traffic goes; it must finish forward (blue was drained before the
	// switch began), since going back would lose green's writes.
	before := count(t, r.blue, "SELECT count(*) FROM ledger WHERE note = 'go'")
	w = startWriters(t, proxy.DSN("app"), 3)
	time.Sleep(time.Second)
	r.killedRun(t, "after-switch", false)
	if out := proxy.Command(t, "set server pg/blue state ready"); strings.TrimSpace(out) != "" {
		t.Fatalf("set server pg/blue state ready: %s", out)
	}
	time.Sleep(time.Second) // new connections land on both; green takes writes
	if err := cutoverError(t, r.engineApply(t, true)); err != nil {
		t.Fatalf("apply after a run killed inside its switch, both servers in service: %v\nlog:\n%s", err, r.logs)
	}
	time.Sleep(time.Second)
	w.halt()
	t.Logf("finished forward: clients %s", w.summary())
	requireFinishedOnGreen(t, r, w, before, "finishing the interrupted switch")
	if text := r.report(t); !strings.Contains(text, "cutover done") {
		t.Fatalf("status after finishing the interrupted switch:\n%s", text)
	}

	// HAProxy's socket lost between the switch's commands within one run:
	// green is already in service and takes writes, so the run must finish
	// forward once the socket is back, not go back to blue (which would
	// strand green's writes).
	r.session(t, "rollback", func(env *engine.Env, store *engine.StateStore) {
		if _, err := engine.Rollback(testCtx(t), r.graph, env, store, engine.RollbackOptions{Step: stepid.Cutover}); err != nil {
			t.Fatal(err)
		}
	})
	if side := currentSide(t, r.spec); side != switcher.Blue {
		t.Fatalf("HAProxy sends traffic to %s after rollback --step cutover", side)
	}
	before = count(t, r.blue, "SELECT count(*) FROM ledger WHERE note = 'go'")
	w = startWriters(t, proxy.DSN("app"), 3)
	time.Sleep(time.Second)
	r.step.SetDriver(func(sp *spec.Spec) (switcher.Driver, error) {
		d, err := cutover.NewSwitchDriver(sp)
		return &midSwitchFault{Driver: d, t: t, proxy: proxy, fault: func(context.Context, *midSwitchFault) error {
			if err := os.Rename(proxy.Socket, gone); err != nil {
				return err
			}
			time.AfterFunc(2*time.Second, func() { _ = os.Rename(gone, proxy.Socket) })
			return nil
		}}, err
	})
	err = cutoverError(t, r.engineApply(t, true))
	r.step.SetDriver(nil)
	if err != nil {
		t.Fatalf("cutover with HAProxy's socket lost between the switch's commands: %v\nlog:\n%s", err, r.logs)
	}
	if !strings.Contains(r.logs.String(), "finishing it forward") {
		t.Fatalf("the run did not say it finished the partial switch forward:\n%s", r.logs)
	}
	time.Sleep(time.Second)
	w.halt()
	t.Logf("partial switch finished forward: clients %s", w.summary())
	requireFinishedOnGreen(t, r, w, before, "finishing the partial switch")
}

// TestCutoverHAProxyGreenDown: green stops answering at the switch and
// HAProxy's health check marks it down. Whether the switch then fails
// partway (green put in service, the socket lost before blue went to
// maintenance) or completes, green served no client, so the cutover aborts
// back to blue (blue unfrozen and serving again) instead of finishing
// forward into an outage.
func TestCutoverHAProxyGreenDown(t *testing.T) {
	requireIntegration(t)
	r, proxy := newHAProxyRig(t, pgtest.HAProxyOptions{HealthCheck: true}, func(r *cutoverRig) {
		r.spec.Cutover.PauseTimeout = spec.Duration(3 * time.Second)
	})
	for _, partway := range []bool{true, false} {
		name := map[bool]string{true: "the switch fails partway", false: "the switch completes"}[partway]
		t.Run(name, func(t *testing.T) {
			w := startWriters(t, proxy.DSN("app"), 3)
			time.Sleep(time.Second)
			r.step.SetHook(func(stage string) error {
				if stage == "before-switch" {
					r.green.Stop(t)
				}
				return nil
			})
			if partway {
				r.step.SetDriver(func(sp *spec.Spec) (switcher.Driver, error) {
					d, err := cutover.NewSwitchDriver(sp)
					return &midSwitchFault{Driver: d, t: t, proxy: proxy, fault: waitGreenDown}, err
				})
			}
			err := cutoverError(t, r.engineApply(t, true))
			r.step.SetHook(nil)
			r.step.SetDriver(nil)
			r.green.Start(t)
			if err == nil || !strings.Contains(err.Error(), "cutover aborted") {
				t.Fatalf("cutover with green down in HAProxy's health check: %v, want an abort\nlog:\n%s", err, r.logs)
			}
			if strings.Contains(r.logs.String(), "finishing it forward") {
				t.Fatalf("the run finished forward into a green HAProxy found down:\n%s", r.logs)
			}
			t.Logf("abort: %v", err)
			requireUnfrozen(t, r.blue, "blue after the abort")
			if side := currentSide(t, r.spec); side != switcher.Blue {
				t.Fatalf("HAProxy sends traffic to %s after the abort", side)
			}
			before := count(t, r.blue, "SELECT count(*) FROM ledger WHERE note = 'go'")
			time.Sleep(time.Second) // clients write on blue again
			w.halt()
			t.Logf("clients: %s", w.summary())
			if after := count(t, r.blue, "SELECT count(*) FROM ledger WHERE note = 'go'"); after <= before {
				t.Fatalf("no client wrote on blue after the abort (%d rows before, %d after)", before, after)
			}
			// The abort could not reach green to enable the forward
			// subscription again: pgshift apply does it once green answers
			// (target.subscription converges; the rig's pipeline steps do
			// not), here by hand; green catches up.
			r.green.Exec(t, "app", "ALTER SUBSCRIPTION pgshift_shop ENABLE")
			waitCount(t, r.green, "SELECT count(*) FROM ledger", count(t, r.blue, "SELECT count(*) FROM ledger"), "green catching up")
			requireRowsEqual(t, r, "after the abort")
		})
	}
}

// midSwitchFault is the HAProxy driver whose first switch to green gets
// its first command through (green in service: both servers take
// traffic), then runs fault, then fails as the real driver does when its
// second command cannot reach the runtime socket (the first got through,
// so this is no ErrNotSwitched).
type midSwitchFault struct {
	switcher.Driver
	t     *testing.T
	proxy *pgtest.HAProxy
	fault func(ctx context.Context, d *midSwitchFault) error
	broke bool
}

// Serving is the real driver's (the wrapper must not hide it).
func (d *midSwitchFault) Serving(ctx context.Context, side switcher.Side) (bool, error) {
	return d.Driver.(switcher.ServingReporter).Serving(ctx, side)
}

func (d *midSwitchFault) Switch(ctx context.Context, to switcher.Side) error {
	if d.broke || to != switcher.Green {
		return d.Driver.Switch(ctx, to)
	}
	d.broke = true
	if out := d.proxy.Command(d.t, "set server pg/green state ready"); strings.TrimSpace(out) != "" {
		return fmt.Errorf("set server pg/green state ready: %s", out)
	}
	if err := d.fault(ctx, d); err != nil {
		return err
	}
	return fmt.Errorf("haproxy runtime API %s: set server pg/blue state maint: connect: no such file or directory", d.proxy.Socket)
}

// waitGreenDown waits until HAProxy's health check has found the stopped
// green down.
func waitGreenDown(ctx context.Context, d *midSwitchFault) error {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if serving, err := d.Serving(ctx, switcher.Green); err == nil && !serving {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("HAProxy did not mark the stopped green down within 10 s")
		}
	}
}

// requireFinishedOnGreen asserts a cutover finished forward: traffic on
// green, blue unfrozen, every write acknowledged since before on green,
// blue caught up through reverse replication, rows equal, green live.
func requireFinishedOnGreen(t *testing.T, r *cutoverRig, w *appWriters, before int, what string) {
	t.Helper()
	if side := currentSide(t, r.spec); side != switcher.Green {
		t.Fatalf("HAProxy sends traffic to %s after %s", side, what)
	}
	requireUnfrozen(t, r.blue, "blue after "+what)
	w.requireAcked(t, r.green, before, "green after "+what)
	waitCount(t, r.blue, "SELECT count(*) FROM ledger", count(t, r.green, "SELECT count(*) FROM ledger"), "blue through reverse replication")
	requireRowsEqual(t, r, "after "+what)
	requireLive(t, r, cutover.LiveGreen, "after "+what)
}
