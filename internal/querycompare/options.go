package querycompare

import (
	"fmt"
	"time"
)

// Options are what a comparison runs with. The CLI fills them from flags;
// the spec will too (the thresholds), so nothing here knows of either.
type Options struct {
	// Top is how many statements to take from blue's pg_stat_statements,
	// by total execution time; 0 takes none.
	Top int
	// Rounds is how many times each statement runs on each side.
	Rounds int
	// StatementTimeout bounds each run (SET LOCAL statement_timeout).
	StatementTimeout time.Duration
	// MaxRatio and MinDiff decide a regression: green's median over blue's
	// above MaxRatio and green's median minus blue's above MinDiff.
	MaxRatio float64
	MinDiff  time.Duration
	// AllowWrites lets INSERT, UPDATE, DELETE and MERGE run, on green only,
	// inside a transaction that is rolled back. Blue never runs them: it is
	// explained there without running.
	AllowWrites bool
	// Analyze runs ANALYZE on green's tables that were never analyzed,
	// before anything is timed.
	Analyze bool
}

// Defaults are the options of `pgshift compare-queries` without flags.
func Defaults() Options {
	return Options{Top: 50, Rounds: 5, StatementTimeout: 30 * time.Second, MaxRatio: 1.5, MinDiff: 2 * time.Millisecond, Analyze: true}
}

// Check refuses options that cannot run; the message names the option.
func (o Options) Check() error {
	switch {
	case o.Top < 0:
		return fmt.Errorf("top %d: want 0 or more statements", o.Top)
	case o.Rounds < 1:
		return fmt.Errorf("rounds %d: want at least 1", o.Rounds)
	case o.StatementTimeout < time.Millisecond:
		return fmt.Errorf("statement timeout %s: want at least 1ms", o.StatementTimeout)
	case o.MaxRatio < 1:
		return fmt.Errorf("max ratio %g: want 1 or more (green's median over blue's)", o.MaxRatio)
	case o.MinDiff < 0:
		return fmt.Errorf("min diff %s: want 0 or more", o.MinDiff)
	}
	return nil
}
