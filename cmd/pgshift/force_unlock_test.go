package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/teststeps"
)

// TestForceUnlockFile: with the state in a file, force-unlock refuses a
// lock a live process holds (naming it) and removes one no process holds.
func TestForceUnlockFile(t *testing.T) {
	dir, sp := useTestSteps(t)
	statePath := filepath.Join(dir, "crash-test.pgshift-state.json")
	lock, err := engine.AcquireLock(statePath, "apply", 0)
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runCLI(t, "", "force-unlock", "-f", sp)
	if code != exitError || !strings.Contains(stderr, "is locked by pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(stderr, "the lock is not stale, so it stays") {
		t.Fatalf("force-unlock of a held lock: exit %d %s", code, stderr)
	}
	if _, held := engine.LockHolder(statePath); !held {
		t.Fatal("force-unlock freed a lock a live process holds")
	}
	lock.Release()
	out, stderr, code := runCLI(t, "", "force-unlock", "-f", sp)
	if code != exitOK || !strings.Contains(out, "Removed "+engine.LockPath(statePath)+": no process held it") {
		t.Fatalf("force-unlock of a stale lock file: exit %d %s%s", code, out, stderr)
	}
	if _, err := os.Stat(engine.LockPath(statePath)); !os.IsNotExist(err) {
		t.Fatalf("lock file still there: %v", err)
	}
	if out, _, code := runCLI(t, "", "force-unlock", "-f", sp); code != exitOK || !strings.Contains(out, "No lock:") {
		t.Fatalf("force-unlock without a lock: exit %d %s", code, out)
	}
}

// pod is one pgshift process of TestPostgresStatePods: the real binary on
// the slow test steps, its effects in its own folder.
type pod struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

func startPod(t *testing.T, bin, dir, delay string, args ...string) *pod {
	t.Helper()
	p := &pod{cmd: exec.Command(bin, append(args, "--log-level", "warn")...), done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), teststeps.EnvDir+"="+dir, teststeps.EnvDelay+"="+delay)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	return p
}

func (p *pod) wait(t *testing.T) (int, string) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("pgshift %v did not finish:\n%s", p.cmd.Args[1:], p.out.String())
	}
	return p.cmd.ProcessState.ExitCode(), p.out.String()
}

