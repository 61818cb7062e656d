package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/spf13/cobra"
)

// fleetRow is one database's line of the fleet summary, read from its
// state file (and, after a run, from how its command ended).
type fleetRow struct {
	Name      string `json:"name"`
	StateFile string `json:"state_file"`
	LastStep  string `json:"last_step,omitempty"`
	Status    string `json:"status,omitempty"`
	// LagBytes is the replication lag replication.catchup measured last,
	// PauseMS the write pause of the last cutover (rollback_pause_ms of a
	// cutover rolled back): where the state records them.
	LagBytes *int64 `json:"lag_bytes,omitempty"`
	PauseMS  *int64 `json:"pause_ms,omitempty"`
	Result   string `json:"result"`
	Next     string `json:"next,omitempty"`
	Failure  string `json:"failure,omitempty"` // transient, needs a person
}

// fleetRowOf reads a database's state. r is how this run's command for it
// ended (nil: not run by this command).
func fleetRowOf(sp *spec.Spec, path string, r *dbResult) fleetRow {
	row := fleetRow{Name: sp.Name, StateFile: path}
	st, err := engine.ReadState(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		row.Result = "no state yet: nothing applied"
	case err != nil:
		row.Result = "state unreadable: " + firstLineOf(err.Error())
	case st.Spec.Name != sp.Name:
		row.Result = fmt.Sprintf("state belongs to spec %q", st.Spec.Name)
	default:
		fillFromState(&row, st)
	}
	if r == nil {
		return row
	}
	row.Failure = r.kind.String()
	switch {
	case r.kind == failPerson:
		row.Result = "needs a person: " + clip(failureText(st, r), 100)
	case r.kind == failTransient && r.unreachable != "":
		row.Result = "retry: " + r.unreachable
	case r.kind == failTransient:
		row.Result = "retry: " + clip(failureText(st, r), 100)
	}
	return row
}

// fillFromState takes the last step, its status, the lag, the pause and
// the outcome from a state.
func fillFromState(row *fleetRow, st *engine.State) {
	row.Next = st.Next
	last := lastStep(st)
	if last != nil {
		row.LastStep, row.Status = last.ID, string(last.Status)
	}
	if c := st.Step(stepid.Catchup); c != nil {
		if v, err := strconv.ParseInt(c.Outputs["lag_bytes"], 10, 64); err == nil {
			row.LagBytes = &v
		}
	}
	if c := st.Step(stepid.Cutover); c != nil {
		for _, k := range []string{"pause_ms", "rollback_pause_ms"} {
			if v, err := strconv.ParseInt(c.Outputs[k], 10, 64); err == nil {
				row.PauseMS = &v
			}
		}
	}
	counts := map[engine.Status]int{}
	var held []string
	for _, c := range st.Steps {
		counts[c.Status]++
		if c.Status == engine.StatusPending && strings.Contains(c.Note, "waiting for approval") {
			held = append(held, c.ID)
		}
	}
	switch {
	case st.CleanedUp != nil:
		row.Result = "cleaned up"
	case counts[engine.StatusFailed]+counts[engine.StatusRollbackFailed] > 0:
		row.Result = "failed"
	case counts[engine.StatusRunning]+counts[engine.StatusRollingBack] > 0:
		row.Result = "running or interrupted"
	case counts[engine.StatusRolledBack] > 0 && counts[engine.StatusDone] == 0:
		row.Result = "rolled back"
	case len(held) > 0:
		row.Result = "waiting for approval: " + strings.Join(held, ", ")
	case counts[engine.StatusDone] == len(st.Steps) && len(st.Steps) > 0:
		row.Result = "done"
	case counts[engine.StatusDone] > 0 && st.Next != "":
		row.Result = "stopped: " + clip(st.Next, 60)
	case counts[engine.StatusDone] > 0:
		row.Result = "partly applied"
	default:
		row.Result = "nothing applied"
	}
}

