package engine

import (
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Progress shows long work (the snapshot copy, the catch-up) live to the
// person at a terminal. The log carries the same facts every few seconds,
// so off a terminal Progress draws nothing.
type Progress interface {
	// Start begins a bar for one task. bytes says whether current and
	// total count bytes (shown as MB, with a rate and an ETA).
	Start(description string, total int64, bytes bool) ProgressBar
}

// ProgressBar is one task's live line.
type ProgressBar interface {
	// Set moves the bar to current and shows detail after it.
	Set(current int64, detail string)
	// Finish draws the final state and ends the line.
	Finish()
}

// NoProgress draws nothing: the default, and what runs off a terminal use.
type NoProgress struct{}

func (NoProgress) Start(string, int64, bool) ProgressBar { return noBar{} }

type noBar struct{}

func (noBar) Set(int64, string) {}
func (noBar) Finish()           {}

// TerminalProgress draws bars on w, which must be a terminal.
type TerminalProgress struct{ W io.Writer }

func (p TerminalProgress) Start(description string, total int64, bytes bool) ProgressBar {
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(p.W),
		progressbar.OptionSetDescription(description),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(200 * time.Millisecond),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionOnCompletion(func() { _, _ = io.WriteString(p.W, "\n") }),
	}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionShowTotalBytes(true), progressbar.OptionUseIECUnits(true),
			progressbar.OptionSetPredictTime(true))
	} else {
		opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(false))
	}
	return &terminalBar{bar: progressbar.NewOptions64(total, opts...), description: description}
}

type terminalBar struct {
	mu          sync.Mutex
	bar         *progressbar.ProgressBar
	description string
}

func (b *terminalBar) Set(current int64, detail string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if detail != "" {
		b.bar.Describe(b.description + " (" + detail + ")")
	}
	// Streamed COPY bytes can pass the on-disk estimate the total came from.
	if max := b.bar.GetMax64(); max > 0 && current > max {
		b.bar.ChangeMax64(current)
	}
	_ = b.bar.Set64(current)
}

func (b *terminalBar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.bar.Finish()
}

// StartProgress begins a live progress bar for the running step; it draws
// nothing when no terminal is attached (or the Env was built without one).
func (e *Env) StartProgress(description string, total int64, bytes bool) ProgressBar {
	if e == nil || e.Progress == nil {
		return noBar{}
	}
	return e.Progress.Start(description, total, bytes)
}
