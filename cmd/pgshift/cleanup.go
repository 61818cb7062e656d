package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/steps"
	"github.com/pgshift/pgshift/steps/cutover"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newCleanupCommand) }

// cleanupArgs are the parsed flags of `pgshift cleanup`.
type cleanupArgs struct {
	spec  specFlags
	fleet fleetFlags
	log   logFlags
	state string
	yes   bool
}

func newCleanupCommand() *cobra.Command {
	var a cleanupArgs
	cmd := &cobra.Command{
		Use:   "cleanup -f spec.yaml",
		Short: "Drop pgshift's subscriptions, replication slots and publications",
		Long: `cleanup drops the replication objects pgshift made, once blue is retired (or
the upgrade is abandoned): the subscription on green, the slot and the
publication on blue, and the reverse ones (publication and slot on green,
subscription on blue). It lists them as "-" lines first and asks before
dropping anything, unless --yes is given. A publication pgshift did not
create is kept. Running it again when everything is gone changes nothing.

A replication slot left behind keeps WAL on its server forever: run cleanup
when the upgrade is over.

What it dropped is recorded in the state file: status shows it, apply
refuses that state afterwards (its steps' objects are gone), and so does
rollback once the cutover had moved traffic to green. Before a cutover,
rollback still undoes the rest and clears the mark.

It takes the state's lock, so it never runs beside an apply or a rollback
of the same spec.

Exit status: 0 done (or nothing to drop), 1 error, cancelled, or a side that
could not be inspected (run cleanup again once it is back), 2 usage error.
With --inventory (and --yes), every database, in waves (docs/fleets.md;
exit 3: a retry may get past every failure).`,
		Args: specNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fleet, err := dispatchFleet(cmd, "cleanup", &a.spec, &a.fleet, nil); fleet {
				return err
			}
			return runCleanup(cmd, &a)
		},
	}
	a.spec.register(cmd)
	a.fleet.register(cmd, true)
	a.log.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&a.state, "state", "", "state file whose lock cleanup takes (default <name>.pgshift-state.json beside the spec)")
	fl.BoolVar(&a.yes, "yes", false, "drop without asking")
	fl.BoolVar(&a.yes, "auto-approve", false, "same as --yes")
	return cmd
}

