package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/cutover"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newStatusCommand) }

// statusArgs are the parsed flags of `pgshift status`.
type statusArgs struct {
	spec    specFlags
	fleet   fleetFlags
	out     outputFlags
	state   string
	offline bool
	timeout time.Duration
}

func newStatusCommand() *cobra.Command {
	var a statusArgs
	cmd := &cobra.Command{
		Use:   "status -f spec.yaml",
		Short: "Show each step's status from the state file, and live facts",
		Long: `status reads the state file (without locking it: writes are atomic) and
shows each step's status, duration and note, then the live facts the steps
report (replication lag, tables still syncing) unless --offline, and how to
go on. With --inventory it shows one line per database (--details: each
database's status first; docs/fleets.md).

Exit status: 0 when the state could be read, whatever the steps' statuses
(a side that cannot be reached is shown as "facts unavailable"); 1 when the
spec or the state cannot be read; 2 usage error.`,
		Args: specNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fleet, err := dispatchFleet(cmd, "status", &a.spec, &a.fleet, nil); fleet {
				return err
			}
			return runStatus(cmd, &a)
		},
	}
	a.spec.register(cmd)
	a.fleet.register(cmd, false)
	a.out.register(cmd, formatText, formatJSON)
	fl := cmd.Flags()
	fl.StringVar(&a.state, "state", "", "state file (default <name>.pgshift-state.json beside the spec)")
	fl.BoolVar(&a.offline, "offline", false, "do not connect: state only, no live facts")
	fl.DurationVar(&a.timeout, "timeout", 20*time.Second, "how long live facts may take")
	return cmd
}

// statusJSON is `status --format json` (format_version 1).
type statusJSON struct {
	FormatVersion int                   `json:"format_version"`
	Name          string                `json:"name"`
	StateFile     string                `json:"state_file"`
	StateExists   bool                  `json:"state_exists"`
	LockedBy      *engine.LockInfo      `json:"locked_by,omitempty"`
	Steps         []statusStepJSON      `json:"steps"`
	Facts         map[string][]string   `json:"facts,omitempty"`
	Live          string                `json:"live"`           // the side the application writes to: blue, green or unknown
	Next          string                `json:"next,omitempty"` // how to go on, as the last run recorded it
	CleanedUp     *engine.CleanupRecord `json:"cleaned_up,omitempty"`
}

type statusStepJSON struct {
	ID              string            `json:"id"`
	Status          engine.Status     `json:"status"`
	DurationSeconds *float64          `json:"duration_seconds,omitempty"`
	Note            string            `json:"note,omitempty"`
	Error           string            `json:"error,omitempty"`
	Outputs         map[string]string `json:"outputs,omitempty"`
	Running         *time.Time        `json:"running_since,omitempty"`
}

func runStatus(cmd *cobra.Command, a *statusArgs) error {
	if err := a.out.check(formatText, formatJSON); err != nil {
		return err
	}
	specs, err := a.spec.load()
	if err != nil {
		return err
	}
	if a.state != "" && len(specs) > 1 {
		return &usageError{errors.New("--state names one state file; --inventory renders several specs")}
	}
	for i, spec := range specs {
		if i > 0 && a.out.format == formatText {
			fmt.Fprintln(cmd.OutOrStdout())
		}
		if err := statusOne(cmd, a, spec); err != nil {
			return err
		}
	}
	return nil
}

