package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newPlanCommand) }

// planArgs are the parsed flags of `pgshift plan`.
type planArgs struct {
	spec             specFlags
	fleet            fleetFlags
	out              outputFlags
	log              logFlags
	offline          bool
	detailedExitcode bool
	outFile          string
	parallel         int
	state            string
}

func newPlanCommand() *cobra.Command {
	var a planArgs
	cmd := &cobra.Command{
		Use:   "plan -f spec.yaml",
		Short: "Show what apply would change, like a diff",
		Long: `plan inspects blue and green and shows, step by step, what apply would do:

  + create   ~ change   - destroy   ✓ already in place
  ! warning  ✗ blocker (apply would refuse)   ? not inspected (--offline)

The output is deterministic (same inputs, same bytes): review it in a pull
request with --format markdown, or feed --format json to tools (a versioned
format, see docs/plan-format.md). With --inventory and --format markdown,
the databases make one comment: a table of counts, then each plan folded
(docs/fleets.md); --only NAME and --index N narrow the inventory.

-out FILE saves the plan with the spec's hash and a fingerprint of what was
observed; "pgshift apply FILE" applies it only if neither has moved on.

Exit status: 0 on success, 1 on error or when the plan has blockers; with
--detailed-exitcode, 0 when there is nothing to do, 2 when there are changes
(an offline plan counts as changes).`,
		// Flags are parsed by hand so that terraform's single-dash -out works.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cmd.Flags().Parse(singleDashOut(args)); err != nil {
				return &usageError{err}
			}
			if help, _ := cmd.Flags().GetBool("help"); help {
				return cmd.Help()
			}
			if rest := cmd.Flags().Args(); len(rest) > 0 {
				return &usageError{fmt.Errorf("plan takes no arguments, got %q: give the spec with -f", rest)}
			}
			return runPlan(cmd, &a)
		},
	}
	a.spec.register(cmd)
	a.fleet.registerSelect(cmd)
	a.out.register(cmd, formatText, formatMarkdown, formatJSON)
	a.log.register(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&a.offline, "offline", false, "plan without connecting: every step shows what it would do, not what it will change")
	fl.BoolVar(&a.detailedExitcode, "detailed-exitcode", false, "exit 0 when there is nothing to do, 2 when there are changes, 1 on error or blockers")
	fl.StringVar(&a.outFile, "out", "", "save the plan to this file, for \"pgshift apply FILE\" (-out works too)")
	fl.IntVar(&a.parallel, "parallel", 4, "how many steps to inspect at once")
	fl.StringVar(&a.state, "state", "", "state file whose recorded outputs the steps may read (default <name>.pgshift-state.json beside the spec)")
	cmd.Flags().BoolP("help", "h", false, "help for plan")
	return cmd
}

// singleDashOut accepts terraform's -out spelling beside --out.
func singleDashOut(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		switch {
		case a == "--":
			copy(out[i:], args[i:])
			return out
		case a == "-out" || strings.HasPrefix(a, "-out="):
			a = "-" + a
		}
		out[i] = a
	}
	return out
}

func runPlan(cmd *cobra.Command, a *planArgs) error {
	if err := a.out.check(formatText, formatMarkdown, formatJSON); err != nil {
		return err
	}
	if a.outFile != "" && a.spec.inventory != "" {
		return &usageError{errors.New("-out saves the plan of one spec; --inventory renders several: plan each entry with --var instead")}
	}
	specs, err := a.spec.load()
	if err != nil {
		return err
	}
	if specs, err = selectForPlan(cmd, &a.spec, &a.fleet, specs); err != nil {
		return err
	}
	log, err := a.log.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ctx, stop := interruptContext(cmd)
	defer stop()

	stdout := cmd.OutOrStdout()
	changes, blockers := false, 0
	// Several databases in markdown: one comment, a table over folded plans.
	var fleet []*plans.Plan
	for i, spec := range specs {
		p, err := planSpec(ctx, spec, a, log)
		if err != nil {
			return &exitCodeError{code: exitError, err: err}
		}
		if a.out.format == formatMarkdown && len(specs) > 1 {
			fleet = append(fleet, p)
			changes = changes || p.Summarize().HasChanges()
			blockers += p.Summary.Blockers
			continue
		}
		if i > 0 && a.out.format != formatJSON {
			fmt.Fprintln(stdout)
		}
		if err := renderPlan(stdout, p, &a.out); err != nil {
			return err
		}
		if a.outFile != "" {
			if err := savePlan(p, spec, a); err != nil {
				return &exitCodeError{code: exitError, err: err}
			}
			if p.Summary.Blockers > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "\nSaved the plan to %s, but it has blockers: apply would refuse it. Fix them and plan again.\n", a.outFile)
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "\nSaved the plan to %s. Apply it with: pgshift apply %s\n", a.outFile, shellQuote(a.outFile))
			}
		}
		changes = changes || p.Summary.HasChanges()
		blockers += p.Summary.Blockers
	}
	if fleet != nil {
		if err := renderFleetPlan(stdout, fleet, a); err != nil {
			return err
		}
	}
	if blockers > 0 {
		return &exitCodeError{code: exitError, err: fmt.Errorf("the plan has %s: apply would refuse; fix each ✗ line and run plan again", words.Count(blockers, "blocker"))}
	}
	if a.detailedExitcode && changes {
		return &exitCodeError{code: exitChanges}
	}
	return nil
}

func planSpec(ctx context.Context, spec *spec.Spec, a *planArgs, log hclog.Logger) (*plans.Plan, error) {
	g, err := compileSpec(spec)
	if err != nil {
		return nil, err
	}
	env := engine.NewEnv(spec, log)
	defer env.Close()
	statePath := statePathOf(a.state, spec)
	if st, err := engine.ReadState(statePath); err == nil {
		engine.SeedOutputs(env, st) // what earlier runs recorded (LSNs, names)
	}
	return engine.BuildPlan(ctx, g, env, engine.PlanOptions{Offline: a.offline, Parallelism: a.parallel, Versions: planVersions})
}

func renderPlan(w io.Writer, p *plans.Plan, o *outputFlags) error {
	switch o.format {
	case formatMarkdown:
		return p.Markdown(w)
	case formatJSON:
		return p.JSON(w)
	default:
		return p.Text(w, plans.TextOptions{Color: o.color(w)})
	}
}

// savePlan writes the plan with what apply needs to render the same spec.
func savePlan(p *plans.Plan, spec *spec.Spec, a *planArgs) error {
	c := *p
	if abs, err := filepath.Abs(spec.File); err == nil {
		c.SpecFile = abs
	}
	if opts, err := a.spec.options(); err == nil {
		c.SpecVars = opts.Vars
	}
	if a.spec.varsFile != "" {
		if abs, err := filepath.Abs(a.spec.varsFile); err == nil {
			c.SpecVarsFile = abs
		}
	}
	return c.Save(a.outFile)
}
