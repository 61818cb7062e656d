package querycompare

import (
	"cmp"
	"encoding/json"
	"slices"
)

// Status is a statement's outcome.
type Status string

const (
	// StatusRegression: green is slower beyond both thresholds, or ran
	// past the statement timeout where blue did not.
	StatusRegression Status = "regression"
	// StatusOK: timed on both sides, within the thresholds.
	StatusOK Status = "ok"
	// StatusPlanOnly: compared by plan shape only, not timed on both sides
	// (no parameter values: generic plans; or a write, never run on blue).
	StatusPlanOnly Status = "plan-only"
	// StatusNotComparable: a side could not plan or run it (the reason says which and why).
	StatusNotComparable Status = "not-comparable"
	// StatusSkipped: not plannable (utility statements, DDL, COPY, SET, ...).
	StatusSkipped Status = "skipped"
)

// Server is one side as the report names it: the address without
// password and the version.
type Server struct {
	Address string `json:"address"`
	Version string `json:"version"`
}

// Side is what one server gave for a statement.
type Side struct {
	// Method is how the plan was obtained: "EXPLAIN ANALYZE", "EXPLAIN",
	// "EXPLAIN (GENERIC_PLAN)" or "PREPARE + plan_cache_mode=force_generic_plan".
	Method string  `json:"method,omitempty"`
	Timing *Timing `json:"timing,omitempty"`
	// Plan is the EXPLAIN JSON of the last run, as the server printed it.
	Plan json.RawMessage `json:"plan,omitempty"`
	// Tree is the plan as indented lines.
	Tree  string `json:"tree,omitempty"`
	Shape *Shape `json:"shape,omitempty"`
	Error string `json:"error,omitempty"`
}

// Result is one statement's comparison.
type Result struct {
	Statement
	Kind   string `json:"kind"` // read, write, utility
	Status Status `json:"status"`
	// Reason says why a statement is a regression, plan-only, not
	// comparable or skipped, in words.
	Reason      string   `json:"reason,omitempty"`
	Ratio       *float64 `json:"ratio,omitempty"`       // green median / blue median, when both are timed
	DiffMS      *float64 `json:"diff_ms,omitempty"`     // green median - blue median
	PlanChanged bool     `json:"plan_changed"`          // the shapes differ
	Differences []string `json:"differences,omitempty"` // how green's shape differs from blue's
	Blue        Side     `json:"blue"`
	Green       Side     `json:"green"`

	order int // position in the input, to keep ties stable
}

// ReportOptions are the options a report was made with, as it shows them.
type ReportOptions struct {
	Top                int     `json:"top"`
	Rounds             int     `json:"rounds"`
	StatementTimeoutMS int64   `json:"statement_timeout_ms"`
	MaxRatio           float64 `json:"max_ratio"`
	MinDiffMS          float64 `json:"min_diff_ms"`
	AllowWrites        bool    `json:"allow_writes"`
}

// Report is a whole comparison; renderers read nothing else.
type Report struct {
	FormatVersion int           `json:"format_version"`
	Name          string        `json:"name"`
	Blue          Server        `json:"blue"`
	Green         Server        `json:"green"`
	Options       ReportOptions `json:"options"`
	// StatStatements is why blue's pg_stat_statements gave nothing, when
	// it did not ("" when it was read).
	StatStatements string `json:"pg_stat_statements_unavailable,omitempty"`
	// Analyzed are green's tables that had never been analyzed, ANALYZEd
	// before the runs.
	Analyzed       []string `json:"analyzed_on_green"`
	Results        []Result `json:"statements"`
	ElapsedSeconds float64  `json:"elapsed_seconds"`
}

// Count is how many results have a status.
func (r *Report) Count(s Status) int {
	n := 0
	for _, x := range r.Results {
		if x.Status == s {
			n++
		}
	}
	return n
}

// PlanChanges is how many statements changed plan shape.
func (r *Report) PlanChanges() int {
	n := 0
	for _, x := range r.Results {
		if x.PlanChanged {
			n++
		}
	}
	return n
}

// Regressions is Count(StatusRegression): what makes the command exit 1.
func (r *Report) Regressions() int { return r.Count(StatusRegression) }

// statusRank orders the report: regressions, then what changed plan,
// then the rest by status.
var statusRank = map[Status]int{StatusRegression: 0, StatusOK: 1, StatusPlanOnly: 2, StatusNotComparable: 3, StatusSkipped: 4}

// sortWorstFirst orders results: regressions first, then plan changes,
// then by status; within each, the highest ratio first; ties in input order.
func sortWorstFirst(rs []Result) {
	key := func(r Result) [3]int {
		k := [3]int{1, 1, statusRank[r.Status]}
		if r.Status == StatusRegression {
			k[0] = 0
		}
		if r.PlanChanged {
			k[1] = 0
		}
		return k
	}
	slices.SortStableFunc(rs, func(a, b Result) int {
		ka, kb := key(a), key(b)
		if c := slices.Compare(ka[:], kb[:]); c != 0 {
			return c
		}
		if c := cmp.Compare(ratioOf(b), ratioOf(a)); c != 0 {
			return c
		}
		return cmp.Compare(a.order, b.order)
	})
}

func ratioOf(r Result) float64 {
	if r.Ratio == nil {
		return 0
	}
	return *r.Ratio
}
