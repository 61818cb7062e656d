package main

import (
	"bufio"
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/teststeps"
)

// buildTestBinary builds pgshift with the test steps compiled in.
func buildTestBinary(t *testing.T) string {
	t.Helper()
	goBin := pgtest.GoCommand()
	bin := filepath.Join(t.TempDir(), "pgshift")
	out, err := exec.Command(goBin, "build", "-tags", "pgshift_teststeps", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build -tags pgshift_teststeps: %v\n%s", err, out)
	}
	return bin
}

const crashSpec = `version: 1
name: crash-test
source:
  dsn: postgres://replicator@127.0.0.1:1/orders
target:
  dsn: postgres://postgres@127.0.0.1:2/orders
cutover:
  switch:
    exec:
      switch: ["true"]
      back: ["true"]
`

// crashBackend is where the crash test keeps the state: a file beside the
// spec, or a table of a real PostgreSQL server.
type crashBackend struct {
	name string
	// location gives a round (its folder, its number) the state's location
	// and the flags that pass it to pgshift.
	location func(dir string, round int) (loc string, flags []string)
	kills    int // apply kills to reach
}

// TestCrashResume runs the real binary on slow test steps and kills it with
// SIGKILL at random instants, resuming each time with the same command. After
// every kill: the state parses, no step the state recorded as done
// before the run started ran again, and no step that started is shown as
// pending (a step is marked running before it starts). After each completed
// apply: every step done and its effect present exactly once, and the lock
// free. Each round then rolls back under the same kills: no step recorded
// rolled back is rolled back again, and at the end every effect is gone. It
// runs on both state backends: the file, and a table of a real PostgreSQL
// server (a fresh table per round).
func TestCrashResume(t *testing.T) {
	bin := buildTestBinary(t)
	t.Run("file", func(t *testing.T) {
		crashResume(t, bin, crashBackend{name: "file", kills: 30, location: func(dir string, _ int) (string, []string) {
			return filepath.Join(dir, "crash-test.pgshift-state.json"), nil
		}})
	})
	t.Run("postgres", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts a PostgreSQL server for the state")
		}
		c := pgtest.StartCluster(t, 17)
		c.CreateDatabase(t, "ops")
		crashResume(t, bin, crashBackend{name: "postgres", kills: 20, location: func(_ string, round int) (string, []string) {
			flag := c.DSN("ops") + "&table=crash_round_" + strconv.Itoa(round)
			// A killed run's session ends when its server process reads the
			// closed socket, a moment after the kill: the next run, started
			// at once, waits for that (a user starting it by hand never
			// notices).
			return engine.WithStateName(flag, "crash-test"), []string{"--state", flag, "--lock-timeout", "5s"}
		}})
	})
}

