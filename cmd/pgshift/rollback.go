package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newRollbackCommand) }

// rollbackArgs are the parsed flags of `pgshift rollback`.
type rollbackArgs struct {
	spec             specFlags
	fleet            fleetFlags
	log              logFlags
	metricsListen    string
	state            string
	yes              bool
	parallel         int
	acceptSpecChange bool
	lockTimeout      time.Duration
	step             string // only this step and the steps that need it
}

func newRollbackCommand() *cobra.Command {
	var a rollbackArgs
	cmd := &cobra.Command{
		Use:   "rollback -f spec.yaml",
		Short: "Undo the applied steps, in reverse dependency order",
		Long: `rollback undoes every step that ran (done, failed or interrupted), each one
before the steps it needs, checkpointed like apply: a killed rollback resumes
with the same command. It lists what it will undo and asks first, unless
--yes is given. When a step's rollback fails, the steps it needs are kept.

--step ID undoes only that step and the steps that need it. After a
cutover, --step cutover moves the application back to blue and keeps the
replication: green follows blue again, and a later
apply --approve-cutover cuts over again without copying anything.

Exit status: 0 rolled back (or nothing to undo), 1 a rollback failed, was
interrupted or cancelled, or steps that ran are no longer in the spec;
2 usage error. With --inventory (and --yes), every database, in waves
(docs/fleets.md; exit 3: a retry may get past every failure).`,
		Args: specNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fleet, err := dispatchFleet(cmd, "rollback", &a.spec, &a.fleet, nil); fleet {
				return err
			}
			return runRollback(cmd, &a)
		},
	}
	a.spec.register(cmd)
	a.fleet.register(cmd, true)
	a.log.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&a.metricsListen, flagMetricsListen, "", "serve Prometheus metrics at http://ADDR/metrics during the run (default: the spec's metrics.listen)")
	fl.StringVar(&a.state, "state", "", "state file (default <name>.pgshift-state.json beside the spec)")
	fl.BoolVar(&a.yes, "yes", false, "roll back without asking")
	fl.BoolVar(&a.yes, "auto-approve", false, "same as --yes")
	fl.IntVar(&a.parallel, "parallel", 4, "how many independent steps roll back at once")
	fl.BoolVar(&a.acceptSpecChange, "accept-spec-change", false, "roll back with a spec that changed after steps ran under it")
	fl.DurationVar(&a.lockTimeout, "lock-timeout", 0, "wait this long for another run's lock on the state")
	fl.StringVar(&a.step, "step", "", "undo only this step and the steps that need it (--step cutover: back to blue, replication kept)")
	return cmd
}

