package querycompare

import (
	"fmt"
	"io"
	"strings"
)

// MarkdownMarker opens the markdown report, so that CI updates its
// previous comment instead of adding another.
func MarkdownMarker(name string) string {
	return fmt.Sprintf("<!-- pgshift:compare-queries name=%s -->", name)
}

// Markdown renders the report for a change review: the summary first, a
// table worst first, then each statement that is not plainly ok with its
// plans folded in <details>.
func Markdown(w io.Writer, r *Report) error {
	var b strings.Builder
	b.WriteString(MarkdownMarker(r.Name) + "\n")
	fmt.Fprintf(&b, "### pgshift compare-queries: `%s`\n\n", r.Name)
	fmt.Fprintf(&b, "**blue** PostgreSQL %s (`%s`) → **green** PostgreSQL %s (`%s`)\n\n", r.Blue.Version, r.Blue.Address, r.Green.Version, r.Green.Address)
	fmt.Fprintf(&b, "**%s**\n\n", r.Summary())
	b.WriteString(r.settingsLine() + ".\n")
	for _, n := range r.notes() {
		b.WriteString("\n" + n + "\n")
	}
	if len(r.Results) > 0 {
		b.WriteString("\n| | statement | blue ms median (min–max) | green ms median (min–max) | ratio | buffers hit/read blue | green | plan |\n")
		b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, x := range r.Results {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", symbol(x), cell(title(x, 80)), timingCell(x.Blue.Timing), timingCell(x.Green.Timing),
				ratioCell(x), buffersCell(x.Blue.Timing), buffersCell(x.Green.Timing), planCell(x))
		}
		b.WriteString("\n" + r.legend() + "\n")
	}
	for _, x := range r.Results {
		if !detailed(x) {
			continue
		}
		fmt.Fprintf(&b, "\n#### %s %s\n\n", symbol(x), cell(title(x, 100)))
		fmt.Fprintf(&b, "%s, %s, from %s.", x.Status, x.Kind, origin(x))
		if x.Reason != "" {
			b.WriteString(" " + x.Reason + ".")
		}
		b.WriteString("\n\n")
		b.WriteString(fenced("sql", x.SQL))
		for _, d := range x.Differences {
			b.WriteString("- " + d + "\n")
		}
		for _, side := range []struct {
			name string
			s    Side
		}{{"blue", x.Blue}, {"green", x.Green}} {
			if side.s.Tree == "" {
				continue
			}
			fmt.Fprintf(&b, "\n<details><summary>%s plan (%s)</summary>\n\n%s\n</details>\n", side.name, side.s.Method, fenced("", side.s.Tree))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fenced is s in a code block whose fence s does not contain.
func fenced(lang, s string) string {
	fence := "```"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	return fence + lang + "\n" + strings.TrimRight(s, "\n") + "\n" + fence + "\n"
}

// cell is text fit for a table cell: one line, pipes escaped.
func cell(s string) string {
	return strings.ReplaceAll(oneLine(s, 80), "|", `\|`)
}
