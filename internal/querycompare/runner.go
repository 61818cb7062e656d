package querycompare

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgshift/pgshift/internal/pg"
)

// Pair is the two servers a comparison runs on, one dedicated connection
// each: the runner sets session state (transactions, prepared statements)
// that must not leak into a pool.
type Pair struct {
	Blue, Green         *pgx.Conn
	BlueAddr, GreenAddr string // redacted, for the report
}

// SQLSTATEs the runner tells apart.
const (
	sqlstateReadOnly      = "25006" // read_only_sql_transaction
	sqlstateQueryCanceled = "57014" // query_canceled: statement_timeout
)

// preparedName is the prepared statement of the generic-plan fallback.
const preparedName = "pgshift_compare_queries"

// Compare runs every statement on both servers and reports. Blue is only
// read: every statement runs there in a READ ONLY transaction that is
// rolled back, writes never. On green, tables never analyzed are
// ANALYZEd first (Options.Analyze), and writes run only with
// Options.AllowWrites, rolled back.
func Compare(ctx context.Context, p Pair, stmts []Statement, o Options, log hclog.Logger) (*Report, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	start := time.Now()
	quietStatStatements(ctx, p.Blue)
	bv, err := versionOf(ctx, p.Blue)
	if err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	gv, err := versionOf(ctx, p.Green)
	if err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	r := &Report{FormatVersion: 1, Blue: Server{Address: p.BlueAddr, Version: bv.String()}, Green: Server{Address: p.GreenAddr, Version: gv.String()},
		Options: ReportOptions{Top: o.Top, Rounds: o.Rounds, StatementTimeoutMS: o.StatementTimeout.Milliseconds(), MaxRatio: o.MaxRatio,
			MinDiffMS: float64(o.MinDiff) / float64(time.Millisecond), AllowWrites: o.AllowWrites},
		Analyzed: []string{}, Results: []Result{}}
	if o.Analyze {
		if r.Analyzed, err = AnalyzeNeverAnalyzed(ctx, p.Green, log); err != nil {
			return nil, err
		}
	}
	c := &comparer{p: p, o: o, blue: bv, green: gv, log: log}
	for i, s := range stmts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res := c.one(ctx, s)
		res.order = i
		log.Debug("compared", "statement", s.Name, "status", res.Status, "plan_changed", res.PlanChanged)
		r.Results = append(r.Results, res)
	}
	sortWorstFirst(r.Results)
	r.ElapsedSeconds = time.Since(start).Seconds()
	return r, nil
}

// versionOf reads a server's version with Marker, so that blue's
// pg_stat_statements leaves the query out.
func versionOf(ctx context.Context, conn *pgx.Conn) (pg.ServerVersion, error) {
	num, err := pg.Scalar[int](ctx, conn, Marker+"SELECT current_setting('server_version_num')::int")
	if err != nil {
		return pg.ServerVersion{}, fmt.Errorf("read server version: %w", err)
	}
	return pg.VersionFromNum(num), nil
}

