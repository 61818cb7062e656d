package plans

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/pgshift/pgshift/internal/words"
)

// CommentLimit is the most characters GitHub takes in a pull request
// comment: a fleet plan in markdown stays within it.
const CommentLimit = 65536

// FleetMarker is the hidden comment that opens a fleet plan in markdown,
// naming the inventory, so that CI updates its comment in place.
func FleetMarker(inventory string) string {
	return fmt.Sprintf("<!-- pgshift:fleet-plan inventory=%s -->", strings.ReplaceAll(inventory, "--", "- -"))
}

// FleetMarkdownOptions tune FleetMarkdown.
type FleetMarkdownOptions struct {
	Inventory string // the inventory file, as the user named it
	// Limit is the most bytes the whole comment may take (0: CommentLimit).
	// Bytes, not characters: a byte count within it is a character count
	// within it.
	Limit int
	// OneCommand is how to see one database's plan, with NAME for its name
	// ("pgshift plan -f fleet.yaml --inventory inv.yaml --only NAME").
	OneCommand string
}

// FleetMarkdown writes the plans of an inventory as one pull request
// comment: a summary table (each database's counts), the fleet's totals,
// then each database's plan folded in <details>. When the whole would pass
// the limit, the largest plans lose their details first (plans with
// blockers last), and a line says which and how to see them; when even the
// table would pass it, its last rows are left out, and a line says so.
func FleetMarkdown(w io.Writer, ps []*Plan, opts FleetMarkdownOptions) error {
	limit := opts.Limit
	if limit <= 0 {
		limit = CommentLimit
	}
	var total Summary
	for _, p := range ps {
		s := p.Summarize()
		total.Create += s.Create
		total.Change += s.Change
		total.Destroy += s.Destroy
		total.InPlace += s.InPlace
		total.Uninspected += s.Uninspected
		total.Warnings += s.Warnings
		total.Blockers += s.Blockers
	}
	withBlockers := 0
	for _, p := range ps {
		if p.Summary.Blockers > 0 {
			withBlockers++
		}
	}

	var head strings.Builder
	head.WriteString(FleetMarker(opts.Inventory) + "\n")
	fmt.Fprintf(&head, "### pgshift fleet plan: %s\n\n", words.Count(len(ps), "database"))
	if len(ps) > 0 && ps[0].Offline {
		head.WriteString("> Offline plan: no database was read; each step shows what it would do.\n\n")
	}
	rows := make([]string, len(ps))
	for i, p := range ps {
		s := p.Summary
		mark := ""
		if s.Blockers > 0 {
			mark = " ✗"
		}
		rows[i] = fmt.Sprintf("| `%s`%s | %d | %d | %d | %d | %d | %d |\n", p.Name, mark, s.Create, s.Change, s.Destroy, s.Uninspected, s.Warnings, s.Blockers)
	}
	const tableHead = "| database | create | change | destroy | not inspected | warnings | blockers |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
	totals := fmt.Sprintf("\n**Fleet: %d to create, %d to change, %d to destroy. %s, %s",
		total.Create, total.Change, total.Destroy, words.Count(total.Warnings, "warning"), words.Count(total.Blockers, "blocker"))
	if withBlockers > 0 {
		totals += fmt.Sprintf(" (in %s)", words.Count(withBlockers, "database"))
	}
	totals += "."
	if total.Uninspected > 0 {
		totals += fmt.Sprintf(" %d not inspected.", total.Uninspected)
	}
	totals += "**\n\n"

	details := make([]string, len(ps))
	for i, p := range ps {
		details[i] = foldedPlan(p)
	}
	size := func(keep []bool, tableRows int, notes string) int {
		n := head.Len() + len(tableHead) + len(totals) + len(notes)
		for i := range tableRows {
			n += len(rows[i])
		}
		for i, k := range keep {
			if k {
				n += len(details[i])
			}
		}
		return n
	}

	keep := make([]bool, len(ps))
	for i := range keep {
		keep[i] = true
	}
	// Which to fold first: the largest, those without blockers before those with.
	order := make([]int, len(ps))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ba, bb := ps[a].Summary.Blockers > 0, ps[b].Summary.Blockers > 0
		if ba != bb {
			if ba {
				return 1
			}
			return -1
		}
		return cmp.Compare(len(details[b]), len(details[a]))
	})
	var dropped []string
	notes := func() string {
		if len(dropped) == 0 {
			return ""
		}
		see := ""
		if opts.OneCommand != "" {
			see = "; see one with `" + strings.ReplaceAll(opts.OneCommand, "`", "'") + "`"
		}
		return fmt.Sprintf("> The plans of %s are left out to keep this comment within GitHub's %d characters (the largest first): %s%s.\n\n",
			words.Count(len(dropped), "database"), limit, strings.Join(dropped, ", "), see)
	}
	for _, i := range order {
		if size(keep, len(rows), notes()) <= limit {
			break
		}
		keep[i] = false
		dropped = append(dropped, "`"+ps[i].Name+"`")
	}
	tableRows := len(rows)
	cut := ""
	for tableRows > 0 && size(keep, tableRows, notes()+cut) > limit {
		tableRows--
		cut = fmt.Sprintf("| … %s more: the table is cut to stay within GitHub's %d characters | | | | | | |\n", words.Count(len(rows)-tableRows, "database"), limit)
	}

	var b strings.Builder
	b.WriteString(head.String())
	b.WriteString(tableHead)
	for i := range tableRows {
		b.WriteString(rows[i])
	}
	b.WriteString(cut)
	b.WriteString(totals)
	b.WriteString(notes())
	for i, k := range keep {
		if k {
			b.WriteString(details[i])
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// foldedPlan is one database's markdown plan in a <details> block, its
// summary line as the block's title.
func foldedPlan(p *Plan) string {
	var one strings.Builder
	_ = p.Markdown(&one)
	body := one.String()
	// The marker and the title are the fleet's; the rest is the plan.
	if i := strings.Index(body, "\n### "); i >= 0 && strings.HasPrefix(body, "<!--") {
		if j := strings.Index(body[i+1:], "\n"); j >= 0 {
			body = body[i+1+j+1:]
		}
	}
	return fmt.Sprintf("<details><summary><code>%s</code>: %s</summary>\n\n%s\n</details>\n\n", p.Name, htmlEscape(p.SummaryLine()), strings.TrimSpace(body))
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
