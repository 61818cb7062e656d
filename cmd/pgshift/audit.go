package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newAuditCommand) }

// auditArgs are the parsed flags of `pgshift audit`.
type auditArgs struct {
	spec specFlags
	out  outputFlags
	log  logFlags
}

func newAuditCommand() *cobra.Command {
	var a auditArgs
	cmd := &cobra.Command{
		Use:   "audit -f spec.yaml",
		Short: "Show the compatibility report of blue and green alone",
		Long: `audit connects to blue and green and shows the audit step's report alone, for
a change review: what green's schema restore would refuse for this pair of
majors (postfix operators, objects on the old polymorphic array functions,
extensions green lacks or PostgreSQL removed, ...), what differs between the
databases (encoding, collation), and what logical replication does not carry
(large objects, unlogged tables, sequences until the cutover, materialized
views), each with its fix. It changes nothing. docs/audit.md lists every check.

--format markdown is a pull-request comment (with a hidden marker of its own,
so that it does not replace the plan's); --format json carries every object
of every finding (text and markdown fold lists after 10).

Exit status: 0 when nothing blocks, 1 when the report has a blocker or a side
cannot be read, 2 usage error.`,
		Args: specNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAudit(cmd, &a) },
	}
	a.spec.register(cmd)
	a.out.register(cmd, formatText, formatMarkdown, formatJSON)
	a.log.register(cmd)
	return cmd
}

// auditReport is one spec's audit, as `pgshift audit` renders it.
type auditReport struct {
	FormatVersion int          `json:"format_version"`
	Name          string       `json:"name"`
	Blue          plans.Server `json:"blue"`
	Green         plans.Server `json:"green"`
	Summary       string       `json:"summary"`
	Blockers      []string     `json:"blockers"`
	Warnings      []string     `json:"warnings"`
	Details       []string     `json:"details"`
}

func runAudit(cmd *cobra.Command, a *auditArgs) error {
	if err := a.out.check(formatText, formatMarkdown, formatJSON); err != nil {
		return err
	}
	specs, err := a.spec.load()
	if err != nil {
		return err
	}
	log, err := a.log.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ctx, stop := interruptContext(cmd)
	defer stop()

	stdout := cmd.OutOrStdout()
	blockers := 0
	for i, s := range specs {
		r, err := auditSpec(ctx, s, log)
		if err != nil {
			return &exitCodeError{code: exitError, err: err}
		}
		if i > 0 && a.out.format != formatJSON {
			fmt.Fprintln(stdout)
		}
		if err := r.render(stdout, a.out.format); err != nil {
			return err
		}
		blockers += len(r.Blockers)
	}
	if blockers > 0 {
		return &exitCodeError{code: exitError, err: fmt.Errorf("the audit has %s: apply would refuse; fix each ✗ line and run %s again",
			words.Count(blockers, "blocker"), commandLine("audit", &a.spec))}
	}
	return nil
}

// auditSpec observes the audit step of a spec: both servers are read, and
// nothing changes.
func auditSpec(ctx context.Context, s *spec.Spec, log hclog.Logger) (*auditReport, error) {
	var step engine.Step
	for _, st := range stepsFor(s) {
		if st.ID() == stepid.Audit {
			step = st
		}
	}
	if step == nil {
		return nil, fmt.Errorf("spec %s has no %s step", s.Name, stepid.Audit)
	}
	env := engine.NewEnv(s, log)
	defer env.Close()
	r := &auditReport{FormatVersion: 1, Name: s.Name,
		Blue: plans.Server{Address: env.Source.Redacted()}, Green: plans.Server{Address: env.Target.Redacted()}}
	var err error
	r.Blue.Version, r.Green.Version, err = engine.ServerVersions(ctx, env)
	if err != nil {
		return nil, err
	}
	c, err := step.Observe(ctx, env.ForStep(step.ID()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", stepid.Audit, err)
	}
	r.Summary, r.Blockers, r.Warnings, r.Details = c.Summary, nonNil(c.Blockers), nonNil(c.Warnings), nonNil(c.Details)
	return r, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (r *auditReport) render(w io.Writer, format string) error {
	switch format {
	case formatJSON:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
		_, err := w.Write(buf.Bytes())
		return err
	case formatMarkdown:
		return r.markdown(w)
	default:
		return r.text(w)
	}
}

func (r *auditReport) header() string {
	return fmt.Sprintf("pgshift audit: %s   blue %s -> green %s", r.Name, describeServer(r.Blue), describeServer(r.Green))
}

func describeServer(s plans.Server) string {
	if s.Version != "" {
		return "PostgreSQL " + s.Version
	}
	return s.Address
}

// summaryLine closes the report: the counts, or that nothing was found.
func (r *auditReport) summaryLine() string {
	if len(r.Blockers) == 0 && len(r.Warnings) == 0 {
		return "Audit: nothing blocks, nothing to read."
	}
	return fmt.Sprintf("Audit: %s, %s.", words.Count(len(r.Blockers), "blocker"), words.Count(len(r.Warnings), "warning"))
}

// body is the findings, blockers first, each under its symbol, continuation
// lines aligned and object lists folded.
func (r *auditReport) body() string {
	var b strings.Builder
	if r.Summary != "" {
		b.WriteString("  " + r.Summary + "\n")
	}
	for _, f := range r.Blockers {
		writeFinding(&b, "  "+plans.Symbol(plans.ActionBlocker)+" ", f)
	}
	for _, f := range r.Warnings {
		writeFinding(&b, "  "+plans.Symbol(plans.ActionWarning)+" ", f)
	}
	for _, d := range r.Details {
		writeFinding(&b, "    ", d)
	}
	return b.String()
}

func writeFinding(b *strings.Builder, prefix, s string) {
	cont := strings.Repeat(" ", len([]rune(prefix)))
	for i, l := range strings.Split(strings.TrimRight(plans.FoldLists(s), "\n"), "\n") {
		p := prefix
		if i > 0 {
			p = cont
		}
		b.WriteString(strings.TrimRight(p+l, " ") + "\n")
	}
}

func (r *auditReport) text(w io.Writer) error {
	_, err := io.WriteString(w, r.header()+"\n\n"+r.body()+"\n"+r.summaryLine()+"\n")
	return err
}

// auditMarker opens the markdown report, so that CI updates its previous
// audit comment; it differs from the plan's marker.
func auditMarker(name string) string {
	return fmt.Sprintf("<!-- pgshift:audit name=%s -->", name)
}

func (r *auditReport) markdown(w io.Writer) error {
	body := r.body()
	fence := "```"
	for strings.Contains(body, fence) {
		fence += "`"
	}
	var b strings.Builder
	b.WriteString(auditMarker(r.Name) + "\n")
	fmt.Fprintf(&b, "### pgshift audit: `%s`\n\n", r.Name)
	fmt.Fprintf(&b, "**blue** %s (`%s`) → **green** %s (`%s`)\n\n", describeServer(r.Blue), r.Blue.Address, describeServer(r.Green), r.Green.Address)
	b.WriteString(fence + "\n" + body + fence + "\n\n")
	fmt.Fprintf(&b, "**%s**\n", r.summaryLine())
	_, err := io.WriteString(w, b.String())
	return err
}
