package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/teststeps"
	"github.com/pgshift/pgshift/spec"
)

func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// runCLI runs pgshift in-process and returns stdout, stderr and the exit
// status main would return.
func runCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	err := root.Execute()
	code := exitOK
	var ec *exitCodeError
	var ue *usageError
	switch {
	case err == nil:
	case errors.As(err, &ec):
		code = ec.code
		if ec.err != nil {
			errOut.WriteString("Error: " + ec.err.Error() + "\n")
		}
	case errors.As(err, &ue):
		code = exitUsage
		errOut.WriteString("Error: " + ue.err.Error() + "\n")
	default:
		code = exitError
		errOut.WriteString("Error: " + err.Error() + "\n")
	}
	return out.String(), errOut.String(), code
}

// useTestSteps makes the commands run the server-free test steps in dir.
func useTestSteps(t *testing.T) (dir, sp string) {
	t.Helper()
	dir = t.TempDir()
	t.Setenv(teststeps.EnvDir, dir)
	t.Setenv(teststeps.EnvDelay, "1ms")
	oldSteps, oldVersions := stepsFor, planVersions
	stepsFor = func(*spec.Spec) []engine.Step { s, _ := teststeps.FromEnv(); return s }
	planVersions = func(context.Context, *engine.Env) (string, string, error) { return "13.23", "17.10", nil }
	t.Cleanup(func() { stepsFor, planVersions = oldSteps, oldVersions })
	sp = filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(sp, []byte(crashSpec), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, sp
}

func TestPlanExitCodesAndSavedPlan(t *testing.T) {
	dir, sp := useTestSteps(t)
	planFile := filepath.Join(dir, "plan.json")

	out, _, code := runCLI(t, "", "plan", "-f", sp, "--detailed-exitcode")
	if code != exitChanges || !strings.Contains(out, "Plan: 10 to create, 0 to change, 0 to destroy. 0 warnings, 0 blockers.") {
		t.Fatalf("plan with changes: exit %d\n%s", code, out)
	}
	if _, stderr, code := runCLI(t, "", "plan", "-f", sp, "-out", planFile); code != exitOK {
		t.Fatalf("plan -out: exit %d: %s", code, stderr)
	}
	// The saved plan is still true: apply it part of the way.
	if _, stderr, code := runCLI(t, "", "apply", planFile, "--until", "preflight.source"); code != exitOK {
		t.Fatalf("apply of a fresh plan: exit %d: %s", code, stderr)
	}
	// Now blue/green (the effects) moved on: the same plan is stale.
	_, stderr, code := runCLI(t, "", "apply", planFile)
	want := "Error: saved plan " + planFile + " is stale: blue or green has changed (preflight.source) since it was made. " +
		"Run `pgshift plan -out " + planFile + "` again, review it, and apply the new plan (to resume an interrupted apply, run `pgshift apply -f SPEC` instead)\n"
	if code != exitError || stderr != want {
		t.Fatalf("stale plan: exit %d\n%s\nwant\n%s", code, stderr, want)
	}

	// A plan of another spec value is refused too.
	if _, _, code := runCLI(t, "", "plan", "-f", sp, "-out", planFile); code != exitOK {
		t.Fatal("plan -out")
	}
	edited := strings.Replace(crashSpec, "version: 1\n", "version: 1\nverify:\n  mode: count\n", 1)
	os.WriteFile(sp, []byte(edited), 0o600)
	if _, stderr, code := runCLI(t, "", "apply", planFile); code != exitError || !strings.Contains(stderr, "is stale: the spec has changed since it was made") {
		t.Fatalf("changed spec: exit %d %s", code, stderr)
	}
	os.WriteFile(sp, []byte(crashSpec), 0o600)

	if out, stderr, code := runCLI(t, "", "apply", "-f", sp); code != exitOK || !strings.Contains(out, "Apply complete: all 10 steps done (9 applied, 1 already done)") {
		t.Fatalf("apply: exit %d\n%s%s", code, out, stderr)
	}
	out, _, code = runCLI(t, "", "plan", "-f", sp, "--detailed-exitcode")
	if code != exitOK || !strings.Contains(out, "No changes. blue and green already match the spec.") {
		t.Fatalf("plan after apply: exit %d\n%s", code, out)
	}
}

func TestApplyRefusedWhileLocked(t *testing.T) {
	dir, sp := useTestSteps(t)
	lock, err := engine.AcquireLock(filepath.Join(dir, "crash-test.pgshift-state.json"), "apply", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	_, stderr, code := runCLI(t, "", "apply", "-f", sp)
	if code != exitError || !strings.Contains(stderr, "Error: state is locked by pid ") || !strings.Contains(stderr, "(pgshift apply)") {
		t.Fatalf("locked: exit %d %s", code, stderr)
	}
	if effects, _ := teststeps.ReadEffects(dir); len(effects) != 0 {
		t.Fatalf("a refused apply changed something: %v", effects)
	}
}

func TestApplyFailureStatusAndRollback(t *testing.T) {
	dir, sp := useTestSteps(t)
	t.Setenv(teststeps.EnvFail, "source.slot")
	out, _, code := runCLI(t, "", "apply", "-f", sp, "--log-level", "error")
	if code != exitError || !strings.Contains(out, "✗ source.slot failed: failing as asked") ||
		!strings.Contains(out, "not run, they need it: target.subscription, replication.catchup, verify") ||
		!strings.Contains(out, "pgshift apply -f "+sp) {
		t.Fatalf("failed apply: exit %d\n%s", code, out)
	}
	st, err := engine.ReadState(filepath.Join(dir, "crash-test.pgshift-state.json"))
	if err != nil || st.Next != "source.slot failed: fix the cause, then run pgshift apply -f "+sp {
		t.Fatalf("state's next step: %q %v", st.Next, err)
	}
	out, _, _ = runCLI(t, "", "status", "-f", sp, "--offline")
	for _, want := range []string{"source.slot          failed", "not run: source.slot failed", "Fix the failed step, then continue with: pgshift apply -f " + sp} {
		if !strings.Contains(out, want) {
			t.Fatalf("status lacks %q:\n%s", want, out)
		}
	}
	// Without --yes and without a "yes", nothing is undone.
	if _, _, code := runCLI(t, "no\n", "rollback", "-f", sp); code != exitError {
		t.Fatal("rollback went on without confirmation")
	}
	if effects, _ := teststeps.ReadEffects(dir); len(effects) != 6 {
		t.Fatalf("effects after refused rollback: %v", effects)
	}
	out, _, code = runCLI(t, "yes\n", "rollback", "-f", sp, "--log-level", "error")
	if code != exitOK || !strings.Contains(out, "- target.schema") || !strings.Contains(out, "Rollback complete: 7 rolled back.") {
		t.Fatalf("rollback: exit %d\n%s", code, out)
	}
	if effects, _ := teststeps.ReadEffects(dir); len(effects) != 0 {
		t.Fatalf("effects after rollback: %v", effects)
	}
}
