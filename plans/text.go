package plans

import (
	"fmt"
	"io"
	"strings"

	"github.com/pgshift/pgshift/internal/words"
)

// TextOptions tunes the text renderer.
type TextOptions struct {
	// Color adds ANSI colour to symbols. The CLI sets it only when stdout is
	// a terminal and neither --no-color nor NO_COLOR says otherwise.
	Color bool
}

// Header is the plan's first line: the spec's name and both servers.
func (p *Plan) Header() string {
	return fmt.Sprintf("pgshift plan: %s   blue %s -> green %s", p.Name, p.Blue.describe(), p.Green.describe())
}

func (s Server) describe() string {
	if s.Version != "" {
		return "PostgreSQL " + s.Version
	}
	if s.Address != "" {
		return s.Address
	}
	return "(not inspected)"
}

// SummaryLine is the plan's closing line. An empty plan says so in words.
func (p *Plan) SummaryLine() string {
	s := p.Summarize()
	if len(p.Steps) == 0 {
		return "No changes. The spec calls for no steps."
	}
	if s.Empty() {
		return "No changes. blue and green already match the spec."
	}
	line := fmt.Sprintf("Plan: %d to create, %d to change, %d to destroy. %s, %s.",
		s.Create, s.Change, s.Destroy, words.Count(s.Warnings, "warning"), words.Count(s.Blockers, "blocker"))
	if s.Uninspected > 0 {
		line += fmt.Sprintf(" %d not inspected.", s.Uninspected)
	}
	return line
}

// Legend lists only the symbols the plan uses.
func (p *Plan) Legend() string {
	used := map[Action]bool{}
	for _, st := range p.Steps {
		used[st.Action] = true
		if len(st.Warnings) > 0 {
			used[ActionWarning] = true
		}
		if len(st.Blockers) > 0 || failedPreconditions(st.Preconditions) > 0 {
			used[ActionBlocker] = true
		}
	}
	var parts []string
	for _, a := range legendOrder {
		if used[a] {
			parts = append(parts, Symbol(a)+" "+legendWord(a))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "Symbols: " + strings.Join(parts, "  ")
}

// Text writes the plan for a terminal or a log. The output depends only on
// the plan: same plan, same bytes.
func (p *Plan) Text(w io.Writer, opts TextOptions) error {
	var b strings.Builder
	b.WriteString(p.Header() + "\n\n")
	if p.Offline {
		b.WriteString("Offline plan: blue and green were not read; each step shows what it would do.\n\n")
	}
	if l := p.Legend(); l != "" {
		b.WriteString(l + "\n\n")
	}
	writeSteps(&b, p.Steps, opts.Color)
	if len(p.Steps) > 0 {
		b.WriteString("\n")
	}
	line := p.SummaryLine()
	if opts.Color {
		line = ansiBold + line + ansiReset
	}
	b.WriteString(line + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// writeSteps writes one line per step and its details, findings and failed
// preconditions indented under it; a finding's long object list is folded
// (FoldLists).
func writeSteps(b *strings.Builder, steps []Step, color bool) {
	width := 0
	for _, st := range steps {
		width = max(width, len(st.ID))
	}
	sym := func(a Action) string {
		if color {
			return colour(a) + Symbol(a) + ansiReset
		}
		return Symbol(a)
	}
	for _, st := range steps {
		line := fmt.Sprintf("  %s %-*s  %s", sym(st.Action), width, st.ID, oneLine(st.Summary))
		b.WriteString(strings.TrimRight(line, " ") + "\n")
		for _, d := range st.Details {
			writeIndented(b, "      ", d)
		}
		for _, wn := range st.Warnings {
			writeIndented(b, "      "+sym(ActionWarning)+" ", FoldLists(wn))
		}
		for _, bl := range st.Blockers {
			writeIndented(b, "      "+sym(ActionBlocker)+" ", FoldLists(bl))
		}
		for _, pc := range st.Preconditions {
			if !pc.OK {
				writeIndented(b, "      "+sym(ActionBlocker)+" ", FoldLists(preconditionText(pc)))
			}
		}
	}
}

func preconditionText(pc Precondition) string {
	if pc.Detail == "" {
		return "precondition " + pc.Name + " does not hold"
	}
	return "precondition " + pc.Name + ": " + pc.Detail
}

// writeIndented writes a possibly multi-line string, every line indented;
// continuation lines align under the first line's text.
func writeIndented(b *strings.Builder, prefix, s string) {
	cont := strings.Repeat(" ", visibleLen(prefix))
	for i, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		p := prefix
		if i > 0 {
			p = cont
		}
		b.WriteString(strings.TrimRight(p+l, " ") + "\n")
	}
}

// visibleLen counts runes outside ANSI escape sequences.
func visibleLen(s string) int {
	n, esc := 0, false
	for _, r := range s {
		switch {
		case esc:
			if r == 'm' {
				esc = false
			}
		case r == '\x1b':
			esc = true
		default:
			n++
		}
	}
	return n
}

// oneLine keeps a summary on its line whatever a step returned.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
