package plans

import (
	"fmt"
	"io"
	"strings"
)

// MarkdownMarker is the hidden comment that opens every markdown plan, so
// that a CI job can find its previous comment on a pull request and update it
// instead of adding another. It names the spec: one comment per spec.
func MarkdownMarker(name string) string {
	return fmt.Sprintf("<!-- pgshift:plan name=%s -->", name)
}

// Markdown writes the plan as a pull-request comment: the marker, a title,
// the steps in a diff block (GitHub colours + and - lines), and the summary.
func (p *Plan) Markdown(w io.Writer) error {
	var body strings.Builder
	writeSteps(&body, p.Steps, false)
	fence := "```"
	for strings.Contains(body.String(), fence) {
		fence += "`"
	}

	var b strings.Builder
	b.WriteString(MarkdownMarker(p.Name) + "\n")
	fmt.Fprintf(&b, "### pgshift plan: `%s`\n\n", p.Name)
	fmt.Fprintf(&b, "**blue** %s → **green** %s\n\n", mdServer(p.Blue), mdServer(p.Green))
	if p.Offline {
		b.WriteString("> Offline plan: blue and green were not read; each step shows what it would do.\n\n")
	}
	if len(p.Steps) > 0 {
		b.WriteString(fence + "diff\n" + body.String() + fence + "\n\n")
	}
	if l := p.Legend(); l != "" {
		b.WriteString(l + "\n\n")
	}
	fmt.Fprintf(&b, "**%s**\n", p.SummaryLine())
	_, err := io.WriteString(w, b.String())
	return err
}

func mdServer(s Server) string {
	d := s.describe()
	if s.Version != "" && s.Address != "" {
		return d + " (`" + s.Address + "`)"
	}
	if s.Version == "" && s.Address != "" {
		return "`" + s.Address + "`"
	}
	return d
}
