package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

// TestCatchupRidesOutRestarts: replication.catchup started while blue is
// stopped, or while green is down after a crash (kill -9 of its postmaster,
// crash recovery on start), waits for the server to come back, logs the
// outage once and the reconnection, and returns with green holding blue's
// rows; a server that stays down past replication.outage_timeout fails the
// step naming the side, the bound and the connection error; Ctrl-C stops
// the wait at once.
func TestCatchupRidesOutRestarts(t *testing.T) {
	requireIntegration(t)
	p := newReplPair(t, 13, 17)
	p.apply(t, p.steps()...)
	tables := []string{"accounts", "events", "notes"}
	p.waitSame(t, tables...)

	run := func(ctx context.Context) chan error {
		done := make(chan error, 1)
		go func() { done <- p.catchup.Apply(ctx, p.env.ForStep(stepid.Catchup)) }()
		return done
	}
	mark := 0
	logs := func() string { return p.logs.String()[mark:] }
	waitLog := func(t *testing.T, what string, done chan error) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !strings.Contains(logs(), what); time.Sleep(50 * time.Millisecond) {
			select {
			case err := <-done:
				t.Fatalf("catch-up returned (%v) before logging %q:\n%s", err, what, p.logs)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("catch-up did not log %q within a minute:\n%s", what, p.logs)
			}
		}
	}

	next := 100001
	for _, c := range []struct {
		side string
		down func()
		up   func()
	}{
		{"blue", func() { p.blue.Stop(t) }, func() { p.blue.Start(t) }},
		{"green", func() { p.green.Kill(t) }, func() { p.green.Start(t) }},
	} {
		mark = len(p.logs.String())
		c.down()
		done := run(testCtx(t))
		want := c.side + " unreachable ("
		waitLog(t, want, done)
		time.Sleep(2 * time.Second) // a few reconnection attempts
		c.up()
		p.blue.Exec(t, "app", fmt.Sprintf("INSERT INTO accounts SELECT g, 'after the outage', 0 FROM generate_series(%d, %d) g", next, next+499))
		next += 500
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("catch-up with %s down then back: %v\nlog:\n%s", c.side, err, p.logs)
			}
		case <-time.After(3 * time.Minute):
			t.Fatalf("catch-up did not return within 3 minutes of %s coming back:\n%s", c.side, p.logs)
		}
		got := logs()
		if n := strings.Count(got, want); n != 1 {
			t.Errorf("%s's outage logged %d times, want once:\n%s", c.side, n, got)
		}
		for _, w := range []string{"waiting up to 5m0s for it to come back", "connection back, going on", "green caught up"} {
			if !strings.Contains(got, w) {
				t.Errorf("catch-up's log across %s's outage lacks %q:\n%s", c.side, w, got)
			}
		}
		p.waitSame(t, tables...)
	}

	t.Run("down past the bound", func(t *testing.T) {
		p.spec.Replication.OutageTimeout = spec.Duration(3 * time.Second)
		defer func() { p.spec.Replication.OutageTimeout = 0 }()
		p.blue.Stop(t)
		defer p.blue.Start(t)
		start := time.Now()
		err := <-run(testCtx(t))
		took := time.Since(start)
		if err == nil {
			t.Fatal("catch-up with blue down past replication.outage_timeout succeeded")
		}
		for _, w := range []string{"blue unreachable for", "longer than replication.outage_timeout (3s)", "connection refused", "bring blue back, or raise replication.outage_timeout to wait longer, then apply again"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error with blue down past the bound lacks %q: %v", w, err)
			}
		}
		if took < 3*time.Second || took > 30*time.Second {
			t.Errorf("catch-up gave up after %s, want about replication.outage_timeout (3s)", took)
		}
	})

	t.Run("Ctrl-C stops the wait at once", func(t *testing.T) {
		p.green.Stop(t)
		defer p.green.Start(t)
		ctx, cancel := context.WithCancel(testCtx(t))
		mark = len(p.logs.String()) // before the run: it may log at once
		done := run(ctx)
		waitLog(t, "green unreachable (", done)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("catch-up cancelled while green is down: %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("catch-up went on waiting for green after its context was cancelled")
		}
	})
}
