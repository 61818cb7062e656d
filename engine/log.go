package engine

import (
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/go-hclog"
)

// LogOptions choose how pgshift logs: human-readable lines on a terminal,
// JSON lines for log collectors.
type LogOptions struct {
	Format string    // "human" (default) or "json"
	Level  string    // trace, debug, info (default), warn, error
	Output io.Writer // default os.Stderr
	Color  bool      // colour levels (human format only)
}

// NewLogger builds the run's logger; an unknown format or level is an error
// that names the accepted values.
func NewLogger(opts LogOptions) (hclog.Logger, error) {
	out := opts.Output
	if out == nil {
		out = os.Stderr
	}
	level := hclog.Info
	if opts.Level != "" {
		level = hclog.LevelFromString(opts.Level)
		if level == hclog.NoLevel {
			return nil, fmt.Errorf("log level %q: use trace, debug, info, warn or error", opts.Level)
		}
	}
	var json bool
	switch opts.Format {
	case "", "human", "text":
	case "json":
		json = true
	default:
		return nil, fmt.Errorf("log format %q: use human or json", opts.Format)
	}
	color := hclog.ColorOff
	if opts.Color && !json {
		color = hclog.ForceColor
	}
	lo := &hclog.LoggerOptions{
		Name:       "pgshift",
		Level:      level,
		Output:     out,
		JSONFormat: json,
		Color:      color,
	}
	if !json {
		lo.TimeFormat = "15:04:05.000" // a run lasts hours, not days; JSON keeps full timestamps
	}
	return hclog.New(lo), nil
}
