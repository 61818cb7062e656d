package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/engine"
	"github.com/spf13/cobra"
)

// Flag names shared by the commands that take them.
const (
	flagFormat        = "format"
	flagNoColor       = "no-color"
	flagLogFormat     = "log-format"
	flagLogLevel      = "log-level"
	flagMetricsListen = "metrics-listen"
)

// Output formats of plan and status.
const (
	formatText     = "text"
	formatMarkdown = "markdown"
	formatJSON     = "json"
)

// outputFlags choose how a command prints its result on stdout.
type outputFlags struct {
	format  string
	noColor bool
}

func (o *outputFlags) register(cmd *cobra.Command, formats ...string) {
	cmd.Flags().StringVar(&o.format, flagFormat, formatText, "output format: "+strings.Join(formats, ", "))
	cmd.Flags().BoolVar(&o.noColor, flagNoColor, false, "no colour in text output (colour is only ever used on a terminal; NO_COLOR is honoured too)")
}

// check refuses a format the command does not render.
func (o *outputFlags) check(formats ...string) error {
	for _, f := range formats {
		if o.format == f {
			return nil
		}
	}
	return &usageError{fmt.Errorf("--format %q: use %s", o.format, strings.Join(formats, ", "))}
}

// color says whether to colour output written to w: only on a terminal,
// and never with --no-color or NO_COLOR set.
func (o *outputFlags) color(w io.Writer) bool {
	return !o.noColor && colorAllowed(w)
}

func colorAllowed(w io.Writer) bool {
	if _, set := os.LookupEnv("NO_COLOR"); set {
		return false
	}
	return isTerminal(w)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// logFlags choose the log format of commands that run steps. Logs go to
// stderr; results go to stdout.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&l.format, flagLogFormat, "human", "log format on stderr: human or json")
	cmd.Flags().StringVar(&l.level, flagLogLevel, "info", "log level: trace, debug, info, warn, error")
}

func (l *logFlags) logger(w io.Writer) (hclog.Logger, error) {
	log, err := engine.NewLogger(engine.LogOptions{Format: l.format, Level: l.level, Output: w, Color: colorAllowed(w)})
	if err != nil {
		return nil, &usageError{err}
	}
	return log, nil
}

// progress is the live progress display for long steps: bars on stderr
// when it is a terminal and logs are for people; nothing otherwise (the log
// carries the same facts).
func (l *logFlags) progress(w io.Writer) engine.Progress {
	if l.format == "human" && isTerminal(w) {
		return engine.TerminalProgress{W: w}
	}
	return engine.NoProgress{}
}

// shellQuote quotes an argument for a command line users can paste.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,@+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// commandLine rebuilds a pgshift command for messages ("run ... to go on"),
// with the spec flags the user gave.
func commandLine(verb string, sf *specFlags, extra ...string) string {
	parts := []string{"pgshift", verb}
	if sf.file != "" {
		parts = append(parts, "-f", shellQuote(sf.file))
	}
	for _, v := range sf.vars {
		parts = append(parts, "--var", shellQuote(v))
	}
	if sf.varsFile != "" {
		parts = append(parts, "--vars-file", shellQuote(sf.varsFile))
	}
	if sf.inventory != "" {
		parts = append(parts, "--inventory", shellQuote(sf.inventory))
	}
	parts = append(parts, extra...)
	return strings.Join(parts, " ")
}
