package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/querycompare"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/spec"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newCompareQueriesCommand) }

// compareQueriesArgs are the parsed flags of `pgshift compare-queries`.
type compareQueriesArgs struct {
	spec    specFlags
	out     outputFlags
	log     logFlags
	queries string
	opts    querycompare.Options
}

func newCompareQueriesCommand() *cobra.Command {
	a := compareQueriesArgs{opts: querycompare.Defaults()}
	cmd := &cobra.Command{
		Use:   "compare-queries -f spec.yaml",
		Short: "Time the same statements on blue and green and report the ones green runs slower",
		Long: `compare-queries runs statements on blue and on green and reports, worst first,
which ones green runs slower and which ones changed plan: the check to run
before the cutover, on the real pair or on a staging pair made from the same
spec template (docs/rehearsal.md).

Statements: blue's top --top statements of pg_stat_statements by total time
(the extension must be loaded and created on blue), and those of --queries
FILE (YAML: a list of {name, sql, params}; or .sql, with "-- name:" and
"-- params: [...]" lines before each statement). Each runs --rounds times on
each side as EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) inside a READ ONLY
transaction that is rolled back, under --statement-timeout. Statements
without values ($1 placeholders, as pg_stat_statements keeps them) are
compared by their generic plans, not timed. Writes (INSERT, UPDATE, DELETE,
MERGE) are only planned, unless --allow-writes: then they run on green only,
rolled back; blue never runs them. Utility statements are listed as skipped.
Before anything is timed, green's tables that were never analyzed are
ANALYZEd (--analyze=false to leave them).

A statement is a regression when green's median is over --max-ratio times
blue's AND over --min-diff slower, or when green runs past the timeout where
blue did not. docs/compare-queries.md has the reference.

Exit status: 0 no regression, 1 a regression (or a side cannot be read),
2 usage error.`,
		Args: specNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCompareQueries(cmd, &a) },
	}
	a.spec.registerOne(cmd)
	a.out.register(cmd, formatText, formatMarkdown, formatJSON)
	a.log.register(cmd)
	fl := cmd.Flags()
	fl.IntVar(&a.opts.Top, "top", a.opts.Top, "how many of blue's pg_stat_statements to compare, by total time (0: none)")
	fl.StringVar(&a.queries, "queries", "", "file of statements to compare as well: .yaml (a list of {name, sql, params}) or .sql")
	fl.IntVar(&a.opts.Rounds, "rounds", a.opts.Rounds, "runs of each statement on each side")
	fl.DurationVar(&a.opts.StatementTimeout, "statement-timeout", a.opts.StatementTimeout, "bound of each run (statement_timeout)")
	fl.Float64Var(&a.opts.MaxRatio, "max-ratio", a.opts.MaxRatio, "regression when green's median is over this many times blue's ...")
	fl.DurationVar(&a.opts.MinDiff, "min-diff", a.opts.MinDiff, "... and more than this much slower")
	fl.BoolVar(&a.opts.AllowWrites, "allow-writes", false, "run INSERT, UPDATE, DELETE and MERGE on green, in a transaction rolled back (never on blue)")
	fl.BoolVar(&a.opts.Analyze, "analyze", a.opts.Analyze, "ANALYZE green's tables that were never analyzed before timing")
	return cmd
}

func runCompareQueries(cmd *cobra.Command, a *compareQueriesArgs) error {
	if err := a.out.check(formatText, formatMarkdown, formatJSON); err != nil {
		return err
	}
	s, err := a.spec.loadOne()
	if err != nil {
		return err
	}
	specOptions(cmd, a, s)
	if err := a.opts.Check(); err != nil {
		return &usageError{fmt.Errorf("compare-queries: %w", err)}
	}
	if a.opts.Top == 0 && a.queries == "" {
		return &usageError{errors.New("nothing to compare: --top 0 and no --queries FILE")}
	}
	var fromFile []querycompare.Statement
	if a.queries != "" {
		if fromFile, err = querycompare.LoadFile(a.queries); err != nil {
			return &usageError{fmt.Errorf("--queries: %w", err)}
		}
	}
	log, err := a.log.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ctx, stop := interruptContext(cmd)
	defer stop()

	env := engine.NewEnv(s, log)
	defer env.Close()
	blue, err := env.Source.Connect(ctx)
	if err != nil {
		return &exitCodeError{code: exitError, err: err}
	}
	defer blue.Close(context.WithoutCancel(ctx))
	green, err := env.Target.Connect(ctx)
	if err != nil {
		return &exitCodeError{code: exitError, err: err}
	}
	defer green.Close(context.WithoutCancel(ctx))

	stmts := fromFile
	var unavailable string
	if a.opts.Top > 0 {
		top, err := querycompare.TopStatements(ctx, blue, a.opts.Top)
		var ue *querycompare.UnavailableError
		switch {
		case errors.As(err, &ue) && len(fromFile) > 0:
			unavailable = ue.Error()
			log.Warn("comparing the --queries statements only", "reason", ue.Error())
		case err != nil:
			return &exitCodeError{code: exitError, err: err}
		}
		stmts = append(stmts, top...)
	}
	if len(stmts) == 0 {
		return &exitCodeError{code: exitError, err: errors.New("nothing to compare: blue's pg_stat_statements holds no statement of this database yet (let the application run, or give --queries FILE)")}
	}
	log.Info("comparing statements", "statements", len(stmts), "rounds", a.opts.Rounds)
	r, err := querycompare.Compare(ctx, querycompare.Pair{Blue: blue, Green: green, BlueAddr: env.Source.Redacted(), GreenAddr: env.Target.Redacted()}, stmts, a.opts, log)
	if err != nil {
		return &exitCodeError{code: exitError, err: err}
	}
	r.Name, r.StatStatements = s.Name, unavailable
	if err := renderComparison(cmd.OutOrStdout(), r, a.out.format); err != nil {
		return err
	}
	if n := r.Regressions(); n > 0 {
		return &exitCodeError{code: exitError, err: fmt.Errorf("green runs %s slower than blue beyond the thresholds: read the plans above (an index missing on green, statistics, a planner change), fix, and run %s again",
			words.Count(n, "statement"), commandLine("compare-queries", &a.spec))}
	}
	return nil
}

func renderComparison(w io.Writer, r *querycompare.Report, format string) error {
	switch format {
	case formatJSON:
		return querycompare.JSON(w, r)
	case formatMarkdown:
		return querycompare.Markdown(w, r)
	}
	return querycompare.Text(w, r)
}

// specOptions takes from the spec's compare_queries what no flag set: the
// spec holds the team's thresholds, a flag tries another for one run.
func specOptions(cmd *cobra.Command, a *compareQueriesArgs, s *spec.Spec) {
	cq := s.CompareQueries
	set := cmd.Flags().Changed
	if !set("top") {
		a.opts.Top = cq.Top
	}
	if !set("rounds") {
		a.opts.Rounds = cq.Rounds
	}
	if !set("max-ratio") {
		a.opts.MaxRatio = cq.MaxRatio
	}
	if !set("min-diff") {
		a.opts.MinDiff = time.Duration(cq.MinDiff)
	}
	if !set("statement-timeout") {
		a.opts.StatementTimeout = time.Duration(cq.StatementTimeout)
	}
	if !set("queries") && cq.QueriesFile != "" {
		a.queries = cq.QueriesFile
		if !filepath.IsAbs(a.queries) && s.File != "" {
			a.queries = filepath.Join(filepath.Dir(s.File), a.queries)
		}
	}
}
