package lab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Pgshift runs the pgshift binary in a folder as a user would: "pgshift"
// on PATH, the spec beside the state file.
type Pgshift struct {
	Bin  string // absolute path of the binary
	Dir  string // working folder: the spec and its state file
	Show io.Writer
	// Echo prints each command ("$ pgshift plan -f demo.yaml") and streams
	// its output; otherwise output is only captured.
	Echo bool
}

// CmdResult is one pgshift run.
type CmdResult struct {
	Args     []string
	Output   string // stdout and stderr, interleaved
	Err      error
	Duration time.Duration
}

// Run runs pgshift with args and returns its output; Err is set on a non-zero exit.
func (p *Pgshift) Run(args ...string) CmdResult {
	cmd := exec.Command(p.Bin, args...)
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(p.Bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	var buf bytes.Buffer
	var w io.Writer = &buf
	if p.Echo {
		fmt.Fprintf(p.Show, "\n%s\n", Bold("$ pgshift "+strings.Join(args, " ")))
		w = io.MultiWriter(&buf, p.Show)
	}
	cmd.Stdout, cmd.Stderr = w, w
	start := time.Now()
	err := cmd.Run()
	return CmdResult{Args: args, Output: buf.String(), Err: err, Duration: time.Since(start)}
}

// Bold is s in bold on a terminal (unless NO_COLOR is set), as it is elsewhere.
func Bold(s string) string {
	if fi, err := os.Stdout.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 || os.Getenv("NO_COLOR") != "" {
		return s
	}
	return "\033[1m" + s + "\033[0m"
}

// State is the part of pgshift's state file that the demo and the
// benchmark read (docs/state.md).
type State struct {
	Next  string `json:"next"`
	Steps []struct {
		ID         string            `json:"id"`
		Status     string            `json:"status"`
		Error      string            `json:"error"`
		StartedAt  time.Time         `json:"started_at"`
		FinishedAt time.Time         `json:"finished_at"`
		Outputs    map[string]string `json:"outputs"`
	} `json:"steps"`
}

// ReadState reads a state file.
func ReadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &st, nil
}

// Output is a step's recorded output ("" when absent).
func (s *State) Output(step, key string) string {
	for _, st := range s.Steps {
		if st.ID == step {
			return st.Outputs[key]
		}
	}
	return ""
}

// Span is when a step last started and finished (zero when absent).
func (s *State) Span(step string) (time.Time, time.Time) {
	for _, st := range s.Steps {
		if st.ID == step {
			return st.StartedAt, st.FinishedAt
		}
	}
	return time.Time{}, time.Time{}
}

// Status is a step's status ("" when absent).
func (s *State) Status(step string) string {
	for _, st := range s.Steps {
		if st.ID == step {
			return st.Status
		}
	}
	return ""
}