// AnalyzeNeverAnalyzed runs ANALYZE on green's tables that have neither
// last_analyze nor last_autoanalyze: tables filled by the initial copy
// have no planner statistics yet, and any plan on them would be a guess.
// It returns the tables analyzed (schema.table).
func AnalyzeNeverAnalyzed(ctx context.Context, green *pgx.Conn, log hclog.Logger) ([]string, error) {
	rows, err := green.Query(ctx, Marker+`SELECT schemaname, relname FROM pg_stat_user_tables
		WHERE last_analyze IS NULL AND last_autoanalyze IS NULL ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("green: list the tables never analyzed: %w", err)
	}
	type table struct{ schema, name string }
	var tables []table
	for rows.Next() {
		var t table
		if err := rows.Scan(&t.schema, &t.name); err != nil {
			rows.Close()
			return nil, err
		}
		tables = append(tables, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("green: list the tables never analyzed: %w", err)
	}
	done := []string{}
	for _, t := range tables {
		name := pg.DisplayName(t.schema, t.name)
		if _, err := green.Exec(ctx, Marker+"ANALYZE "+pgx.Identifier{t.schema, t.name}.Sanitize()); err != nil {
			return done, fmt.Errorf("green: ANALYZE %s: %w (pgshift analyzes green's tables that were never analyzed, so that its plans are not guesses: run the ANALYZE as the table's owner, or pass --analyze=false)", name, err)
		}
		log.Info("analyzed a table never analyzed on green", "table", name)
		done = append(done, name)
	}
	return done, nil
}

type comparer struct {
	p           Pair
	o           Options
	blue, green pg.ServerVersion
	log         hclog.Logger
}

func kindName(k Kind) string {
	switch k {
	case KindRead:
		return "read"
	case KindWrite:
		return "write"
	}
	return "utility"
}

func (c *comparer) one(ctx context.Context, s Statement) Result {
	s.SQL = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s.SQL), ";"))
	res := Result{Statement: s}
	if s.SQL == "<insufficient privilege>" {
		res.Kind, res.Status = "utility", StatusSkipped
		res.Reason = "blue shows this statement's text only to superusers and members of pg_read_all_stats: GRANT pg_read_all_stats TO the spec's source user"
		return res
	}
	kind, kw := Classify(s.SQL)
	res.Kind = kindName(kind)
	semicolons := 0
	scanSQL(s.SQL, nil, func(int) { semicolons++ })
	if semicolons > 0 && kind != KindUtility {
		res.Status = StatusNotComparable
		res.Reason = "several statements in one: give each its own entry"
		return res
	}
	if kind == KindUtility {
		res.Status = StatusSkipped
		if kw == "" {
			res.Reason = "not plannable: no statement"
		} else {
			res.Reason = fmt.Sprintf("not plannable: %s is a utility statement (DDL, COPY, SET, transaction control, ...), which EXPLAIN cannot plan", strings.ToUpper(kw))
		}
		return res
	}
	if Placeholders(s.SQL) > 0 && len(s.Params) == 0 {
		return c.generic(ctx, res)
	}
	if f := SideEffect(s.SQL); f != "" {
		return c.planOnly(ctx, res, fmt.Sprintf("calls %s, whose effect a rollback does not undo: planned on both sides, never run", f))
	}
	if kind == KindWrite {
		return c.write(ctx, res)
	}
	return c.read(ctx, res)
}

// read times a reading statement on both sides, rounds interleaved.
func (c *comparer) read(ctx context.Context, res Result) Result {
	var blueRuns, greenRuns []run
	var blueLast, greenLast *Explained
	for round := 1; round <= c.o.Rounds; round++ {
		e, err := c.explain(ctx, c.p.Blue, res.Statement, true, true)
		if err != nil {
			if isCode(err, sqlstateReadOnly) {
				return c.write(ctx, res) // a data-modifying CTE, a SELECT ... FOR UPDATE, a function that writes
			}
			res.Status = StatusNotComparable
			if isCode(err, sqlstateQueryCanceled) {
				res.Reason = fmt.Sprintf("blue ran past the statement timeout of %s in round %d: nothing to compare green with (raise --statement-timeout)", c.o.StatementTimeout, round)
			} else {
				res.Reason = "blue: " + err.Error()
			}
			res.Blue.Error = err.Error()
			return res
		}
		blueRuns, blueLast = append(blueRuns, runOf(e)), e
		e, err = c.explain(ctx, c.p.Green, res.Statement, true, true)
		if err != nil {
			res.Blue = c.side("EXPLAIN ANALYZE", blueLast, blueRuns, true)
			res.Green.Method, res.Green.Error = "EXPLAIN ANALYZE", err.Error()
			if isCode(err, sqlstateQueryCanceled) {
				res.Status = StatusRegression
				res.Reason = fmt.Sprintf("green ran past the statement timeout of %s in round %d, where blue took %.3f ms", c.o.StatementTimeout, round, blueRuns[len(blueRuns)-1].exec)
				// Green's plan without running it, to show what it chose.
				if e, perr := c.explain(ctx, c.p.Green, res.Statement, false, true); perr == nil {
					res.Green.Tree, res.Green.Plan = e.Plan.Tree(false), e.Raw
					c.shapes(&res, blueLast, e)
				}
				return res
			}
			res.Status = StatusNotComparable
			res.Reason = "green: " + err.Error()
			return res
		}
		greenRuns, greenLast = append(greenRuns, runOf(e)), e
	}
	res.Blue = c.side("EXPLAIN ANALYZE", blueLast, blueRuns, true)
	res.Green = c.side("EXPLAIN ANALYZE", greenLast, greenRuns, true)
	c.shapes(&res, blueLast, greenLast)
	ratio, regression := Decide(res.Blue.Timing.MedianMS, res.Green.Timing.MedianMS, c.o)
	diff := res.Green.Timing.MedianMS - res.Blue.Timing.MedianMS
	res.Ratio, res.DiffMS = &ratio, &diff
	res.Status = StatusOK
	if regression {
		res.Status = StatusRegression
		res.Reason = fmt.Sprintf("green's median is %.2fx blue's (over %.2gx) and %.3f ms slower (over %s)", ratio, c.o.MaxRatio, diff, c.o.MinDiff)
	}
	return res
}

// write explains a writing statement on blue without running it, and on
// green runs it (with AllowWrites) in a transaction that is rolled back.
func (c *comparer) write(ctx context.Context, res Result) Result {
	res.Kind = "write"
	if !c.o.AllowWrites {
		return c.planOnly(ctx, res, "writes: planned on both sides without running; --allow-writes times it on green (in a transaction rolled back; blue never runs writes)")
	}
	b, err := c.explain(ctx, c.p.Blue, res.Statement, false, true)
	if err != nil {
		res.Status, res.Reason, res.Blue = StatusNotComparable, "blue: "+err.Error(), Side{Method: "EXPLAIN", Error: err.Error()}
		return res
	}
	res.Blue = c.side("EXPLAIN", b, nil, false)
	var runs []run
	var last *Explained
	for round := 1; round <= c.o.Rounds; round++ {
		g, err := c.explain(ctx, c.p.Green, res.Statement, true, false)
		if err != nil {
			res.Status, res.Reason = StatusNotComparable, "green: "+err.Error()
			res.Green.Method, res.Green.Error = "EXPLAIN ANALYZE", err.Error()
			return res
		}
		runs, last = append(runs, runOf(g)), g
	}
	res.Green = c.side("EXPLAIN ANALYZE", last, runs, true)
	c.shapes(&res, b, last)
	res.Status = StatusPlanOnly
	res.Reason = "writes: timed on green only (rolled back), planned on blue without running: blue never runs writes"
	return res
}

// planOnly compares the plans of a statement that is not to run, EXPLAIN
// without ANALYZE on both sides.
func (c *comparer) planOnly(ctx context.Context, res Result, why string) Result {
	b, err := c.explain(ctx, c.p.Blue, res.Statement, false, true)
	if err != nil {
		res.Status, res.Reason, res.Blue = StatusNotComparable, "blue: "+err.Error()+" ("+why+")", Side{Method: "EXPLAIN", Error: err.Error()}
		return res
	}
	res.Blue = c.side("EXPLAIN", b, nil, false)
	g, err := c.explain(ctx, c.p.Green, res.Statement, false, true)
	if err != nil {
		res.Status, res.Reason, res.Green = StatusNotComparable, "green: "+err.Error()+" ("+why+")", Side{Method: "EXPLAIN", Error: err.Error()}
		return res
	}
	res.Green = c.side("EXPLAIN", g, nil, false)
	c.shapes(&res, b, g)
	res.Status, res.Reason = StatusPlanOnly, why
	return res
}

// generic compares the generic plans of a statement with placeholders and
// no values: EXPLAIN (GENERIC_PLAN) on 16 and later; before, a PREPARE
// planned with plan_cache_mode = force_generic_plan (12 and later).
func (c *comparer) generic(ctx context.Context, res Result) Result {
	why := "no parameter values (pg_stat_statements keeps none): compared by generic plan, not timed; to time it, add it to --queries with params"
	b, bm, berr := c.genericPlan(ctx, c.p.Blue, c.blue, res.SQL)
	g, gm, gerr := c.genericPlan(ctx, c.p.Green, c.green, res.SQL)
	if b != nil {
		res.Blue = c.side(bm, b, nil, false)
	}
	if g != nil {
		res.Green = c.side(gm, g, nil, false)
	}
	switch {
	case berr != nil && gerr != nil:
		res.Status, res.Reason = StatusNotComparable, fmt.Sprintf("no generic plan on either side: blue: %v; green: %v", berr, gerr)
		res.Blue.Error, res.Green.Error = berr.Error(), gerr.Error()
	case berr != nil:
		res.Status, res.Reason, res.Blue.Error = StatusNotComparable, fmt.Sprintf("blue: %v; green's generic plan is shown alone", berr), berr.Error()
	case gerr != nil:
		res.Status, res.Reason, res.Green.Error = StatusNotComparable, "green: "+gerr.Error(), gerr.Error()
	default:
		c.shapes(&res, b, g)
		res.Status, res.Reason = StatusPlanOnly, why
	}
	return res
}

// genericPlan is a server's generic plan of sql and how it was obtained.
func (c *comparer) genericPlan(ctx context.Context, conn *pgx.Conn, v pg.ServerVersion, sql string) (*Explained, string, error) {
	switch {
	case v.Major >= 16:
		const method = "EXPLAIN (GENERIC_PLAN)"
		var out []byte
		err := c.inTx(ctx, conn, true, func(ctx context.Context) error {
			res, err := conn.PgConn().Exec(ctx, Marker+"EXPLAIN (GENERIC_PLAN, FORMAT JSON) "+sql).ReadAll()
			if err != nil {
				return err
			}
			if len(res) != 1 || len(res[0].Rows) != 1 {
				return fmt.Errorf("EXPLAIN gave %d results: send one statement", len(res))
			}
			out = res[0].Rows[0][0]
			return nil
		})
		if err != nil {
			return nil, method, err
		}
		e, err := ParseExplain(out)
		return e, method, err
	case v.Major >= 12:
		const method = "PREPARE + plan_cache_mode=force_generic_plan"
		var out []byte
		err := c.inTx(ctx, conn, true, func(ctx context.Context) error {
			if _, err := conn.Exec(ctx, Marker+"SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
				return err
			}
			// PREPARE outlives the rolled-back transaction: dropped right after.
			if _, err := conn.PgConn().Exec(ctx, Marker+"PREPARE "+preparedName+" AS "+sql).ReadAll(); err != nil {
				return err
			}
			defer func() {
				_, _ = conn.PgConn().Exec(context.WithoutCancel(ctx), Marker+"DEALLOCATE "+preparedName).ReadAll()
			}()
			n, err := pg.Scalar[int](ctx, conn, Marker+"SELECT coalesce(cardinality(parameter_types), 0) FROM pg_prepared_statements WHERE name = $1", preparedName)
			if err != nil {
				return err
			}
			args := strings.TrimSuffix(strings.Repeat("NULL, ", n), ", ")
			res, err := conn.PgConn().Exec(ctx, Marker+"EXPLAIN (FORMAT JSON) EXECUTE "+preparedName+"("+args+")").ReadAll()
			if err != nil {
				return err
			}
			if len(res) != 1 || len(res[0].Rows) != 1 {
				return fmt.Errorf("EXPLAIN EXECUTE gave %d results", len(res))
			}
			out = res[0].Rows[0][0]
			return nil
		})
		if err != nil {
			return nil, method, err
		}
		e, err := ParseExplain(out)
		return e, method, err
	}
	return nil, "", fmt.Errorf("PostgreSQL %s cannot plan a statement without its values: EXPLAIN (GENERIC_PLAN) came in 16, plan_cache_mode in 12", v)
}

// explain runs EXPLAIN of a statement with its values in a transaction
// that is rolled back, READ ONLY unless readOnly is false, under the
// statement timeout; analyze runs it (ANALYZE, BUFFERS).
func (c *comparer) explain(ctx context.Context, conn *pgx.Conn, s Statement, analyze, readOnly bool) (*Explained, error) {
	opts := "FORMAT JSON"
	if analyze {
		opts = "ANALYZE, BUFFERS, FORMAT JSON"
	}
	args := []any{pgx.QueryExecModeExec}
	for _, p := range s.Params {
		if p == nil {
			args = append(args, nil)
		} else {
			args = append(args, *p)
		}
	}
	var out string
	err := c.inTx(ctx, conn, readOnly, func(ctx context.Context) error {
		return conn.QueryRow(ctx, Marker+"EXPLAIN ("+opts+") "+s.SQL, args...).Scan(&out)
	})
	if err != nil {
		return nil, err
	}
	return ParseExplain([]byte(out))
}

// inTx runs f in a transaction with the statement timeout set locally,
// and always rolls it back.
func (c *comparer) inTx(ctx context.Context, conn *pgx.Conn, readOnly bool, f func(context.Context) error) error {
	// The server's timeout ends a slow statement; the context's, a bit
	// longer, ends a run whose server does not answer at all.
	ctx, cancel := context.WithTimeout(ctx, c.o.StatementTimeout+30*time.Second)
	defer cancel()
	begin := "BEGIN"
	if readOnly {
		begin = "BEGIN READ ONLY"
	}
	if _, err := conn.Exec(ctx, Marker+begin); err != nil {
		return err
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer rcancel()
		_, _ = conn.Exec(rctx, Marker+"ROLLBACK")
	}()
	if _, err := conn.Exec(ctx, Marker+"SELECT set_config('statement_timeout', $1, true)", strconv.FormatInt(c.o.StatementTimeout.Milliseconds(), 10)); err != nil {
		return err
	}
	return f(ctx)
}

// side is one server's part of a result.
func (c *comparer) side(method string, e *Explained, runs []run, analyzed bool) Side {
	s := Side{Method: method, Plan: e.Raw, Tree: e.Plan.Tree(analyzed)}
	if len(runs) > 0 {
		t := summarize(runs)
		s.Timing = &t
	}
	return s
}

// shapes fills the plan shapes and their differences.
func (c *comparer) shapes(res *Result, blue, green *Explained) {
	b, g := ShapeOf(blue.Plan), ShapeOf(green.Plan)
	res.Blue.Shape, res.Green.Shape = &b, &g
	res.Differences = Differences(b, g)
	res.PlanChanged = len(res.Differences) > 0
}

func runOf(e *Explained) run {
	return run{exec: e.ExecutionTime, planning: e.PlanningTime, hit: e.Plan.SharedHitBlocks, read: e.Plan.SharedReadBlocks}
}

func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}