// podSpec is the crash test's spec under another name, its state in the
// Postgres backend the spec names.
func podSpec(t *testing.T, dir, name, stateDSN string) string {
	t.Helper()
	text := strings.Replace(crashSpec, "name: crash-test", "name: "+name, 1) +
		fmt.Sprintf("state:\n  backend: postgres\n  dsn: %q\n  table: pods\n", stateDSN)
	path := filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func waitLocked(t *testing.T, loc string) *engine.LockInfo {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if info, held := engine.LockHolder(loc); held && info.PID != 0 {
			return info
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing took the lock of %s", loc)
	return nil
}

func checkAllDoneOnce(t *testing.T, dir, loc string) {
	t.Helper()
	st, err := engine.ReadState(loc)
	if err != nil {
		t.Fatal(err)
	}
	checkFinalCrashState(t, dir, st, false)
	if info, held := engine.LockHolder(loc); held {
		t.Fatalf("%s still locked by %s after its run ended", loc, info)
	}
}

// TestPostgresStatePods runs pgshift processes the way pods of a fleet do,
// sharing one Postgres state backend (state.backend: postgres in each
// spec): several on their own specs at once all complete; a second process
// on a spec a run holds is refused naming the holder; a holder killed with
// kill -9 frees the lock with its connection, and the resume skips what it
// had done; force-unlock asks, then ends the holder's session, which stops
// that run at its next checkpoint, and the resume completes.
func TestPostgresStatePods(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server for the state")
	}
	bin := buildTestBinary(t)
	c := pgtest.StartCluster(t, 17)
	c.CreateDatabase(t, "ops")
	stateDSN := c.DSN("ops")
	host, _ := os.Hostname()

	// Three pods, three specs, at once.
	var wg sync.WaitGroup
	for _, name := range []string{"pod-a", "pod-b", "pod-c"} {
		dir := t.TempDir()
		sp := podSpec(t, dir, name, stateDSN)
		p := startPod(t, bin, dir, "30ms", "apply", "-f", sp)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, out := p.wait(t); code != 0 {
				t.Errorf("%s: apply exit %d\n%s", name, code, out)
			}
		}()
		t.Cleanup(func() {
			if !t.Failed() {
				checkAllDoneOnce(t, dir, engine.WithStateName(stateDSN+"&table=pods", name))
			}
		})
	}
	wg.Wait()
	if got := c.Scalar(t, "ops", "SELECT string_agg(name || ':' || (state->>'serial' = serial::text), ',' ORDER BY name) FROM pods"); got != "pod-a:true,pod-b:true,pod-c:true" {
		t.Fatalf("rows of the pods: %s", got)
	}

	// Two processes on one spec: the second is refused, naming the first.
	dir := t.TempDir()
	sp := podSpec(t, dir, "twin", stateDSN)
	loc := engine.WithStateName(stateDSN+"&table=pods", "twin")
	first := startPod(t, bin, dir, "400ms", "apply", "-f", sp)
	holder := waitLocked(t, loc)
	if holder.PID != first.cmd.Process.Pid {
		t.Fatalf("lock holder %s, want pid %d", holder, first.cmd.Process.Pid)
	}
	second := startPod(t, bin, dir, "400ms", "apply", "-f", sp)
	code, out := second.wait(t)
	want := fmt.Sprintf("is locked by pid %d on %s since ", first.cmd.Process.Pid, host)
	if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "(pgshift apply) through server backend "+strconv.Itoa(holder.Backend)) {
		t.Fatalf("second process on the same spec: exit %d, want 1 with %q:\n%s", code, want, out)
	}

	// kill -9 of the holder: its session ends, the lock with it; the
	// resume skips the steps done before.
	time.Sleep(900 * time.Millisecond) // a step or two done
	_ = first.cmd.Process.Kill()
	first.wait(t)
	done := map[string]bool{}
	st, err := engine.ReadState(loc)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Steps {
		done[s.ID] = s.Status == engine.StatusDone
	}
	journalBefore := len(journalLines(t, dir))
	resume := startPod(t, bin, dir, "30ms", "apply", "-f", sp, "--lock-timeout", "5s")
	if code, out := resume.wait(t); code != 0 {
		t.Fatalf("resume after kill -9: exit %d\n%s", code, out)
	}
	for _, line := range journalLines(t, dir)[journalBefore:] {
		if f := strings.Fields(line); len(f) == 3 && done[f[1]] {
			t.Fatalf("%s was done before the kill, yet ran again", f[1])
		}
	}
	checkAllDoneOnce(t, dir, loc)

	// force-unlock of a live holder: asked first, then its session ends and
	// that run stops at its next checkpoint.
	dir = t.TempDir()
	sp = podSpec(t, dir, "stuck", stateDSN)
	loc = engine.WithStateName(stateDSN+"&table=pods", "stuck")
	stuck := startPod(t, bin, dir, "400ms", "apply", "-f", sp)
	holder = waitLocked(t, loc)
	out, stderr, code := runCLI(t, "no\n", "force-unlock", "-f", sp)
	if code != exitError || !strings.Contains(out, fmt.Sprintf("held by pid %d on %s", stuck.cmd.Process.Pid, host)) || !strings.Contains(stderr, "force-unlock cancelled: nothing was ended") {
		t.Fatalf("force-unlock answered no: exit %d\n%s%s", code, out, stderr)
	}
	if info, held := engine.LockHolder(loc); !held || info.Backend != holder.Backend {
		t.Fatalf("the lock moved after a refused force-unlock: %+v %v", info, held)
	}
	out, stderr, code = runCLI(t, "", "force-unlock", "-f", sp, "--yes")
	if code != exitOK || !strings.Contains(out, fmt.Sprintf("Ended server backend %d (pid %d on %s", holder.Backend, stuck.cmd.Process.Pid, host)) {
		t.Fatalf("force-unlock --yes: exit %d\n%s%s", code, out, stderr)
	}
	code, sout := stuck.wait(t)
	if code != 1 || !strings.Contains(sout, "the lock is lost and this run stops") {
		t.Fatalf("the force-unlocked run: exit %d, want 1 saying it lost the lock:\n%s", code, sout)
	}
	if code, out := startPod(t, bin, dir, "30ms", "apply", "-f", sp).wait(t); code != 0 {
		t.Fatalf("resume after force-unlock: exit %d\n%s", code, out)
	}
	checkAllDoneOnce(t, dir, loc)
}
