package plans

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// fleetPlans are n plans: the sample plan (2 blockers) for every seventh
// (3, 10, ...: 14 of 100), the sample without its last three steps (no
// blocker) for the others, every fifth one doubled (the largest).
func fleetPlans(n int) []*Plan {
	var ps []*Plan
	for i := range n {
		p := samplePlan()
		p.Name = fmt.Sprintf("db%03d-pg17", i)
		if i%7 != 3 {
			p.Steps = p.Steps[:len(p.Steps)-3] // no blocker
		}
		if i%5 == 0 {
			p.Steps = append(p.Steps, p.Steps...)
		}
		ps = append(ps, p)
	}
	return ps
}

func TestFleetMarkdownFitsAComment(t *testing.T) {
	ps := fleetPlans(100)
	var b strings.Builder
	if err := FleetMarkdown(&b, ps, FleetMarkdownOptions{Inventory: "fleet.inventory.yaml", OneCommand: "pgshift plan -f fleet.yaml --inventory fleet.inventory.yaml --only NAME"}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if n := utf8.RuneCountInString(out); n > CommentLimit {
		t.Fatalf("the fleet plan takes %d characters, over GitHub's %d", n, CommentLimit)
	}
	if !strings.HasPrefix(out, FleetMarker("fleet.inventory.yaml")+"\n### pgshift fleet plan: 100 databases\n") {
		t.Errorf("no marker and title:\n%.300s", out)
	}
	// Every database has its row, with its counts.
	for _, p := range ps {
		row := fmt.Sprintf("| `%s`", p.Name)
		if !strings.Contains(out, row) {
			t.Errorf("no row for %s", p.Name)
		}
	}
	if !strings.Contains(out, "| `db003-pg17` ✗ | 2 | 1 | 1 | 1 | 1 | 2 |") {
		t.Errorf("the row of a plan with blockers:\n%s", rowOf(out, "db003-pg17"))
	}
	// Folded: some details are left out, and a line names them and the way to see one.
	folded := strings.Count(out, "<details>")
	if folded == 0 || folded == 100 {
		t.Fatalf("%d plans folded in <details>, want some but not all", folded)
	}
	if !strings.Contains(out, fmt.Sprintf("> The plans of %d databases are left out to keep this comment within GitHub's 65536 characters (the largest first): ", 100-folded)) ||
		!strings.Contains(out, "see one with `pgshift plan -f fleet.yaml --inventory fleet.inventory.yaml --only NAME`") {
		t.Errorf("no line saying which plans are left out")
	}
	// The largest lose their details first; plans with blockers keep theirs.
	for i, p := range ps {
		has := strings.Contains(out, "<details><summary><code>"+p.Name+"</code>")
		if p.Summarize().Blockers > 0 && !has {
			t.Errorf("%s has blockers and lost its details", p.Name)
		}
		if i%5 == 0 && p.Summary.Blockers == 0 && has {
			t.Errorf("%s, one of the largest, kept its details while others lost theirs", p.Name)
		}
	}
	if !strings.Contains(out, "**Fleet: 240 to create, 120 to change, 17 to destroy. 120 warnings, 34 blockers (in 14 databases). 17 not inspected.**") {
		t.Errorf("the fleet's totals:\n%s", lineWith(out, "**Fleet:"))
	}
}

func TestFleetMarkdownSmallKeepsEverything(t *testing.T) {
	var b strings.Builder
	FleetMarkdown(&b, fleetPlans(3), FleetMarkdownOptions{Inventory: "inv.yaml"})
	out := b.String()
	if strings.Count(out, "<details>") != 3 || strings.Contains(out, "left out") {
		t.Errorf("3 plans: want all three folded, none left out:\n%s", out)
	}
	// A folded plan has its own steps, without its own marker.
	if strings.Contains(out, MarkdownMarker("db000-pg17")) || !strings.Contains(out, "```diff\n") {
		t.Errorf("folded plan body:\n%s", out)
	}
}

func TestFleetMarkdownCutsTheTable(t *testing.T) {
	var b strings.Builder
	FleetMarkdown(&b, fleetPlans(40), FleetMarkdownOptions{Inventory: "inv.yaml", Limit: 2000})
	out := b.String()
	if len(out) > 2000 || strings.Contains(out, "<details>") || !strings.Contains(out, "more: the table is cut to stay within GitHub's 2000 characters") {
		t.Errorf("a table past the limit (%d bytes):\n%s", len(out), out)
	}
}

func rowOf(out, name string) string { return lineWith(out, "| `"+name+"`") }

func lineWith(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
