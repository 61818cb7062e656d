package steps

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/pgshift/pgshift/steps/verify"
)

func init() {
	register(func(spec *spec.Spec) []engine.Step { return []engine.Step{&verifyStep{spec: spec}} })
}

// verifyStep compares every replicated table on blue and green (count or
// checksum mode, see package verify) while blue keeps taking writes. It
// changes nothing, so running it again just verifies again.
type verifyStep struct {
	spec *spec.Spec
	// progressEvery is the logging period of progress (tests may shorten it).
	progressEvery time.Duration
}

func (s *verifyStep) ID() string { return stepid.Verify }

// Rechecks: a verify of the tables as they were says nothing of those the
// selection gained since, nor of a schema reconciled since.
func (s *verifyStep) Rechecks()       {}
func (s *verifyStep) Needs() []string { return []string{stepid.Catchup} }

func (s *verifyStep) mode() verify.Mode {
	if s.spec.Verify.Mode == "" {
		return verify.ModeChecksum
	}
	return verify.Mode(s.spec.Verify.Mode)
}

func (s *verifyStep) workers() int {
	if s.spec.Verify.Workers <= 0 {
		return spec.DefaultVerifyWorkers
	}
	return s.spec.Verify.Workers
}

// Outputs recorded by Apply (never row data).
const (
	verifyOutMode       = "mode"
	verifyOutTables     = "tables"
	verifyOutRows       = "rows"
	verifyOutBytes      = "bytes"
	verifyOutMismatches = "mismatches"
	verifyOutDuration   = "duration"
	verifyOutRowsPerSec = "rows_per_sec"
	verifyOutMBPerSec   = "mb_per_sec"
)

func (s *verifyStep) Observe(ctx context.Context, env *engine.Env) (plans.Change, error) {
	tables, bytes, err := s.selected(ctx, env)
	if err != nil {
		return plans.Change{}, err
	}
	plan := fmt.Sprintf("compare %s (%s on blue) in %s mode with %s",
		words.Count(len(tables), "table"), verifySize(bytes), s.mode(), words.Count(s.workers(), "worker"))
	if res, ok := env.Output(stepid.Verify, stepid.VerifyResult); ok {
		last := s.lastRun(env)
		if res == "passed" {
			return plans.Change{Action: plans.ActionNone, Summary: "verified: " + last}, nil
		}
		return plans.Change{Action: plans.ActionCreate, Summary: plan + " (last run: " + last + ")"}, nil
	}
	return plans.Change{Action: plans.ActionCreate, Summary: plan}, nil
}

// lastRun describes the recorded outcome of the previous run.
func (s *verifyStep) lastRun(env *engine.Env) string {
	out := env.Outputs(stepid.Verify)
	verdict := "no differences"
	if out[stepid.VerifyResult] != "passed" {
		verdict = out[verifyOutMismatches] + " difference(s)"
	}
	return fmt.Sprintf("%s tables, %s rows, %s mode, %s (%s MB/s)",
		out[verifyOutTables], out[verifyOutRows], out[verifyOutMode], verdict, out[verifyOutMBPerSec])
}

// Fingerprint leaves out the table sizes, which move with every write.
func (s *verifyStep) Fingerprint(observed plans.Change) string {
	return fmt.Sprintf("%s %s %d", observed.Action, s.mode(), s.workers())
}

func (s *verifyStep) Describe() plans.Change {
	return plans.Change{Action: plans.ActionCreate,
		Summary: fmt.Sprintf("compare every replicated table on blue and green in %s mode with %s", s.mode(), words.Count(s.workers(), "worker"))}
}

func (s *verifyStep) DescribeRollback() string { return "nothing: verify only reads" }

// selected lists the replicated tables and their size on blue.
func (s *verifyStep) selected(ctx context.Context, env *engine.Env) ([]pg.Table, int64, error) {
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return nil, 0, pg.OnSide("blue", err)
	}
	tables, err := pg.SelectedTables(ctx, blue, s.spec.Tables.Include, s.spec.Tables.Exclude)
	if err != nil {
		return nil, 0, pg.OnSide("blue", fmt.Errorf("blue: %w", err))
	}
	var bytes int64
	for _, t := range tables {
		bytes += t.Bytes
	}
	return tables, bytes, nil
}

func (s *verifyStep) Check(ctx context.Context, env *engine.Env) ([]plans.Precondition, error) {
	// During apply a server restarting is waited for
	// (replication.outage_timeout), as Apply does; one that stays away fails
	// the precondition. A plan (env.Planning) does not wait: the connection
	// error fails the precondition at once.
	rider := newOutageRider(env, s.spec.Replication.Outage(), 0)
	for {
		pre, err := s.check(ctx, env)
		if err = rider.ride(ctx, err); err != nil {
			var conn *connectFailed
			if errors.As(err, &conn) {
				for i := range conn.pre {
					if !conn.pre[i].OK {
						conn.pre[i].Detail = err.Error() // past the bound, it says so
					}
				}
				return conn.pre, nil
			}
			return nil, err
		}
		if rider.since.IsZero() {
			return pre, nil
		}
	}
}

// connectFailed is a side check could not reach: the preconditions to show
// once the outage rider gives up waiting.
type connectFailed struct {
	pre []plans.Precondition
	err error
}

func (e *connectFailed) Error() string { return e.err.Error() }
func (e *connectFailed) Unwrap() error { return e.err }

