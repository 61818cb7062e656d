package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/spec"
	"github.com/spf13/cobra"
)

// Flag names of fleet runs (--inventory on apply, status, rollback, cleanup).
const (
	flagParallelDatabases = "parallel-databases"
	flagCanary            = "canary"
	flagWaveSize          = "wave-size"
	flagMaxFailures       = "max-failures"
	flagOnly              = "only"
	flagIndex             = "index"
	flagStateDir          = "state-dir"
	flagDetails           = "details"
)

// fleetFlags are the flags of a command run over an inventory: which
// databases (--only, --index), how many at once, in which waves.
type fleetFlags struct {
	parallel    int
	canary      int
	waveSize    int
	maxFailures string
	only        []string
	index       int
	indexGiven  bool
	stateDir    string
	details     bool // status: each database's full status before the table
}

// register adds the fleet flags; waves (apply, rollback, cleanup) adds the
// wave flags too, status takes the selection and --details.
func (f *fleetFlags) register(cmd *cobra.Command, waves bool) {
	fl := cmd.Flags()
	fl.IntVar(&f.parallel, flagParallelDatabases, 1, "with --inventory: how many databases run at once")
	fl.StringArrayVar(&f.only, flagOnly, nil, "with --inventory: only the entry rendering this spec name (repeatable)")
	fl.IntVar(&f.index, flagIndex, -1, "with --inventory: only entry N, 0-based in inventory order (default: $"+envJobIndex+" when set, as in a Kubernetes Indexed Job)")
	fl.StringVar(&f.stateDir, flagStateDir, "", "with --inventory: keep each database's state as DIR/<name>.pgshift-state.json (default: beside the spec)")
	if waves {
		fl.IntVar(&f.canary, flagCanary, 0, "with --inventory: run the first N databases as a wave of their own (the canary) before the others")
		fl.IntVar(&f.waveSize, flagWaveSize, 0, "with --inventory: after the canary, start databases in waves of N (default: all the rest in one wave)")
		fl.StringVar(&f.maxFailures, flagMaxFailures, "0", "with --inventory: start no further wave once a wave has more failed databases than this count, or percentage of the wave (10%)")
	} else {
		fl.BoolVar(&f.details, flagDetails, false, "with --inventory: print each database's full status before the table")
	}
}

// fleetOnlyFlags are the flags that mean something only with --inventory.
var fleetOnlyFlags = []string{flagParallelDatabases, flagCanary, flagWaveSize, flagMaxFailures, flagOnly, flagIndex, flagStateDir, flagDetails}

// dispatchFleet runs cmd over the inventory when --inventory is given
// (handled true); without it, it refuses the fleet flags and lets the
// command run on its one database (handled false).
func dispatchFleet(cmd *cobra.Command, verb string, sf *specFlags, f *fleetFlags, args []string) (handled bool, err error) {
	if sf.inventory == "" {
		for _, name := range fleetOnlyFlags {
			if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
				return true, &usageError{fmt.Errorf("--%s %v: pass --inventory with it (one database needs no fleet flags)", name, errFleetUsage)}
			}
		}
		return false, nil
	}
	if len(args) > 0 {
		return true, &usageError{fmt.Errorf("%s --inventory takes no saved plan (%s): a plan file is one database's; run without it", verb, args[0])}
	}
	f.indexGiven = cmd.Flags().Changed(flagIndex)
	return true, runFleet(cmd, verb, sf, f)
}

// runFleet is apply, rollback or cleanup over the inventory's databases,
// each run as its own command (its own state file, lock and log prefix),
// wave after wave; or status over them.
func runFleet(cmd *cobra.Command, verb string, sf *specFlags, f *fleetFlags) error {
	fl := cmd.Flags()
	if fl.Changed("state") {
		return &usageError{fmt.Errorf("--state names one state file and --inventory renders several specs: use --%s DIR (each database's state is DIR/<name>.pgshift-state.json)", flagStateDir)}
	}
	if f.parallel < 1 {
		return &usageError{fmt.Errorf("--%s %d: want 1 or more", flagParallelDatabases, f.parallel)}
	}
	if f.canary < 0 || f.waveSize < 0 {
		return &usageError{fmt.Errorf("--%s and --%s take a count of databases, 0 or more", flagCanary, flagWaveSize)}
	}
	if (verb == "rollback" || verb == "cleanup") && !(fl.Changed("yes") || fl.Changed("auto-approve")) {
		return &usageError{fmt.Errorf("%s --inventory never asks database by database: pass --yes to %s every selected database (narrow them with --only or --index; see each one's preview with %s -f %s --var ...)",
			verb, verbInfinitive(verb), verb, shellQuote(sf.file))}
	}
	if fl.Changed(flagMetricsListen) && f.parallel > 1 {
		return &usageError{fmt.Errorf("--%s serves one address, and %d databases would run at once: give each entry its own metrics.listen (a variable in the spec), or run one at a time", flagMetricsListen, f.parallel)}
	}
	limit := maxFailures{}
	if verb != "status" {
		l, err := parseMaxFailures(f.maxFailures)
		if err != nil {
			return &usageError{err}
		}
		limit = l
	}
	specs, err := sf.load()
	if err != nil {
		return err
	}
	sel, err := selectEntries(specs, f, os.Getenv)
	if err != nil {
		return err
	}
	if verb == "status" {
		return runFleetStatus(cmd, sf, f, sel)
	}

	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	waves := splitWaves(len(sel), f.canary, f.waveSize)
	fmt.Fprintf(stdout, "pgshift %s: %s of %s, %s, %d at a time%s.\n\n", verb, words.Count(len(sel), "database"), sf.inventory,
		describeWaves(waves, f.canary), f.parallel, describeLimit(len(waves), limit))
	fwd := forwardedArgs(cmd)
	ctx, stop := interruptContext(cmd)
	defer stop()
	logs := &lockedWriter{w: stderr}
	start := time.Now()
	run := runWaves(ctx, len(sel), waves, f.parallel, limit,
		func(ctx context.Context, i int) *dbResult {
			return runFleetOne(ctx, verb, sf, sel[i], fwd, f.stateDir, logs)
		},
		func(i int, r *dbResult) { printFleetOutput(stdout, sel[i].Name, r) })

	rows := make([]fleetRow, len(sel))
	for i, sp := range sel {
		rows[i] = fleetRowOf(sp, fleetStatePath(f.stateDir, sp), run.results[i])
	}
	for i := range rows {
		if run.results[i] == nil {
			rows[i].Result = notStartedReason(run, ctx.Err() != nil)
		}
	}
	fmt.Fprintln(stdout)
	printFleetTable(stdout, rows)
	return fleetOutcome(stdout, verb, sf, sel, run, ctx.Err() != nil, time.Since(start))
}

