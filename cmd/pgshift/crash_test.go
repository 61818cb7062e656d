package main

import (
	"bufio"
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/teststeps"
)

// buildTestBinary builds pgshift with the test steps compiled in.
func buildTestBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
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

// TestCrashResume runs the real binary on slow test steps and kills it with
// SIGKILL at random instants, resuming each time with the same command. After
// every kill: the state file parses, no step the state recorded as done
// before the run started ran again, and no step that started is shown as
// pending (a step is marked running before it starts). After each completed
// run: every step done and its effect present exactly once.
func TestCrashResume(t *testing.T) {
	bin := buildTestBinary(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	const wantKills = 30
	kills, rounds, runs := 0, 0, 0
	deadline := time.Now().Add(45 * time.Second)
	for kills < wantKills {
		if time.Now().After(deadline) {
			t.Fatalf("only %d kills before the deadline (%d rounds, %d runs)", kills, rounds, runs)
		}
		rounds++
		dir := t.TempDir()
		specPath := filepath.Join(dir, "spec.yaml")
		if err := os.WriteFile(specPath, []byte(crashSpec), 0o600); err != nil {
			t.Fatal(err)
		}
		statePath := filepath.Join(dir, "crash-test.pgshift-state.json")
		for finished := false; !finished; {
			runs++
			if runs > 400 {
				t.Fatal("too many runs: apply never completes")
			}
			doneBefore := map[string]bool{}
			if st, err := engine.ReadState(statePath); err == nil {
				for _, c := range st.Steps {
					if c.Status == engine.StatusDone {
						doneBefore[c.ID] = true
					}
				}
			} else if !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("run %d: state before run: %v", runs, err)
			}
			journalBefore := journalLines(t, dir)

			cmd := exec.Command(bin, "apply", "-f", specPath, "--log-level", "warn")
			cmd.Env = append(os.Environ(), teststeps.EnvDir+"="+dir, teststeps.EnvDelay+"=30ms")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			killAfter := time.Duration(rng.IntN(350)) * time.Millisecond // a full run takes ~0.5 s
			var waitErr error
			killed := false
			select {
			case waitErr = <-exited:
			case <-time.After(killAfter):
				_ = cmd.Process.Signal(syscall.SIGKILL)
				waitErr = <-exited
				var ee *exec.ExitError
				if errors.As(waitErr, &ee) {
					if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
						killed = true
					}
				}
			}
			if killed {
				kills++
			} else if waitErr != nil {
				t.Fatalf("run %d: apply failed without being killed: %v\n%s", runs, waitErr, out.String())
			} else {
				finished = true
			}

			st, err := engine.ReadState(statePath)
			if errors.Is(err, os.ErrNotExist) && killed && len(doneBefore) == 0 {
				continue // killed before the first checkpoint
			}
			if err != nil {
				t.Fatalf("run %d (killed=%v after %v): state file: %v", runs, killed, killAfter, err)
			}
			for _, line := range journalLines(t, dir)[len(journalBefore):] {
				f := strings.Fields(line)
				if len(f) != 3 || f[0] != "apply" {
					t.Fatalf("run %d: unexpected journal line %q", runs, line)
				}
				if doneBefore[f[1]] {
					t.Fatalf("run %d: %s was recorded done before the run, yet applied again", runs, f[1])
				}
				if c := st.Step(f[1]); c == nil || c.Status == engine.StatusPending {
					t.Fatalf("run %d: %s started but the state does not say so (%+v)", runs, f[1], c)
				}
			}
			if finished {
				checkFinalCrashState(t, dir, st)
			}
		}
	}
	t.Logf("%d kills over %d rounds, %d runs", kills, rounds, runs)
}

func checkFinalCrashState(t *testing.T, dir string, st *engine.State) {
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
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "internal/teststeps") {
		t.Fatal("the release build of pgshift depends on internal/teststeps")
	}
}
