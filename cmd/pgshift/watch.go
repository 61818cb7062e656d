package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/watch"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/pgshift/pgshift/steps/verify"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newWatchCommand) }

// watchArgs are the parsed flags of `pgshift watch`.
type watchArgs struct {
	spec   specFlags
	log    logFlags
	state  string
	listen string
}

func newWatchCommand() *cobra.Command {
	var a watchArgs
	cmd := &cobra.Command{
		Use:   "watch -f spec.yaml",
		Short: "Serve metrics and health of blue, green and their replication until stopped",
		Long: `watch runs in the foreground between apply and the cutover (days or weeks):
every watch.interval it reads blue, green and the state file, read-only,
and serves what it read at /metrics (Prometheus) and /healthz on
watch.listen (or --listen). It logs a warning naming the fix when the lag
passes watch.max_lag or a slot retains more WAL than watch.max_retained_wal,
once per crossing, and an info when it recovers. With watch.verify_every
set it runs a verify that often (read-only; the state file is not changed).

/healthz answers 200 when the last collection read both servers and no
threshold is crossed, 503 with the reason otherwise. SIGINT or SIGTERM stops
it. See docs/watch.md for every metric.

Exit status: 0 when stopped by a signal; 1 when the spec cannot be read or
the address cannot be bound; 2 usage error.`,
		Args: specNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runWatch(cmd, &a) },
	}
	a.spec.registerOne(cmd)
	a.log.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&a.state, "state", "", "state file (default <name>.pgshift-state.json beside the spec); read, never locked or written")
	fl.StringVar(&a.listen, "listen", "", "host:port serving /metrics and /healthz (default watch.listen, else metrics.listen, else "+spec.DefaultWatchListen+")")
	return cmd
}

func runWatch(cmd *cobra.Command, a *watchArgs) error {
	sp, err := a.spec.loadOne()
	if err != nil {
		return err
	}
	log, err := a.log.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ctx, stop := interruptContext(cmd)
	defer stop()

	blue := engine.NewDatabase("blue", sp.Source)
	green := engine.NewDatabase("green", sp.Target)
	defer blue.Close()
	defer green.Close()
	bluePool := func(ctx context.Context) (pg.Querier, error) { return blue.Pool(ctx) }
	greenPool := func(ctx context.Context) (pg.Querier, error) { return green.Pool(ctx) }

	statePath := statePathOf(a.state, sp)
	cutoverLag := pg.CatchupThreshold(sp.Cutover.MaxLagBytes)
	opts := watch.Options{
		Collector: &watch.Collector{
			Blue: bluePool, Green: greenPool,
			Slot:         sp.SlotName(),
			Subscription: sp.SubscriptionName(),
			CutoverLag:   cutoverLag,
			Drift:        schemaDrift(sp, bluePool, greenPool),
			State:        func() (*watch.StateReading, error) { return readWatchState(statePath, sp) },
		},
		Listen:   watchListen(a.listen, sp),
		Interval: sp.Watch.Interval.D(),
		Limits: watch.Limits{
			MaxLag:         int64(sp.Watch.MaxLag),
			MaxRetainedWAL: int64(sp.Watch.MaxRetainedWAL),
			CutoverLag:     cutoverLag,
		},
		VerifyEvery:     sp.Watch.VerifyEvery.D(),
		Verify:          watchVerify(sp, blue, green),
		Log:             log,
		StatusCommand:   commandLine("status", &a.spec, stateFlag(a.state)...),
		RollbackCommand: commandLine("rollback", &a.spec, stateFlag(a.state)...),
		Started:         watchStarted,
	}
	if err := watch.Run(ctx, opts); err != nil {
		return &exitCodeError{code: exitError, err: err}
	}
	return nil
}

// watchStarted is called with the address watch serves; tests replace it
// to learn the port.
var watchStarted func(addr string)

// watchListen is --listen, else watch.listen, else metrics.listen, else
// the default address.
func watchListen(flag string, sp *spec.Spec) string {
	for _, l := range []string{flag, sp.Watch.Listen, sp.Metrics.Listen} {
		if l != "" {
			return l
		}
	}
	return spec.DefaultWatchListen
}

// schemaDrift counts the differences between blue's and green's
// definitions of the selected tables.
func schemaDrift(sp *spec.Spec, blue, green watch.Querier) func(context.Context) (int, error) {
	return func(ctx context.Context) (int, error) {
		b, err := blue(ctx)
		if err != nil {
			return 0, err
		}
		g, err := green(ctx)
		if err != nil {
			return 0, err
		}
		tables, err := pg.SelectedTables(ctx, b, sp.Tables.Include, sp.Tables.Exclude)
		if err != nil {
			return 0, fmt.Errorf("blue: %w", err)
		}
		items, err := pg.CompareSchemas(ctx, b, g, tables)
		if err != nil {
			return 0, err
		}
		return len(items), nil
	}
}

// watchVerify is the periodic verify: the verify step's comparison (the
// package steps/verify, which only reads), run outside the state, so that
// the verify step's record stays that of apply.
func watchVerify(sp *spec.Spec, blue, green *engine.Database) func(context.Context) (watch.VerifyResult, error) {
	return func(ctx context.Context) (watch.VerifyResult, error) {
		pool, err := blue.Pool(ctx)
		if err != nil {
			return watch.VerifyResult{}, err
		}
		tables, err := pg.SelectedTables(ctx, pool, sp.Tables.Include, sp.Tables.Exclude)
		if err != nil {
			return watch.VerifyResult{}, fmt.Errorf("blue: %w", err)
		}
		vt := make([]verify.Table, len(tables))
		for i, t := range tables {
			vt[i] = verify.Table{Schema: t.Schema, Name: t.Name, Key: t.PrimaryKey}
		}
		report, err := verify.Run(ctx, blue.Connect, green.Connect, vt, verify.Options{
			Mode:         verify.Mode(sp.Verify.Mode),
			Workers:      sp.Verify.Workers,
			Subscription: sp.SubscriptionName(),
		})
		if err != nil {
			return watch.VerifyResult{}, err
		}
		return watch.VerifyResult{Passed: report.OK(), Summary: report.Summary()}, nil
	}
}

// readWatchState reads what watch exports from the state file; no file
// yet is no reading, not an error.
func readWatchState(path string, sp *spec.Spec) (*watch.StateReading, error) {
	st, err := engine.ReadState(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if st.Spec.Name != sp.Name {
		return nil, fmt.Errorf("%s belongs to spec %q, not %q: pass --state with this spec's state", engine.StateWhere(path), st.Spec.Name, sp.Name)
	}
	r := &watch.StateReading{}
	for _, s := range []engine.Status{engine.StatusPending, engine.StatusRunning, engine.StatusDone, engine.StatusFailed,
		engine.StatusUpstreamFailed, engine.StatusRollingBack, engine.StatusRolledBack, engine.StatusRollbackFailed} {
		r.Statuses = append(r.Statuses, string(s))
	}
	for _, c := range st.Steps {
		r.Steps = append(r.Steps, watch.StepStatus{ID: c.ID, Status: string(c.Status)})
	}
	if c := st.Step(stepid.Verify); c != nil && c.FinishedAt != nil && (c.Status == engine.StatusDone || c.Status == engine.StatusFailed) {
		r.VerifyFinished = *c.FinishedAt
		r.VerifyPassed = c.Outputs[stepid.VerifyResult] == "passed"
	}
	return r, nil
}
