package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// pgshiftBin is the binary built by TestMain; buildErr says why there is none.
var (
	pgshiftBin string
	buildErr   error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() {
			return m.Run() // every test skips: nothing to build
		}
		dir, err := os.MkdirTemp("", "pgshift-e2e-bin-")
		if err != nil {
			buildErr = err
			return m.Run()
		}
		defer os.RemoveAll(dir)
		pgshiftBin, buildErr = buildPgshift(dir)
		return m.Run()
	}()
	os.Exit(code)
}

// buildPgshift builds the release binary (no test steps) as a user would.
func buildPgshift(dir string) (string, error) {
	goBin := pgtest.GoCommand()
	bin := filepath.Join(dir, "pgshift")
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/pgshift/pgshift/cmd/pgshift").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/pgshift: %v\n%s", err, out)
	}
	return bin, nil
}

// integration skips under -short and fails when the binary did not build.
func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// cliTimeout bounds one pgshift command; the machine may be heavily loaded.
const cliTimeout = 4 * time.Minute

// result is one finished pgshift command.
type result struct {
	args   []string
	stdout string
	stderr string
	code   int
}

func (r result) String() string {
	return fmt.Sprintf("pgshift %s: exit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// pgshift runs the binary with args in dir and waits for it.
func pgshift(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return pgshiftEnv(t, dir, nil, args...)
}

// pgshiftEnv is pgshift with variables added to the environment.
func pgshiftEnv(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, pgshiftBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("pgshift %s did not finish within %s\n%s", strings.Join(args, " "), cliTimeout, r)
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("pgshift %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// running is a pgshift command started in the background.
type running struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{}
	err    error
}

func startPgshift(t *testing.T, dir string, args ...string) *running {
	t.Helper()
	r := &running{cmd: exec.Command(pgshiftBin, args...), exited: make(chan struct{})}
	r.cmd.Dir = dir
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.err = r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() { r.kill() })
	return r
}

// kill sends SIGKILL and waits; it reports whether the signal ended the
// process (false: it had exited on its own).
func (r *running) kill() bool {
	select {
	case <-r.exited:
		return false
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
	var ee *exec.ExitError
	if errors.As(r.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	return false
}

// done says whether the process has exited.
func (r *running) done() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

func (r *running) exitCode() int {
	<-r.exited
	var ee *exec.ExitError
	if errors.As(r.err, &ee) {
		return ee.ExitCode()
	}
	if r.err != nil {
		return -1
	}
	return 0
}
