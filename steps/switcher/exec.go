package switcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/spec"
)

// execSwitch runs the user's commands: cutover.switch.exec.switch to send
// traffic to green, .back to send it to blue. They get the phase and both
// databases (without passwords) in the environment:
//
//	PGSHIFT_PHASE      switch | back
//	PGSHIFT_TARGET     green | blue: where traffic must go
//	PGSHIFT_BLUE_DSN   postgres://user@host:port/db
//	PGSHIFT_GREEN_DSN  postgres://user@host:port/db
//
// A relative command path is taken from the spec's folder, where the
// commands run. A non-zero exit aborts the cutover with the end of the
// command's stderr. Freeze and Unfreeze do nothing: freeze writes with the
// read-only mode on blue, or inside the commands themselves.
type execSwitch struct {
	toGreen  []string
	toBlue   []string
	dir      string
	blueDSN  string
	greenDSN string
}

// stderrTail is how much of a failed command's stderr an error carries.
const stderrTail = 1024

func newExec(spec *spec.Spec, s *spec.ExecSwitch) (*execSwitch, error) {
	if len(s.Switch) == 0 || s.Switch[0] == "" || len(s.Back) == 0 || s.Back[0] == "" {
		return nil, errors.New("cutover.switch.exec: both switch and back commands are required (back is how a rollback or an aborted cutover returns to blue)")
	}
	e := &execSwitch{
		toGreen:  s.Switch,
		toBlue:   s.Back,
		blueDSN:  engine.NewDatabase("blue", spec.Source).Redacted(),
		greenDSN: engine.NewDatabase("green", spec.Target).Redacted(),
	}
	if spec.File != "" {
		e.dir = filepath.Dir(spec.File)
	}
	return e, nil
}

func (e *execSwitch) Name() string { return "exec" }

func (e *execSwitch) argv(to Side) []string {
	if to == Green {
		return e.toGreen
	}
	return e.toBlue
}

// Check verifies that both commands exist and are executable.
func (e *execSwitch) Check(ctx context.Context) error {
	for _, c := range []struct {
		key  string
		argv []string
	}{{"switch", e.toGreen}, {"back", e.toBlue}} {
		if _, err := e.resolve(c.argv[0]); err != nil {
			return fmt.Errorf("cutover.switch.exec.%s: %w", c.key, err)
		}
	}
	return nil
}

// resolve finds the program as exec would: a bare name on PATH, a path
// relative to the spec's folder.
func (e *execSwitch) resolve(prog string) (string, error) {
	if !strings.Contains(prog, "/") {
		return exec.LookPath(prog)
	}
	path := prog
	if !filepath.IsAbs(path) && e.dir != "" {
		path = filepath.Join(e.dir, path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not executable", path)
	}
	return path, nil
}

func (e *execSwitch) Current(ctx context.Context) (Side, error) { return "", ErrUnknownSide }

func (e *execSwitch) Freeze(ctx context.Context) error   { return nil }
func (e *execSwitch) Unfreeze(ctx context.Context) error { return nil }

// Switch runs the command for the side, bounded by ctx: on expiry its whole
// process group is killed. The commands must be idempotent, as every other
// switch is.
func (e *execSwitch) Switch(ctx context.Context, to Side) error {
	if !to.valid() {
		return fmt.Errorf("switch: unknown side %q", to)
	}
	argv := e.argv(to)
	phase, key := "switch", "switch"
	if to == Blue {
		phase, key = "back", "back"
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(),
		"PGSHIFT_PHASE="+phase,
		"PGSHIFT_TARGET="+string(to),
		"PGSHIFT_BLUE_DSN="+e.blueDSN,
		"PGSHIFT_GREEN_DSN="+e.greenDSN,
	)
	// Its own process group, so that a timeout also stops what a shell
	// script started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return nil
	}
	detail := tail(stderr.String(), stderrTail)
	if detail == "" {
		detail = tail(stdout.String(), stderrTail)
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (killed after the pause timeout)", ctx.Err())
	}
	if detail != "" {
		return fmt.Errorf("cutover.switch.exec.%s %q: %v: %s", key, strings.Join(argv, " "), err, detail)
	}
	return fmt.Errorf("cutover.switch.exec.%s %q: %v", key, strings.Join(argv, " "), err)
}

func (e *execSwitch) Describe(to Side) []string {
	key := "switch"
	if to == Blue {
		key = "back"
	}
	return []string{fmt.Sprintf("run cutover.switch.exec.%s: %s (PGSHIFT_PHASE=%s)", key, strings.Join(e.argv(to), " "), map[Side]string{Green: "switch", Blue: "back"}[to])}
}

func (e *execSwitch) Close() error { return nil }