func crashResume(t *testing.T, bin string, backend crashBackend) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	wantKills := backend.kills
	applyKills, rollbackKills, rounds, runs := 0, 0, 0, 0
	for applyKills < wantKills {
		rounds++
		dir := t.TempDir()
		specPath := filepath.Join(dir, "spec.yaml")
		if err := os.WriteFile(specPath, []byte(crashSpec), 0o600); err != nil {
			t.Fatal(err)
		}
		statePath, stateFlags := backend.location(dir, rounds)
		// A full apply takes about 0.5 s, a rollback about 0.3 s.
		for _, phase := range []struct {
			op     string
			args   []string
			window int
			kills  *int
			final  func(*engine.State)
		}{
			{"apply", append([]string{"apply", "-f", specPath}, stateFlags...), 350, &applyKills, func(st *engine.State) {
				checkFinalCrashState(t, dir, st, backend.name == "file")
			}},
			{"rollback", append([]string{"rollback", "-f", specPath, "--yes"}, stateFlags...), 200, &rollbackKills, func(st *engine.State) { checkRolledBack(t, dir, st) }},
		} {
			finished := false
			for !finished {
				runs++
				if runs > 600 { // every run ends within its kill window, or completes
					t.Fatalf("too many runs (%d apply kills so far): %s never completes", applyKills, phase.op)
				}
				// Steps whose work the state says is over must not run again.
				over := map[string]bool{}
				if st, err := engine.ReadState(statePath); err == nil {
					for _, c := range st.Steps {
						if (phase.op == "apply" && c.Status == engine.StatusDone) || (phase.op == "rollback" && c.Status == engine.StatusRolledBack) {
							over[c.ID] = true
						}
					}
				} else if !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("run %d: state before %s: %v", runs, phase.op, err)
				}
				journalBefore := journalLines(t, dir)

				killAfter := time.Duration(rng.IntN(phase.window)) * time.Millisecond
				killed, out, err := runAndMaybeKill(t, bin, dir, killAfter, append(phase.args, "--log-level", "warn")...)
				switch {
				case killed:
					*phase.kills++
				case err != nil:
					t.Fatalf("run %d: %s failed without being killed: %v\n%s", runs, phase.op, err, out)
				default:
					finished = true
				}
				if phase.op == "rollback" && strings.Contains(out, "No state at") {
					t.Fatalf("run %d: rollback found no state at %s, though apply saved one there:\n%s", runs, statePath, out)
				}

				st, err := engine.ReadState(statePath)
				if errors.Is(err, os.ErrNotExist) && killed && phase.op == "apply" && len(journalBefore) == 0 {
					continue // killed before the first checkpoint
				}
				if err != nil {
					t.Fatalf("run %d (%s, killed=%v after %v): state: %v", runs, phase.op, killed, killAfter, err)
				}
				for _, line := range journalLines(t, dir)[len(journalBefore):] {
					f := strings.Fields(line)
					if len(f) != 3 || f[0] != phase.op {
						t.Fatalf("run %d: unexpected journal line %q during %s", runs, line, phase.op)
					}
					if over[f[1]] {
						t.Fatalf("run %d: %s was recorded as finished (%s) before the run, yet ran again", runs, f[1], phase.op)
					}
					if c := st.Step(f[1]); c == nil || c.Status == engine.StatusPending || (phase.op == "rollback" && c.Status == engine.StatusDone) {
						t.Fatalf("run %d: %s started %s but the state does not say so (%+v)", runs, f[1], phase.op, c)
					}
				}
				if finished {
					phase.final(st)
					if info, held := engine.LockHolder(statePath); held {
						t.Fatalf("run %d: %s completed, yet its lock is still held by %s", runs, phase.op, info)
					}
				}
			}
		}
	}
	t.Logf("%d apply kills and %d rollback kills over %d rounds, %d runs", applyKills, rollbackKills, rounds, runs)
}

// runAndMaybeKill runs the test binary and SIGKILLs it after killAfter
// unless it exits first.
func runAndMaybeKill(t *testing.T, bin, dir string, killAfter time.Duration, args ...string) (killed bool, out string, err error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), teststeps.EnvDir+"="+dir, teststeps.EnvDelay+"=30ms")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err = <-exited:
		return false, buf.String(), err
	case <-time.After(killAfter):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err = <-exited
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return true, buf.String(), nil
		}
	}
	return false, buf.String(), err // it exited on its own just before the kill
}

func checkRolledBack(t *testing.T, dir string, st *engine.State) {
	t.Helper()
	for _, c := range st.Steps {
		if c.Status != engine.StatusRolledBack || len(c.Outputs) != 0 {
			t.Fatalf("after rollback %s is %s with outputs %v", c.ID, c.Status, c.Outputs)
		}
	}
	effects, err := teststeps.ReadEffects(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(effects) != 0 {
		t.Fatalf("effects left after rollback: %v", effects)
	}
}

func checkFinalCrashState(t *testing.T, dir string, st *engine.State, stateFile bool) {
	t.Helper()
	for _, c := range st.Steps {
		if c.Status != engine.StatusDone {
			t.Fatalf("after completion %s is %s", c.ID, c.Status)
		}
		if c.Outputs["token"] != c.ID+"-token" {
			t.Fatalf("%s output token %q lost", c.ID, c.Outputs["token"])
		}
	}
	if len(st.Steps) != len(teststeps.Shape) {
		t.Fatalf("state has %d steps, want %d", len(st.Steps), len(teststeps.Shape))
	}
	effects, err := teststeps.ReadEffects(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range teststeps.Shape {
		if effects[s.ID] != 1 {
			t.Fatalf("effect of %s present %d times, want exactly once (%v)", s.ID, effects[s.ID], effects)
		}
	}
	if len(effects) != len(teststeps.Shape) {
		t.Fatalf("effects %v: unexpected keys", effects)
	}
	if !stateFile {
		return
	}
	temps, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	if len(temps) > 0 {
		t.Fatalf("temp files left after a completed run: %v", temps)
	}
	fi, err := os.Stat(filepath.Join(dir, "crash-test.pgshift-state.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode: %v %v", fi, err)
	}
}

func journalLines(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, teststeps.JournalFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// TestReleaseBuildHasNoTestSteps guards the build tag: the test steps must
// not ship in the release binary.
func TestReleaseBuildHasNoTestSteps(t *testing.T) {
	goBin := pgtest.GoCommand()
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "internal/teststeps") {
		t.Fatal("the release build of pgshift depends on internal/teststeps")
	}
}
