package querycompare

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// symbol is a result's mark in text and markdown: ✗ regression, ! plan
// changed, ✓ same plan and within the thresholds, ? not comparable, -
// skipped.
func symbol(r Result) string {
	switch {
	case r.Status == StatusRegression:
		return "✗"
	case r.PlanChanged:
		return "!"
	case r.Status == StatusOK || r.Status == StatusPlanOnly:
		return "✓"
	case r.Status == StatusNotComparable:
		return "?"
	}
	return "-"
}

var legendWords = []struct{ sym, word string }{
	{"✗", "regression"}, {"!", "plan changed"}, {"✓", "same plan, within the thresholds"}, {"?", "not comparable"}, {"-", "skipped"},
}

// legend lists only the symbols the report uses.
func (r *Report) legend() string {
	used := map[string]bool{}
	for _, x := range r.Results {
		used[symbol(x)] = true
	}
	var parts []string
	for _, l := range legendWords {
		if used[l.sym] {
			parts = append(parts, l.sym+" "+l.word)
		}
	}
	return strings.Join(parts, "   ")
}

func (r *Report) header() string {
	return fmt.Sprintf("pgshift compare-queries: %s   blue PostgreSQL %s -> green PostgreSQL %s", r.Name, r.Blue.Version, r.Green.Version)
}

func (r *Report) settingsLine() string {
	return fmt.Sprintf("%d rounds each, statement timeout %s; a regression is green's median over %.2gx blue's and more than %s slower",
		r.Options.Rounds, time.Duration(r.Options.StatementTimeoutMS)*time.Millisecond, r.Options.MaxRatio,
		time.Duration(r.Options.MinDiffMS*float64(time.Millisecond)))
}

// notes are the facts above the table: what was analyzed, what could not be read.
func (r *Report) notes() []string {
	var out []string
	if len(r.Analyzed) > 0 {
		out = append(out, fmt.Sprintf("ANALYZEd on green first (never analyzed): %s", strings.Join(r.Analyzed, ", ")))
	}
	if r.StatStatements != "" {
		out = append(out, "pg_stat_statements not read: "+r.StatStatements)
	}
	return out
}

// Summary is the closing line: counts per outcome.
func (r *Report) Summary() string {
	if len(r.Results) == 0 {
		return "No statements compared."
	}
	parts := []string{plural(r.Regressions(), "regression")}
	for _, s := range []struct {
		st   Status
		word string
	}{{StatusOK, "ok"}, {StatusPlanOnly, "compared by plan only"}, {StatusNotComparable, "not comparable"}, {StatusSkipped, "skipped"}} {
		if n := r.Count(s.st); n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s.word))
		}
	}
	return fmt.Sprintf("%d statements: %s; %s.", len(r.Results), strings.Join(parts, ", "), plural(r.PlanChanges(), "plan change"))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// timingCell is "median (min–max)" in ms, or "-" when not timed.
func timingCell(t *Timing) string {
	if t == nil {
		return "-"
	}
	return fmt.Sprintf("%s (%s–%s)", ms(t.MedianMS), ms(t.MinMS), ms(t.MaxMS))
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

func ratioCell(r Result) string {
	if r.Ratio == nil {
		return "-"
	}
	return fmt.Sprintf("%.2fx", *r.Ratio)
}

func buffersCell(t *Timing) string {
	if t == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%d", t.SharedHit, t.SharedRead)
}

func planCell(r Result) string {
	switch {
	case r.PlanChanged:
		return "changed"
	case r.Blue.Shape != nil && r.Green.Shape != nil:
		return "same"
	}
	return "-"
}

// detailed says whether a result gets a section after the table: what
// regressed, changed plan, could not be compared or was skipped.
func detailed(r Result) bool {
	return r.Status == StatusRegression || r.PlanChanged || r.Status == StatusNotComparable || r.Status == StatusSkipped
}

// title names a result in the table: a file's statement by its name,
// pg_stat_statements' by its text (its queryid says nothing to a reader).
func title(r Result, max int) string {
	if r.Origin == FromStatStatements {
		return oneLine(r.SQL, max)
	}
	return oneLine(r.Name, max)
}

// Text renders the report for a terminal: a table of every statement,
// worst first, then a section for each that is not plainly ok.
func Text(w io.Writer, r *Report) error {
	var b strings.Builder
	b.WriteString(r.header() + "\n")
	b.WriteString(r.settingsLine() + "\n")
	for _, n := range r.notes() {
		b.WriteString(n + "\n")
	}
	b.WriteString("\n")
	if len(r.Results) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  \tSTATEMENT\tBLUE ms median (min–max)\tGREEN ms median (min–max)\tRATIO\tBUFFERS hit/read blue\tgreen\tPLAN")
		for _, x := range r.Results {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", symbol(x), title(x, 48), timingCell(x.Blue.Timing), timingCell(x.Green.Timing),
				ratioCell(x), buffersCell(x.Blue.Timing), buffersCell(x.Green.Timing), planCell(x))
		}
		tw.Flush()
		b.WriteString("  " + r.legend() + "\n")
	}
	for _, x := range r.Results {
		if !detailed(x) {
			continue
		}
		fmt.Fprintf(&b, "\n%s %s (%s, %s)\n", symbol(x), title(x, 100), origin(x), x.Status)
		b.WriteString(indent(oneLine(x.SQL, 300), "    ") + "\n")
		if x.Reason != "" {
			b.WriteString(indent(x.Reason, "    ") + "\n")
		}
		for _, d := range x.Differences {
			b.WriteString("    plan: " + d + "\n")
		}
		if x.PlanChanged || x.Status == StatusRegression {
			for _, side := range []struct {
				name string
				s    Side
			}{{"blue", x.Blue}, {"green", x.Green}} {
				if side.s.Tree == "" {
					continue
				}
				fmt.Fprintf(&b, "    %s plan (%s):\n", side.name, side.s.Method)
				b.WriteString(indent(strings.TrimRight(side.s.Tree, "\n"), "      ") + "\n")
			}
		}
	}
	b.WriteString("\n" + r.Summary() + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// origin is where a result's statement came from, with its queryid.
func origin(r Result) string {
	if r.Origin == FromStatStatements {
		return fmt.Sprintf("pg_stat_statements queryid %d", r.QueryID)
	}
	return string(r.Origin)
}

func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(prefix+l, " ")
	}
	return strings.Join(lines, "\n")
}