func runCleanup(cmd *cobra.Command, a *cleanupArgs) error {
	spec, err := a.spec.loadOne()
	if err != nil {
		return err
	}
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	ctx, stop := interruptContext(cmd)
	defer stop()

	log, err := a.log.logger(errOut)
	if err != nil {
		return err
	}
	// Dropping the slot or the subscription under a running apply would break it.
	statePath := statePathOf(a.state, spec)
	lock, err := engine.AcquireLock(statePath, "cleanup", 0)
	if err != nil {
		return &exitCodeError{code: exitError, err: err}
	}
	defer lock.Release()
	env := engine.NewEnv(spec, log)
	defer env.Close()
	// What the steps recorded (which slot pgshift created, say) decides
	// what cleanup may drop, wherever --state put the file.
	if st, err := engine.ReadState(statePath); err == nil && st.Spec.Name == spec.Name {
		engine.SeedOutputs(env, st)
	}
	env = env.ForStep("cleanup")

	plan, err := steps.PlanCleanup(ctx, env)
	if err != nil {
		return &exitCodeError{code: exitError, err: fmt.Errorf("cleanup: %w", err)}
	}
	if note := unfinishedUpgradeNote(statePath, &a.spec, a.state); note != "" && len(plan.Actions) > 0 {
		plan.Notes = append(plan.Notes, note)
	}
	fmt.Fprintf(out, "pgshift cleanup: %s\n\n", spec.Name)
	printCleanupPlan(out, plan)
	// PlanCleanup opened both sides it could reach; a side left closed was
	// not inspected, and its objects (if any) are still there.
	var unreached []string
	for _, db := range []*engine.Database{env.Source, env.Target} {
		if !db.Opened() {
			unreached = append(unreached, db.Role)
		}
	}
	again := commandLine("cleanup", &a.spec, stateFlag(a.state)...)
	if len(plan.Actions) == 0 {
		if len(unreached) > 0 {
			return &exitCodeError{code: exitError, err: fmt.Errorf("cleanup incomplete: %s could not be inspected (see above), so its objects may remain; run %s again once it is reachable",
				strings.Join(unreached, " and "), again)}
		}
		fmt.Fprintln(out, "No changes. No pgshift replication objects exist on blue or green.")
		return nil
	}
	fmt.Fprintf(out, "Cleanup: %d to destroy.\n", len(plan.Actions))
	if !a.yes {
		ok, err := confirm(cmd.InOrStdin(), out, fmt.Sprintf("Drop these %s?", words.Count(len(plan.Actions), "object")))
		if err != nil {
			return err
		}
		if !ok {
			return &exitCodeError{code: exitError, err: fmt.Errorf("cleanup cancelled: nothing was dropped (answer yes, or pass --yes to skip the question)")}
		}
	}
	// Once anything is dropped, the state's done steps no longer describe
	// live objects: say so in it (also after a partial cleanup), so that
	// apply does not take them for done and status tells the story.
	var dropped []string
	record := func() error {
		if len(dropped) == 0 {
			return nil
		}
		rec := engine.CleanupRecord{At: time.Now().UTC().Truncate(time.Second), Dropped: dropped, AfterCutover: trafficMovedToGreen(statePath)}
		if err := engine.RecordCleanup(statePath, rec); err != nil {
			return fmt.Errorf("%s dropped, but %w: apply would take the state's steps for done", words.Count(len(dropped), "object"), err)
		}
		return nil
	}
	for i, act := range plan.Actions {
		if err := act.Drop(ctx, env); err != nil {
			err = fmt.Errorf("drop %s %s on %s: %w (dropped %d of %d; run cleanup again to finish)", act.Kind, act.Name, act.Side, err, i, len(plan.Actions))
			return &exitCodeError{code: exitError, err: errors.Join(err, record())}
		}
		fmt.Fprintf(out, "  - dropped %s %s on %s\n", act.Kind, act.Name, act.Side)
		dropped = append(dropped, fmt.Sprintf("%s %s on %s", act.Kind, act.Name, act.Side))
	}
	if err := record(); err != nil {
		return &exitCodeError{code: exitError, err: err}
	}
	if len(unreached) > 0 {
		fmt.Fprintf(out, "\nCleanup incomplete: %d destroyed; %s not inspected.\n", len(plan.Actions), strings.Join(unreached, " and "))
		return &exitCodeError{code: exitError, err: fmt.Errorf("cleanup incomplete: run %s again once %s is reachable", again, strings.Join(unreached, " and "))}
	}
	fmt.Fprintf(out, "\nCleanup complete: %d destroyed.\n", len(plan.Actions))
	return nil
}

// trafficMovedToGreen says whether the state records a cutover that may have moved
// traffic to green (finished, or failed or killed after its switch) and no
// rollback since.
func trafficMovedToGreen(statePath string) bool {
	st, err := engine.ReadState(statePath)
	if err != nil {
		return false
	}
	c := st.Step(stepid.Cutover)
	return c != nil && (c.Status == engine.StatusDone || cutover.TrafficMayBeOnGreen(c.Outputs)) && c.Status != engine.StatusRolledBack
}

// unfinishedUpgradeNote warns when the state shows an upgrade under way
// (steps done, no cutover yet): the state would still call the dropped
// objects done, so apply could not resume; rollback is the way to abandon.
func unfinishedUpgradeNote(statePath string, sf *specFlags, stateFlagValue string) string {
	st, err := engine.ReadState(statePath)
	if err != nil {
		return ""
	}
	if trafficMovedToGreen(statePath) {
		return ""
	}
	for _, c := range st.Steps {
		if c.Status == engine.StatusDone {
			return fmt.Sprintf("the upgrade is not finished (%s records steps done, no cutover): after cleanup, apply cannot resume it; to abandon the upgrade run %s instead",
				statePath, commandLine("rollback", sf, stateFlag(stateFlagValue)...))
		}
	}
	return ""
}

// printCleanupPlan lists the objects as "-" lines (side, kind, name, SQL)
// and the notes under them.
func printCleanupPlan(w io.Writer, plan steps.CleanupPlan) {
	if len(plan.Actions) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, act := range plan.Actions {
			fmt.Fprintf(tw, "  - %s\t%s\t%s\t%s\n", act.Side, act.Kind, act.Name, act.SQL)
		}
		tw.Flush()
	}
	for _, n := range plan.Notes {
		fmt.Fprintf(w, "  ! %s\n", n)
	}
	if len(plan.Actions)+len(plan.Notes) > 0 {
		fmt.Fprintln(w)
	}
}
