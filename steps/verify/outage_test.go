package verify_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps"
	"github.com/pgshift/pgshift/steps/verify"
)

// TestVerifyRidesOutRestarts restarts blue (immediate: every session cut,
// crash recovery) and green (fast) in the middle of a verification: the
// tables the restart cut are compared again once the server is back, the
// finished ones are kept, and the report covers every table with the rows
// of a run without a restart; a real difference planted on green is still
// found across a restart; the verify step's preconditions and the step,
// started while green is down, wait for it and pass.
func TestVerifyRidesOutRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	p := startPair(t, 13, 17, 2)
	clean := p.verify(t, verify.ModeChecksum)
	if !clean.OK() {
		t.Fatalf("setup: verify without a restart found differences:\n%s", clean.Error())
	}

	// run verifies while restart restarts a server once the largest
	// table is done; it returns the report, the errors Ride was given and
	// the log. The Progress callback only signals, and holds the
	// verification (the first pass waits on its lock) until the test
	// goroutine has restarted the server: restart may fail the test, which
	// only the test goroutine may do.
	run := func(t *testing.T, restart func(testing.TB)) (*verify.Report, []error, string) {
		t.Helper()
		logs := &pgtest.LogBuffer{}
		var mu sync.Mutex
		var rode []error
		reached, resume := make(chan struct{}), make(chan struct{})
		var once sync.Once
		var lastProgress verify.Progress // Progress is called from one goroutine at a time
		progressWent := ""
		type result struct {
			r   *verify.Report
			err error
		}
		res := make(chan result, 1)
		tables := p.tables(t)
		go func() {
			r, err := verify.Run(context.Background(), p.connect(p.blue), p.connect(p.green), tables, verify.Options{
				Mode: verify.ModeChecksum, Workers: 2, ChunkBytes: 64 << 10, Subscription: sub,
				Log: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}),
				Progress: func(pr verify.Progress) {
					// The gauges keep the whole verification's size across
					// the restart (only the cut tables' part is redone).
					if lastProgress.BytesTotal != 0 && pr.BytesTotal != lastProgress.BytesTotal {
						progressWent = fmt.Sprintf("bytes %d of %d after %d of %d", pr.Bytes, pr.BytesTotal, lastProgress.Bytes, lastProgress.BytesTotal)
					}
					lastProgress = pr
					if pr.SegmentsDone >= pr.Segments-20 { // past pgbench_accounts, the largest
						once.Do(func() {
							close(reached)
							<-resume
						})
					}
				},
				Ride: func(ctx context.Context, err error) error {
					if err == nil {
						return nil
					}
					mu.Lock()
					rode = append(rode, err)
					n := len(rode)
					mu.Unlock()
					if !pg.IsTransient(err) || n > 20 {
						return err
					}
					time.Sleep(500 * time.Millisecond)
					return nil
				},
			})
			res <- result{r, err}
		}()
		// The verification ends before the test does, whatever happens.
		t.Cleanup(func() { once.Do(func() {}); <-res; res <- result{} })
		var out result
		func() {
			defer close(resume) // also when restart fails the test
			select {
			case <-reached:
				restart(t)
			case out = <-res:
				res <- out // for the cleanup
				t.Fatalf("setup: the server was not restarted during the verification (it returned %v)", out.err)
			}
		}()
		out = <-res
		res <- out // for the cleanup
		if out.err != nil {
			t.Fatalf("verify across a restart: %v\nlog:\n%s", out.err, logs)
		}
		t.Logf("across the restart: %s", grepLine(logs.String(), "comparing again"))
		if progressWent != "" {
			t.Errorf("verify's total changed across the restart: %s", progressWent)
		}
		mu.Lock()
		defer mu.Unlock()
		return out.r, rode, logs.String()
	}
	check := func(t *testing.T, r *verify.Report, rode []error, logs string) {
		t.Helper()
		if len(rode) == 0 {
			t.Errorf("the restart cut no query of the verification (Ride never called)")
		}
		if !strings.Contains(logs, "comparing again the tables it had not finished") {
			t.Errorf("the log does not say which tables are compared again:\n%s", logs)
		}
		if strings.Contains(logs, "kept=0") {
			t.Errorf("every table was compared again, the finished ones too:\n%s", logs)
		}
		if len(r.Tables) != len(clean.Tables) || r.Rows() != clean.Rows() {
			t.Errorf("across a restart: %d tables, %d rows; without one: %d tables, %d rows", len(r.Tables), r.Rows(), len(clean.Tables), clean.Rows())
		}
		for i := range r.Tables {
			if i < len(clean.Tables) && r.Tables[i].Table != clean.Tables[i].Table {
				t.Errorf("table %d: %s across a restart, %s without", i, r.Tables[i].Table, clean.Tables[i].Table)
			}
		}
	}

	t.Run("blue restarted (immediate)", func(t *testing.T) {
		r, rode, logs := run(t, p.blue.RestartImmediate)
		check(t, r, rode, logs)
		if !r.OK() {
			t.Errorf("equal data across a restart of blue reported differences:\n%s", r.Error())
		}
	})

	t.Run("a real difference is still found across a green restart", func(t *testing.T) {
		p.green.Exec(t, db, "UPDATE pgbench_branches SET filler = 'planted on green' WHERE bid = 1")
		defer p.green.Exec(t, db, "UPDATE pgbench_branches SET filler = NULL WHERE bid = 1")
		r, rode, logs := run(t, p.green.Restart)
		check(t, r, rode, logs)
		if got := differingTables(r); len(got) != 1 || got[0] != "public.pgbench_branches" {
			t.Errorf("planted difference across a restart of green: differing tables %v, want [public.pgbench_branches]\n%s", got, r.Error())
		}
	})

	t.Run("the verify step waits for green to come back", func(t *testing.T) {
		s := &spec.Spec{Name: "verify-outage"}
		s.Source.DSN = p.blue.DSN(db)
		s.Target.DSN = p.green.DSN(db)
		s.Replication.Subscription = sub
		s.SetDefaults()
		logs := &pgtest.LogBuffer{}
		env := engine.NewEnv(s, hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}))
		t.Cleanup(env.Close)
		var step engine.Step
		for _, st := range steps.For(s) {
			if st.ID() == "verify" {
				step = st
			}
		}
		env = env.ForStep("verify")
		// outage runs fn with green stopped until fn has logged the
		// outage, then starts green and returns fn's error.
		outage := func(what string, fn func() error) error {
			t.Helper()
			mark := len(logs.String())
			p.green.Stop(t)
			done := make(chan error, 1)
			go func() { done <- fn() }()
			for deadline := time.Now().Add(time.Minute); !strings.Contains(logs.String()[mark:], "green unreachable ("); time.Sleep(50 * time.Millisecond) {
				select {
				case err := <-done:
					p.green.Start(t)
					t.Fatalf("%s with green down returned (%v) without waiting for it:\n%s", what, err, logs)
				default:
				}
				if time.Now().After(deadline) {
					p.green.Start(t)
					t.Fatalf("%s did not log green's outage within a minute:\n%s", what, logs)
				}
			}
			time.Sleep(2 * time.Second)
			p.green.Start(t)
			select {
			case err := <-done:
				return err
			case <-time.After(5 * time.Minute):
				return errors.New("still running 5 minutes after green came back")
			}
		}
		// Pools open before the outage, as in a run: their connections die
		// with green.
		if _, _, err := env.Pools(context.Background()); err != nil {
			t.Fatal(err)
		}
		var pre []plans.Precondition
		err := outage("the preconditions", func() (err error) {
			pre, err = step.Check(context.Background(), env)
			return err
		})
		if err != nil {
			t.Fatalf("verify's preconditions across green's outage: %v\nlog:\n%s", err, logs)
		}
		for _, c := range pre {
			if !c.OK {
				t.Errorf("precondition %q failed across green's outage: %s", c.Name, c.Detail)
			}
		}
		if err := outage("verify", func() error { return step.Apply(context.Background(), env) }); err != nil {
			t.Fatalf("verify step across green's outage: %v\nlog:\n%s", err, logs)
		}
		if res, _ := env.Output("verify", "result"); res != "passed" {
			t.Errorf("recorded result %q, want passed", res)
		}
		for _, w := range []string{"waiting up to 5m0s for it to come back", "connection back, going on", "verify passed"} {
			if !strings.Contains(logs.String(), w) {
				t.Errorf("the verify step's log across green's outage lacks %q:\n%s", w, logs)
			}
		}
	})
}

func grepLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
