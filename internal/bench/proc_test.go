package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// runResult is one finished child process: its wall time and its peak
// resident set as the kernel counted it (getrusage ru_maxrss of the waited
// child, the same figure as VmHWM in /proc/PID/status).
type runResult struct {
	wall    time.Duration
	peakRSS int64         // bytes
	cpu     time.Duration // user + system CPU of the process
	output  string
}

// runProcess runs a command to its end and measures it. Its combined output
// is kept (the tail is shown when it fails).
func runProcess(ctx context.Context, env []string, name string, args ...string) (runResult, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	r := runResult{wall: time.Since(t0), output: out.String()}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			r.peakRSS = ru.Maxrss << 10 // kB on Linux
			r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	if err != nil {
		return r, fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(r.output, 2000))
	}
	return r, nil
}

// shell runs a bash pipeline with pipefail (a failing pg_dump fails the
// whole pipe).
func shell(ctx context.Context, env []string, script string) (runResult, error) {
	return runProcess(ctx, env, "bash", "-o", "pipefail", "-c", script)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// buildPgshift builds the CLI from this module into dir.
func buildPgshift(dir string) (string, error) {
	goBin := pgtest.GoCommand()
	bin := filepath.Join(dir, "pgshift")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/pgshift/pgshift/cmd/pgshift").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/pgshift: %v\n%s", err, out)
	}
	return bin, nil
}

// stepTimes reads a step's start, end and outputs from a pgshift state file.
type stepRecord struct {
	ID         string            `json:"id"`
	Status     string            `json:"status"`
	StartedAt  *time.Time        `json:"started_at"`
	FinishedAt *time.Time        `json:"finished_at"`
	Outputs    map[string]string `json:"outputs"`
}

func readStep(statePath, id string) (stepRecord, error) {
	data, err := os.ReadFile(statePath)
	if err != nil {
		return stepRecord{}, err
	}
	var st struct {
		Steps []stepRecord `json:"steps"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return stepRecord{}, fmt.Errorf("%s: %w", statePath, err)
	}
	for _, s := range st.Steps {
		if s.ID == id {
			return s, nil
		}
	}
	return stepRecord{}, fmt.Errorf("%s: no step %s", statePath, id)
}

func (s stepRecord) duration() time.Duration {
	if s.StartedAt == nil || s.FinishedAt == nil {
		return 0
	}
	return s.FinishedAt.Sub(*s.StartedAt)
}

// writeLog keeps a child's output beside its spec for a post-mortem.
func writeLog(path, text string) { _ = os.WriteFile(path, []byte(text), 0o644) }