func statusOne(cmd *cobra.Command, a *statusArgs, spec *spec.Spec) error {
	g, err := compileSpec(spec)
	if err != nil {
		return err
	}
	path := statePathOf(a.state, spec)
	st, err := engine.ReadState(path)
	exists := err == nil
	switch {
	case errors.Is(err, os.ErrNotExist):
		st = &engine.State{Spec: engine.StateSpec{Name: spec.Name}}
	case err != nil:
		return &exitCodeError{code: exitError, err: err}
	case st.Spec.Name != spec.Name:
		return &exitCodeError{code: exitError, err: fmt.Errorf("%s belongs to spec %q, not %q: pass --state with this spec's state", engine.StateWhere(path), st.Spec.Name, spec.Name)}
	}
	holder, locked := engine.LockHolder(path)

	out := statusJSON{FormatVersion: 1, Name: spec.Name, StateFile: path, StateExists: exists, LockedBy: holder, Next: st.Next, CleanedUp: st.CleanedUp,
		Live: liveSide(st)}
	ids := g.Order()
	for _, c := range st.Steps {
		if _, ok := g.Step(c.ID); !ok {
			ids = append(ids, c.ID) // no longer in the spec, but it ran
		}
	}
	var interrupted []string
	for _, id := range ids {
		row := statusStepJSON{ID: id, Status: engine.StatusPending}
		if c := st.Step(id); c != nil {
			row.Status, row.Note, row.Error, row.Outputs = c.Status, c.Note, c.Error, c.Outputs
			if c.StartedAt != nil && c.FinishedAt != nil {
				d := c.FinishedAt.Sub(*c.StartedAt).Seconds()
				row.DurationSeconds = &d
			}
			if locked && c.StartedAt != nil && c.FinishedAt == nil && (c.Status == engine.StatusRunning || c.Status == engine.StatusRollingBack) {
				row.Running = c.StartedAt // a step left running by a dead run has no duration to show
			}
			if (c.Status == engine.StatusRunning || c.Status == engine.StatusRollingBack) && !locked {
				interrupted = append(interrupted, id)
				row.Note = "interrupted: no pgshift run holds the state"
			}
		}
		if _, ok := g.Step(id); !ok {
			row.Note = strings.TrimSpace(row.Note + " (no longer in the spec)")
		}
		out.Steps = append(out.Steps, row)
	}

	if !a.offline {
		ctx, cancel := context.WithTimeout(cmdContext(cmd), a.timeout)
		defer cancel()
		env := engine.NewEnv(spec, nil)
		defer env.Close()
		engine.SeedOutputs(env, st)
		for _, id := range g.Order() {
			s, _ := g.Step(id)
			r, ok := s.(engine.Reporter)
			if !ok {
				continue
			}
			if c := st.Step(id); c == nil || c.Status == engine.StatusPending || c.Status == engine.StatusUpstreamFailed || c.Status == engine.StatusRolledBack {
				continue // nothing of it exists to report on
			}
			// After cleanup the replication objects are gone; the cutover
			// still says where traffic goes and whether a side is frozen.
			if st.CleanedUp != nil && id != stepid.Cutover {
				continue
			}
			facts, err := r.Report(ctx, env.ForStep(id))
			if err != nil {
				facts = append(facts, "facts unavailable: "+err.Error())
			}
			if len(facts) > 0 {
				if out.Facts == nil {
					out.Facts = map[string][]string{}
				}
				out.Facts[id] = facts
			}
		}
	}

	w := cmd.OutOrStdout()
	if a.out.format == formatJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(out)
	}
	one := *a
	one.spec = a.spec.forEntry(spec)
	printStatus(w, &out, g, &one, interrupted)
	return nil
}

// liveSide is the side the state says the application writes to: the
// cutover's, read from its recorded phases; blue when it never ran or was
// rolled back (its outputs are then cleared).
func liveSide(st *engine.State) string {
	c := st.Step(stepid.Cutover)
	if c == nil || c.Status == engine.StatusRolledBack {
		return cutover.LiveBlue
	}
	return cutover.LiveSide(c.Outputs)
}