func runRollback(cmd *cobra.Command, a *rollbackArgs) error {
	spec, g, log, err := loadRun(cmd, &a.spec, &a.log)
	if err != nil {
		return err
	}
	stdout := cmd.OutOrStdout()
	statePath := statePathOf(a.state, spec)
	if exists, err := engine.StateExists(statePath); err == nil && !exists {
		fmt.Fprintf(stdout, "No changes. No state at %s: nothing was applied, so nothing to roll back.\n", statePath)
		return nil
	}
	store, err := openState(statePath, spec, g, engine.StateOptions{
		Operation: "rollback", LockTimeout: a.lockTimeout, AcceptSpecChange: a.acceptSpecChange,
	})
	if err != nil {
		return err
	}
	defer store.Close()

	snap := store.Snapshot()
	targets, orphans, err := engine.RollbackScope(g, snap, a.step)
	if err != nil {
		return &usageError{err}
	}
	fmt.Fprintf(stdout, "pgshift rollback: %s   state %s\n\n", spec.Name, statePath)
	if len(targets) == 0 && len(orphans) == 0 {
		if a.step != "" {
			fmt.Fprintf(stdout, "No changes. Neither %s nor a step that needs it has run (or all were rolled back): nothing to undo.\n", a.step)
			return nil
		}
		fmt.Fprintln(stdout, "No changes. No step has run (or all were rolled back): nothing to undo.")
		return nil
	}
	printRollbackPreview(stdout, g, snap, targets, orphans)
	fmt.Fprintf(stdout, "\nRollback: %d to undo, in this order.\n", len(targets))
	if a.step == "" && len(targets) > 1 && slices.Contains(targets, stepid.Cutover) {
		fmt.Fprintf(stdout, "This undoes the replication too: cutting over again would copy everything again. To go back to blue and keep it, run instead:\n  %s\n",
			commandLine("rollback", &a.spec, append(stateFlag(a.state), "--step", stepid.Cutover)...))
	}
	if !a.yes {
		ok, err := confirm(cmd.InOrStdin(), stdout, fmt.Sprintf("Roll back these %s?", words.Count(len(targets), "step")))
		if err != nil {
			return err
		}
		if !ok {
			return &exitCodeError{code: exitError, err: errors.New("rollback cancelled: nothing was undone (answer yes, or pass --yes to skip the question)")}
		}
	}

	ctx, stop := interruptContext(cmd)
	defer stop()
	env := engine.NewEnv(spec, log)
	defer env.Close()
	stopMetrics, err := serveMetrics(ctx, env, a.metricsListen, spec, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	res, err := engine.Rollback(ctx, g, env, store, engine.RollbackOptions{Parallelism: a.parallel, Step: a.step})
	if err != nil {
		return &exitCodeError{code: exitError, err: fmt.Errorf("rollback stopped: %w", err)}
	}
	again := commandLine("rollback", &a.spec, a.againFlags()...)
	reapply := commandLine("apply", &a.spec, applyFlagsFor(g, a.step, a.state)...)
	next := ""
	switch {
	case !res.Complete():
		next = "rollback incomplete: fix the cause, then run " + again
	case a.step != "":
		next = a.step + " rolled back, the steps it needs kept: apply it again with " + reapply
	}
	if err := store.Update(func(st *engine.State) {
		st.Next = next
		// Everything is undone: a cleanup before it no longer stands
		// between this state and a fresh apply.
		if res.Complete() && ctx.Err() == nil && a.step == "" {
			st.CleanedUp = nil
		}
	}); err != nil {
		return &exitCodeError{code: exitError, err: err}
	}
	if ctx.Err() != nil {
		fmt.Fprintf(stdout, "\nRollback interrupted by a signal (%d rolled back). State saved in %s; a step cut short is rolled back again on resume.\nResume with:\n  %s\n",
			len(res.RolledBack), statePath, again)
		return &exitCodeError{code: exitError, err: errors.New("rollback interrupted")}
	}
	if len(res.Failed) > 0 || len(res.NotStarted) > 0 || len(res.Interrupted) > 0 {
		fmt.Fprintf(stdout, "\nRollback incomplete: %d rolled back.\n\n", len(res.RolledBack))
		for _, f := range res.Failed {
			fmt.Fprintf(stdout, "  ✗ %s: rollback failed: %s\n", f.ID, f.Err)
		}
		for _, b := range res.Blocked {
			fmt.Fprintf(stdout, "  ! %s: %s\n", b.ID, b.Err)
		}
		if len(res.NotStarted) > 0 {
			fmt.Fprintf(stdout, "  ! interrupted before: %s\n", strings.Join(res.NotStarted, ", "))
		}
		fmt.Fprintf(stdout, "\nState saved in %s. Fix the cause, then run again:\n  %s\n", statePath, again)
		return &exitCodeError{code: exitError, err: stepCauses(fmt.Sprintf("rollback failed: %s", words.Count(len(res.Failed)+len(res.NotStarted), "step")), res.Failed)}
	}
	fmt.Fprintf(stdout, "\nRollback complete: %d rolled back. State saved in %s.\n", len(res.RolledBack), statePath)
	if a.step != "" {
		fmt.Fprintf(stdout, "The steps %s needs are kept. Apply it again with:\n  %s\n", a.step, reapply)
	}
	if len(orphans) > 0 {
		return &exitCodeError{code: exitError, err: fmt.Errorf("%s ran but are no longer in the spec, so pgshift cannot undo them: %s; restore them in the spec and run rollback again",
			words.Count(len(orphans), "step"), strings.Join(orphans, ", "))}
	}
	return nil
}

// againFlags repeat --state and --step for the command that runs the same
// rollback again.
func (a *rollbackArgs) againFlags() []string {
	flags := stateFlag(a.state)
	if a.step != "" {
		flags = append(flags, "--step", shellQuote(a.step))
	}
	return flags
}

// applyFlagsFor are the flags that apply step again: --state, and its
// approval when it is gated.
func applyFlagsFor(g *engine.Graph, step, state string) []string {
	flags := stateFlag(state)
	s, ok := g.Step(step)
	if gs, gated := s.(engine.Gated); !ok || !gated || gs.Gate() == "" {
		return flags
	}
	if step == stepid.Cutover {
		return append(flags, "--approve-cutover")
	}
	return append(flags, "--approve", shellQuote(step))
}

func printRollbackPreview(w io.Writer, g *engine.Graph, st *engine.State, targets, orphans []string) {
	width := 0
	for _, id := range append(append([]string{}, targets...), orphans...) {
		width = max(width, len(id))
	}
	for _, id := range targets {
		s, _ := g.Step(id)
		what := "undo it"
		if d, ok := s.(engine.RollbackDescriber); ok {
			what = d.DescribeRollback()
		}
		fmt.Fprintf(w, "  - %-*s  %s: %s\n", width, id, st.Step(id).Status, what)
	}
	for _, id := range orphans {
		fmt.Fprintf(w, "  ! %-*s  %s, but no longer in the spec: cannot be undone by pgshift\n", width, id, st.Step(id).Status)
	}
}