// lastStep is the step a database is at: the first (in graph order) that
// failed or is under way, else the one that finished last.
func lastStep(st *engine.State) *engine.StepState {
	for _, c := range st.Steps {
		switch c.Status {
		case engine.StatusFailed, engine.StatusRollbackFailed, engine.StatusRunning, engine.StatusRollingBack:
			return c
		}
	}
	var last *engine.StepState
	var at time.Time
	for _, c := range st.Steps {
		t := c.FinishedAt
		if t == nil {
			t = c.StartedAt
		}
		if t != nil && !t.Before(at) {
			last, at = c, *t
		}
	}
	return last
}

// failureText is the root cause of a failed database: the first failed
// step's error from its state, else the command's error.
func failureText(st *engine.State, r *dbResult) string {
	if st != nil {
		for _, c := range st.Steps {
			if (c.Status == engine.StatusFailed || c.Status == engine.StatusRollbackFailed) && c.Error != "" {
				msg := strings.TrimPrefix(c.Error, c.ID+": ")
				return c.ID + ": " + oneLineText(msg)
			}
		}
	}
	if msg := errorText(r.err); msg != "" {
		return oneLineText(msg)
	}
	return "see its output above"
}

// oneLineText folds a message of several lines (a list of blockers) onto
// one.
func oneLineText(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// printFleetTable prints the summary, one line per database.
func printFleetTable(w io.Writer, rows []fleetRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DATABASE\tLAST STEP\tSTATUS\tLAG\tPAUSE\tRESULT")
	for _, r := range rows {
		lag, pause := "-", "-"
		if r.LagBytes != nil {
			lag = words.Bytes(*r.LagBytes)
		}
		if r.PauseMS != nil {
			pause = (time.Duration(*r.PauseMS) * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, dash(r.LastStep), dash(r.Status), lag, pause, r.Result)
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fleetStatusJSON is `status --inventory --format json` (format_version 1).
type fleetStatusJSON struct {
	FormatVersion int        `json:"format_version"`
	Databases     []fleetRow `json:"databases"`
}

// runFleetStatus prints the summary of the selected databases from their
// state files (with --details, or when one database is selected, each
// one's full status first). It exits 1 when a state cannot be read.
func runFleetStatus(cmd *cobra.Command, sf *specFlags, f *fleetFlags, sel []*spec.Spec) error {
	out := cmd.OutOrStdout()
	format, _ := cmd.Flags().GetString(flagFormat)
	if format != formatText && format != formatJSON {
		return &usageError{fmt.Errorf("--format %q: use %s, %s", format, formatText, formatJSON)}
	}
	if format == formatJSON {
		doc := fleetStatusJSON{FormatVersion: 1, Databases: []fleetRow{}}
		for _, sp := range sel {
			doc.Databases = append(doc.Databases, fleetRowOf(sp, fleetStatePath(f.stateDir, sp), nil))
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(doc); err != nil {
			return err
		}
		return unreadableStates(doc.Databases)
	}
	if f.details || len(sel) == 1 {
		fwd := forwardedArgs(cmd)
		logs := &lockedWriter{w: cmd.ErrOrStderr()}
		run := runWaves(cmdContext(cmd), len(sel), [][]int{seq(0, len(sel))}, f.parallel, maxFailures{},
			func(ctx context.Context, i int) *dbResult {
				return runFleetOne(ctx, "status", sf, sel[i], fwd, f.stateDir, logs)
			}, func(int, *dbResult) {})
		for _, r := range run.results {
			if r != nil {
				io.WriteString(out, r.output+"\n")
			}
		}
	}
	rows := make([]fleetRow, len(sel))
	for i, sp := range sel {
		rows[i] = fleetRowOf(sp, fleetStatePath(f.stateDir, sp), nil)
	}
	fmt.Fprintf(out, "pgshift status: %s of %s\n\n", words.Count(len(sel), "database"), sf.inventory)
	printFleetTable(out, rows)
	return unreadableStates(rows)
}

func unreadableStates(rows []fleetRow) error {
	var bad []string
	for _, r := range rows {
		if strings.HasPrefix(r.Result, "state unreadable") || strings.HasPrefix(r.Result, "state belongs") {
			bad = append(bad, r.Name)
		}
	}
	if len(bad) > 0 {
		return &exitCodeError{code: exitError, err: fmt.Errorf("status: the state of %s cannot be read (see the table): fix or move it", strings.Join(bad, ", "))}
	}
	return nil
}