// check is one attempt of Check. Errors carry their side (pg.OnSide).
func (s *verifyStep) check(ctx context.Context, env *engine.Env) ([]plans.Precondition, error) {
	var pre []plans.Precondition
	blue, berr := env.Source.Pool(ctx)
	pre = append(pre, verifyPrecondition("connect to blue", berr, env.Source.Redacted()))
	green, gerr := env.Target.Pool(ctx)
	pre = append(pre, verifyPrecondition("connect to green", gerr, env.Target.Redacted()))
	if berr != nil {
		return pre, &connectFailed{pre: pre, err: pg.OnSide("blue", berr)}
	}
	if gerr != nil {
		return pre, &connectFailed{pre: pre, err: pg.OnSide("green", gerr)}
	}
	if s.mode() == verify.ModeChecksum {
		v, err := pg.ServerVersionOf(ctx, blue)
		if err != nil {
			return nil, pg.OnSide("blue", fmt.Errorf("blue: %w", err))
		}
		pre = append(pre, plans.Precondition{Name: "blue supports checksum mode (PostgreSQL 11+)", OK: v.Major >= 11,
			Detail: "blue runs " + v.String() + "; on older servers set verify.mode: count"})
	}
	sub := s.spec.SubscriptionName()
	var enabled bool
	err := green.QueryRow(ctx, `SELECT s.subenabled FROM pg_catalog.pg_subscription s
		JOIN pg_catalog.pg_database d ON d.oid = s.subdbid
		WHERE s.subname = $1 AND d.datname = pg_catalog.current_database()`, sub).Scan(&enabled)
	if pg.IsTransient(err) {
		return nil, pg.OnSide("green", fmt.Errorf("green: read subscription %q: %w", sub, err))
	}
	found := err == nil
	pre = append(pre, plans.Precondition{Name: "subscription enabled on green", OK: found && enabled,
		Detail: fmt.Sprintf("%s: re-checks wait for green to apply blue's writes", sub)})
	return pre, nil
}

func verifyPrecondition(name string, err error, detail string) plans.Precondition {
	if err != nil {
		return plans.Precondition{Name: name, OK: false, Detail: err.Error()}
	}
	return plans.Precondition{Name: name, OK: true, Detail: detail}
}

func (s *verifyStep) Apply(ctx context.Context, env *engine.Env) error {
	// A restart of blue or green is ridden out (replication.outage_timeout):
	// the tables a lost connection cut are compared again once it is back.
	rider := newOutageRider(env, s.spec.Replication.Outage(), 0)
	var tables []pg.Table
	var bytes int64
	for {
		var err error
		tables, bytes, err = s.selected(ctx, env)
		if err = rider.ride(ctx, err); err != nil {
			return err
		}
		if rider.since.IsZero() {
			break
		}
	}
	vt := make([]verify.Table, len(tables))
	for i, t := range tables {
		vt[i] = verify.Table{Schema: t.Schema, Name: t.Name, Key: t.PrimaryKey}
	}
	env.Log.Info("verifying", "tables", len(vt), "bytes", bytes, "mode", s.mode(), "workers", s.workers())

	every := s.progressEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	gauges := newVerifyGauges(env.Metrics)
	var mu sync.Mutex
	lastLog := time.Now()
	report, err := verify.Run(ctx, env.Source.Connect, env.Target.Connect, vt, verify.Options{
		Mode:         s.mode(),
		Workers:      s.workers(),
		Subscription: s.spec.SubscriptionName(),
		Log:          env.Log,
		Ride:         rider.ride,
		Progress: func(p verify.Progress) {
			mu.Lock()
			defer mu.Unlock()
			gauges.progress(p.Rows, p.Bytes, p.BytesTotal)
			if time.Since(lastLog) < every && p.SegmentsDone < p.Segments {
				return
			}
			lastLog = time.Now()
			env.Log.Info("verify progress", "segments", fmt.Sprintf("%d/%d", p.SegmentsDone, p.Segments),
				"rows", p.Rows, "bytes", fmt.Sprintf("%s/%s", verifySize(p.Bytes), verifySize(p.BytesTotal)))
		},
	})
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	gauges.finished(len(report.Differences()))
	passed := report.OK()
	result := "passed"
	if !passed {
		result = "failed"
	}
	env.Record(stepid.VerifyResult, result)
	env.Record(verifyOutMode, string(report.Mode))
	env.Record(verifyOutTables, strconv.Itoa(len(report.Tables)))
	env.Record(verifyOutRows, strconv.FormatInt(report.Rows(), 10))
	env.Record(verifyOutBytes, strconv.FormatInt(report.Bytes(), 10))
	env.Record(verifyOutMismatches, strconv.Itoa(len(report.Differences())))
	env.Record(verifyOutDuration, report.Duration.Round(time.Millisecond).String())
	env.Record(verifyOutRowsPerSec, strconv.FormatFloat(report.RowsPerSecond(), 'f', 0, 64))
	env.Record(verifyOutMBPerSec, strconv.FormatFloat(report.MBPerSecond(), 'f', 1, 64))
	env.Log.Info("verify "+result, "summary", report.Summary())
	if !passed {
		return fmt.Errorf("%s", report.Error())
	}
	return nil
}

// Rollback has nothing to undo: verify only reads.
func (s *verifyStep) Rollback(ctx context.Context, env *engine.Env) error {
	env.Log.Info("verify changed nothing; nothing to roll back")
	return nil
}

// Report gives the last recorded outcome for `pgshift status`.
func (s *verifyStep) Report(ctx context.Context, env *engine.Env) ([]string, error) {
	if _, ok := env.Output(stepid.Verify, stepid.VerifyResult); !ok {
		return []string{"verify has not run yet"}, nil
	}
	out := env.Outputs(stepid.Verify)
	return []string{
		"last verify " + out[stepid.VerifyResult] + ": " + s.lastRun(env),
		"took " + out[verifyOutDuration] + ", " + out[verifyOutRowsPerSec] + " rows/s",
	}, nil
}

// verifySize renders bytes for summaries: "512 B", "3.2 MB", "1.4 GB".
func verifySize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0") + " " + units[i]
}