func verbInfinitive(verb string) string {
	if verb == "cleanup" {
		return "clean up"
	}
	return "roll back"
}

func describeWaves(waves [][]int, canary int) string {
	switch {
	case len(waves) <= 1 && canary == 0:
		return "in one wave"
	case canary > 0 && len(waves) == 1:
		return fmt.Sprintf("all in the canary wave of %d", len(waves[0]))
	}
	sizes := make([]string, len(waves))
	for i, w := range waves {
		sizes[i] = fmt.Sprint(len(w))
	}
	what := fmt.Sprintf("in %d waves (%s)", len(waves), strings.Join(sizes, ", "))
	if canary > 0 {
		what = fmt.Sprintf("in %d waves (a canary of %d, then %s)", len(waves), len(waves[0]), strings.Join(sizes[1:], ", "))
	}
	return what
}

func describeLimit(waves int, limit maxFailures) string {
	if waves <= 1 {
		return ""
	}
	if !limit.isPct && limit.count == 0 {
		return "; a failed database stops the next waves"
	}
	return fmt.Sprintf("; more than %s failed in a wave stops the next waves", limit)
}

// notStartedReason says why a database did not run.
func notStartedReason(run *waveRun, interrupted bool) string {
	switch {
	case run.stoppedWave > 0:
		return fmt.Sprintf("not started: wave %d had %s", run.stoppedWave, words.Count(run.failures, "failed database"))
	case interrupted:
		return "not started: interrupted"
	}
	return "not started"
}

// fleetOutcome prints the fleet's last lines and returns its exit status:
// 0 every database succeeded (or stopped as asked, at a gate); 1 one needs
// a person; 3 every failure is one a retry may not meet.
func fleetOutcome(w io.Writer, verb string, sf *specFlags, sel []*spec.Spec, run *waveRun, interrupted bool, took time.Duration) error {
	var person, transient, notStarted []string
	ok := 0
	for i, r := range run.results {
		switch {
		case r == nil:
			notStarted = append(notStarted, sel[i].Name)
		case r.kind == failPerson:
			person = append(person, sel[i].Name)
		case r.kind == failTransient:
			transient = append(transient, sel[i].Name)
		default:
			ok++
		}
	}
	parts := []string{fmt.Sprintf("%d succeeded", ok)}
	if len(person) > 0 {
		parts = append(parts, words.Plural(len(person), "needs", "need")+" a person")
	}
	if len(transient) > 0 {
		parts = append(parts, fmt.Sprintf("%d failed transiently", len(transient)))
	}
	if len(notStarted) > 0 {
		parts = append(parts, fmt.Sprintf("%d not started", len(notStarted)))
	}
	fmt.Fprintf(w, "\n%s %s: %s in %s.\n", verb, words.Count(len(sel), "database"), strings.Join(parts, ", "), roundTook(took))
	again := commandLine(verb, sf, fleetAgainFlags(sf)...)
	switch {
	case len(person) > 0:
		fmt.Fprintf(w, "Fix what each one's output says (%s), then run again:\n  %s\n", strings.Join(person, ", "), again)
		return &exitCodeError{code: exitError, err: fmt.Errorf("%s --inventory: %s %s a person (%s); a retry alone would fail the same way",
			verb, words.Count(len(person), "database"), words.Pick(len(person), "needs", "need"), strings.Join(person, ", "))}
	case len(transient) > 0 || len(notStarted) > 0 && interrupted:
		fmt.Fprintf(w, "A retry may succeed; run again:\n  %s\n", again)
		names := append(append([]string{}, transient...), notStarted...)
		return &exitCodeError{code: exitTransient, err: fmt.Errorf("%s --inventory: %s did not finish for a reason that may pass (%s): run the same command again",
			verb, words.Count(len(names), "database"), strings.Join(names, ", "))}
	}
	return nil
}

// fleetAgainFlags are the flags of the fleet command to run it again: the
// ones the user gave (commandLine adds the spec flags).
func fleetAgainFlags(sf *specFlags) []string {
	if sf.cmd == nil {
		return nil
	}
	var flags []string
	for _, a := range forwardedArgs(sf.cmd) {
		flags = append(flags, shellQuote(a))
	}
	for _, name := range []string{flagParallelDatabases, flagCanary, flagWaveSize, flagMaxFailures, flagStateDir, flagIndex} {
		if fl := sf.cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			flags = append(flags, "--"+name, shellQuote(fl.Value.String()))
		}
	}
	if only, err := sf.cmd.Flags().GetStringArray(flagOnly); err == nil {
		for _, n := range only {
			flags = append(flags, "--"+flagOnly, shellQuote(n))
		}
	}
	return flags
}

func roundTook(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}