func printStatus(w io.Writer, s *statusJSON, g *engine.Graph, a *statusArgs, interrupted []string) {
	fmt.Fprintf(w, "pgshift status: %s   state %s\n", s.Name, s.StateFile)
	if !s.StateExists {
		fmt.Fprintln(w, "No state file yet: nothing has been applied.")
	}
	if c := s.CleanedUp; c != nil {
		fmt.Fprintf(w, "Cleaned up at %s: %s dropped (%s).\n", c.At.UTC().Format(time.RFC3339), words.Count(len(c.Dropped), "replication object"), strings.Join(c.Dropped, ", "))
		if c.AfterCutover {
			fmt.Fprintln(w, "The upgrade is over: green is live and nothing replicates back to blue; apply and rollback refuse this state.")
		} else {
			fmt.Fprintln(w, "The upgrade was abandoned before its cutover: apply refuses this state; rollback can still undo the rest.")
		}
	}
	if s.LockedBy != nil {
		fmt.Fprintf(w, "A run is in progress: pgshift %s, pid %d on %s since %s.\n", s.LockedBy.Operation, s.LockedBy.PID, s.LockedBy.Host, s.LockedBy.Since.UTC().Format(time.RFC3339))
	}
	switch s.Live {
	case cutover.LiveUnknown:
		fmt.Fprintln(w, "Live side: UNKNOWN: a cutover or its rollback was interrupted during its switch; run that command again (apply --approve-cutover, or rollback --step cutover) to settle it.")
	default:
		fmt.Fprintf(w, "Live side: %s.\n", s.Live)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tSTATUS\tDURATION\tNOTE")
	counts := map[engine.Status]int{}
	for _, r := range s.Steps {
		counts[r.Status]++
		dur := "-"
		if r.Running != nil {
			dur = time.Since(*r.Running).Round(time.Second).String() + "…"
		}
		if r.DurationSeconds != nil {
			dur = (time.Duration(*r.DurationSeconds * float64(time.Second))).Round(time.Millisecond).String()
		}
		note := r.Note
		if r.Error != "" {
			note = firstLineOf(r.Error)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.ID, r.Status, dur, note)
	}
	tw.Flush()

	if len(s.Facts) > 0 {
		fmt.Fprintln(w, "\nLive facts:")
		for _, id := range g.Order() {
			if facts := s.Facts[id]; len(facts) > 0 {
				fmt.Fprintf(w, "  %s\n", id)
				for _, f := range facts {
					fmt.Fprintf(w, "    %s\n", f)
				}
			}
		}
	}

	var parts []string
	for _, st := range []engine.Status{engine.StatusDone, engine.StatusRunning, engine.StatusFailed, engine.StatusUpstreamFailed,
		engine.StatusPending, engine.StatusRollingBack, engine.StatusRolledBack, engine.StatusRollbackFailed} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	fmt.Fprintf(w, "\n%s.\n", strings.Join(parts, ", "))
	sf := stateFlag(a.state)
	switch {
	case s.LockedBy != nil:
		// The running command reports its own outcome; advice from the last run would be stale.
	case len(interrupted) > 0 && counts[engine.StatusRollingBack] > 0:
		fmt.Fprintf(w, "A rollback of %s was interrupted. Resume it with: %s\n", strings.Join(interrupted, ", "), commandLine("rollback", &a.spec, sf...))
	case len(interrupted) > 0:
		fmt.Fprintf(w, "%s was interrupted. Resume with: %s (or undo with: %s)\n", strings.Join(interrupted, ", "),
			commandLine("apply", &a.spec, sf...), commandLine("rollback", &a.spec, sf...))
	case counts[engine.StatusFailed] > 0 || counts[engine.StatusUpstreamFailed] > 0:
		fmt.Fprintf(w, "Fix the failed step, then continue with: %s\n", commandLine("apply", &a.spec, sf...))
	case counts[engine.StatusRollbackFailed] > 0:
		fmt.Fprintf(w, "Fix the failed rollback, then run again: %s\n", commandLine("rollback", &a.spec, sf...))
	case s.Next != "":
		fmt.Fprintf(w, "Next: %s\n", s.Next)
	}
}

func firstLineOf(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
