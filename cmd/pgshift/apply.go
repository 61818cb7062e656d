package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/steps/cutover"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newApplyCommand) }

// applyArgs are the parsed flags of `pgshift apply`.
type applyArgs struct {
	spec             specFlags
	fleet            fleetFlags
	log              logFlags
	metricsListen    string
	state            string
	until            string
	approve          []string
	approveCutover   bool
	parallel         int
	acceptSpecChange bool
	lockTimeout      time.Duration
}

func newApplyCommand() *cobra.Command {
	var a applyArgs
	cmd := &cobra.Command{
		Use:   "apply (-f spec.yaml | PLANFILE)",
		Short: "Run the upgrade's steps, checkpointed, resumable",
		Long: `apply runs the steps of the spec in dependency order, independent steps in
parallel, and checkpoints every transition to the state file (default
<name>.pgshift-state.json beside the spec; --state to choose). Killed at any
instant, it resumes with the same command: steps already done are skipped,
a step left running is applied again (every step is idempotent). Ctrl-C
(or SIGTERM) stops it the same way, cleanly: nothing is marked failed.

A failed step stops the steps that need it; independent steps finish. The
state then says what failed, and the same command continues from there.

Steps that need approval (the cutover) are not run until approved: apply
stops before them with exit status 0 and prints the command to go on
(--approve-cutover).

Given a plan saved with "pgshift plan -out FILE", apply refuses it when the
spec or what blue and green hold has changed since.

Exit status: 0 when every step is done, or apply stopped as asked (before a
step awaiting approval, or after --until); 1 when a step failed, the run was
interrupted or could not start (locked state, stale plan); 2 usage error.

With --inventory, every database of the inventory, each as its own apply,
in waves (docs/fleets.md): exit 0 all succeeded, 1 one needs a person,
3 every failure is one a retry may get past.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return &usageError{fmt.Errorf("unexpected arguments %q: apply takes at most one saved plan file", args[1:])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if fleet, err := dispatchFleet(cmd, "apply", &a.spec, &a.fleet, args); fleet {
				return err
			}
			planFile := ""
			if len(args) == 1 {
				planFile = args[0]
			}
			return runApply(cmd, &a, planFile)
		},
	}
	a.spec.register(cmd)
	a.fleet.register(cmd, true)
	a.log.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&a.metricsListen, flagMetricsListen, "", "serve Prometheus metrics at http://ADDR/metrics during the run (default: the spec's metrics.listen)")
	fl.StringVar(&a.state, "state", "", "state file (default <name>.pgshift-state.json beside the spec)")
	fl.StringVar(&a.until, "until", "", "stop after this step (it and the steps it needs run)")
	fl.StringArrayVar(&a.approve, "approve", nil, "approve a gated step by ID (repeatable)")
	fl.BoolVar(&a.approveCutover, "approve-cutover", false, "approve the cutover (same as --approve cutover)")
	fl.IntVar(&a.parallel, "parallel", 4, "how many independent steps run at once")
	fl.BoolVar(&a.acceptSpecChange, "accept-spec-change", false, "go on with a spec that changed after steps ran under it, keeping those steps done")
	fl.DurationVar(&a.lockTimeout, "lock-timeout", 0, "wait this long for another run's lock on the state")
	return cmd
}

func runApply(cmd *cobra.Command, a *applyArgs, planFile string) error {
	var saved *plans.Plan
	if planFile != "" {
		p, err := plans.Load(planFile)
		if err != nil {
			return &exitCodeError{code: exitError, err: err}
		}
		saved = p
		if a.spec.file == "" {
			// The plan names the spec it was made from; variables given
			// here win over the plan's (the spec hash check catches a change).
			a.spec.file = p.SpecFile
			if a.spec.varsFile == "" {
				a.spec.varsFile = p.SpecVarsFile
			}
			given := map[string]bool{}
			for _, kv := range a.spec.vars {
				k, _, _ := strings.Cut(kv, "=")
				given[k] = true
			}
			for _, k := range slices.Sorted(maps.Keys(p.SpecVars)) {
				if !given[k] {
					a.spec.vars = append(a.spec.vars, k+"="+p.SpecVars[k])
				}
			}
		}
	}
	spec, g, log, err := loadRun(cmd, &a.spec, &a.log)
	if err != nil {
		return err
	}
	stdout := cmd.OutOrStdout()
	// Step IDs in flags are checked before anything is locked or connected.
	approve := map[string]bool{}
	for _, id := range a.approve {
		if _, ok := g.Step(id); !ok {
			return &usageError{fmt.Errorf("--approve %s: no such step; steps are %s", id, strings.Join(g.Order(), ", "))}
		}
		approve[id] = true
	}
	if a.approveCutover {
		approve[stepid.Cutover] = true
	}
	if _, ok := g.Step(a.until); a.until != "" && !ok {
		return &usageError{fmt.Errorf("--until %s: no such step; steps are %s", a.until, strings.Join(g.Order(), ", "))}
	}
	ctx, stop := interruptContext(cmd)
	defer stop()

	env := engine.NewEnv(spec, log)
	defer env.Close()
	env.Progress = a.log.progress(cmd.ErrOrStderr())

	if saved != nil {
		if err := engine.CheckSavedPlanSpec(saved, planFile, spec); err != nil {
			return &exitCodeError{code: exitError, err: err}
		}
	}
	statePath := statePathOf(a.state, spec)
	store, err := openState(statePath, spec, g, engine.StateOptions{
		Operation: "apply", LockTimeout: a.lockTimeout, AcceptSpecChange: a.acceptSpecChange,
	})
	if err != nil {
		return err
	}
	defer store.Close()

	if saved != nil {
		// Checked under the lock, with the outputs the plan saw, so that
		// nothing moves between the check and the run.
		engine.SeedOutputs(env, store.Snapshot())
		if err := engine.CheckSavedPlan(ctx, saved, planFile, g, env, engine.PlanOptions{Parallelism: a.parallel, Versions: planVersions}); err != nil {
			return &exitCodeError{code: exitError, err: err}
		}
	}

	stopMetrics, err := serveMetrics(ctx, env, a.metricsListen, spec, log)
	if err != nil {
		return err
	}
	defer stopMetrics()

	res, err := engine.Apply(ctx, g, env, store, engine.ApplyOptions{
		Parallelism: a.parallel, Until: a.until, Approve: approve, HoldConvergence: holdConvergence,
	})
	if err != nil {
		return &exitCodeError{code: exitError, err: fmt.Errorf("apply stopped: %w", err)}
	}
	if err := store.Update(func(st *engine.State) { st.Next = nextCommand(res, a, ctx.Err() != nil) }); err != nil {
		return &exitCodeError{code: exitError, err: err}
	}
	if ctx.Err() != nil {
		fmt.Fprintf(stdout, "\nApply interrupted by a signal (%d applied). State saved in %s; a step cut short is applied again on resume.\nResume with:\n  %s\n",
			len(res.Applied), store.Path(), commandLine("apply", &a.spec, a.resumeFlags()...))
		return &exitCodeError{code: exitError, err: errors.New("apply interrupted")}
	}
	return reportApply(stdout, res, g, a, store.Path())
}

// reportApply prints the outcome: root causes first, knock-on steps as
// such, and the command to go on.
func reportApply(w io.Writer, res *engine.ApplyResult, g *engine.Graph, a *applyArgs, statePath string) error {
	again := commandLine("apply", &a.spec, a.resumeFlags()...)
	status := commandLine("status", &a.spec, stateFlag(a.state)...)
	rollback := commandLine("rollback", &a.spec, stateFlag(a.state)...)
	counts := fmt.Sprintf("%d applied, %d already done", len(res.Applied), len(res.Skipped))
	if len(res.Converged) > 0 {
		counts += fmt.Sprintf(", %d applied again to catch up with the spec and blue (%s)", len(res.Converged), strings.Join(res.Converged, ", "))
	}
	if len(res.Drifted) > 0 {
		counts += fmt.Sprintf(", %d drifted and left as they are (%s)", len(res.Drifted), strings.Join(res.Drifted, ", "))
	}
	// What drifted and why is printed whatever else happened: a person has
	// to act on it.
	defer func() {
		if len(res.Drifted) == 0 {
			return
		}
		fmt.Fprintf(w, "\nDrifted and not applied again:\n")
		for _, id := range res.Drifted {
			fmt.Fprintf(w, "  ! %s: %s\n", id, res.Why[id])
		}
	}()

	if len(res.Failed) > 0 {
		fmt.Fprintf(w, "\nApply failed (%s).\n\n", counts)
		for _, f := range res.Failed {
			fmt.Fprintf(w, "  ✗ %s failed: %s\n", f.ID, f.Err)
			var knock []string
			for _, u := range res.Upstream {
				var up *engine.UpstreamError
				if errors.As(u.Err, &up) && up.Root == f.ID {
					knock = append(knock, u.ID)
				}
			}
			if len(knock) > 0 {
				fmt.Fprintf(w, "      not run, they need it: %s\n", strings.Join(knock, ", "))
			}
		}
		fmt.Fprintf(w, "\nState saved in %s.\nFix the cause, then continue with:\n  %s\nSee where it stands: %s\nUndo what was done:  %s\n", statePath, again, status, rollback)
		var ids []string
		for _, f := range res.Failed {
			ids = append(ids, f.ID)
		}
		return &exitCodeError{code: exitError, err: stepCauses(fmt.Sprintf("apply failed: %s (%s)", words.Count(len(ids), "step"), strings.Join(ids, ", ")), res.Failed)}
	}
	if len(res.Blocked) > 0 {
		fmt.Fprintf(w, "\nApply stopped short (%s): %s blocked until the cause is fixed", counts, strings.Join(res.Blocked, ", "))
		if len(res.Stalled) > 0 {
			fmt.Fprintf(w, ", and the steps that need %s were not run (what they build on is no longer what the spec and the servers say): %s",
				words.Pick(len(res.Blocked), "it", "them"), strings.Join(res.Stalled, ", "))
		}
		fmt.Fprintf(w, ".\nFix what is named below, then run:\n  %s\n", again)
		return &exitCodeError{code: exitError, err: fmt.Errorf("apply stopped short: %s blocked (%s)", strings.Join(res.Blocked, ", "), res.Why[res.Blocked[0]])}
	}
	if len(res.NotStarted) > 0 {
		fmt.Fprintf(w, "\nApply interrupted (%s); %d steps not started. State saved in %s.\nResume with:\n  %s\n", counts, len(res.NotStarted), statePath, again)
		return &exitCodeError{code: exitError, err: errors.New("apply interrupted")}
	}
	if len(res.Held) > 0 {
		fmt.Fprintf(w, "\nApply stopped before %s: approval needed (%s).\n\n", strings.Join(res.Held, ", "), counts)
		var flags []string
		for _, id := range res.Held {
			fmt.Fprintf(w, "  %s: %s\n", id, res.Gates[id])
			if id == stepid.Cutover {
				flags = append(flags, "--approve-cutover")
			} else {
				flags = append(flags, "--approve", id)
			}
		}
		fmt.Fprintf(w, "\nEverything before it is done. Review with:\n  %s\nthen go on with:\n  %s\n", status, commandLine("apply", &a.spec, append(stateFlag(a.state), flags...)...))
		return nil
	}
	if a.until != "" {
		fmt.Fprintf(w, "\nStopped after %s as asked (--until): %s. State saved in %s.\nContinue with:\n  %s\n", a.until, counts, statePath, again)
		return nil
	}
	fmt.Fprintf(w, "\nApply complete: all %d steps done (%s). State saved in %s.\n", g.Len(), counts, statePath)
	return nil
}

// nextCommand is what the state records as the way to go on.
func nextCommand(res *engine.ApplyResult, a *applyArgs, interrupted bool) string {
	again := commandLine("apply", &a.spec, a.resumeFlags()...)
	switch {
	case interrupted || len(res.NotStarted) > 0:
		return "interrupted: resume with " + again
	case len(res.Failed) > 0:
		var ids []string
		for _, f := range res.Failed {
			ids = append(ids, f.ID)
		}
		return strings.Join(ids, ", ") + " failed: fix the cause, then run " + again
	case len(res.Blocked) > 0:
		return strings.Join(res.Blocked, ", ") + " blocked (run pgshift plan for why): fix the cause, then run " + again
	case len(res.Held) > 0:
		flags := stateFlag(a.state)
		for _, id := range res.Held {
			if id == stepid.Cutover {
				flags = append(flags, "--approve-cutover")
			} else {
				flags = append(flags, "--approve", id)
			}
		}
		return strings.Join(res.Held, ", ") + " needs approval: run " + commandLine("apply", &a.spec, flags...)
	case a.until != "":
		return "stopped after " + a.until + " (--until): continue with " + again
	}
	return ""
}

// resumeFlags are --state and the approvals given to this run: a failed or
// interrupted approved step needs its approval again to go on.
func (a *applyArgs) resumeFlags() []string {
	flags := stateFlag(a.state)
	for _, id := range a.approve {
		flags = append(flags, "--approve", shellQuote(id))
	}
	if a.approveCutover {
		flags = append(flags, "--approve-cutover")
	}
	return flags
}

func stateFlag(path string) []string {
	if path == "" {
		return nil
	}
	return []string{"--state", shellQuote(path)}
}

// holdConvergence keeps done steps as they are while a freeze may be in
// place (a killed cutover: its own step must end it first, and a frozen
// blue refuses DDL) and once the application may run on green (the forward
// pipeline is then the way back, changed only by a rollback).
func holdConvergence(env *engine.Env) string {
	out := env.Outputs(stepid.Cutover)
	switch {
	case cutover.FreezeInPlace(out):
		return "a cutover or its rollback was cut short with writes frozen: apply finishes it first; run apply again afterwards"
	case cutover.TrafficMayBeOnGreen(out):
		return "the application runs on green since the cutover; roll back first to change the forward replication"
	}
	return ""
}
