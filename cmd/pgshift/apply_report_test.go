package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/teststeps"
)

// A done step that drifted is printed with why it was left as it is; one
// blocked by its own observation stops the run with exit status 1 and the
// command to go on, while drift held because traffic may be on green does
// not fail the run.
func TestReportApplyDrift(t *testing.T) {
	g, err := engine.Compile([]engine.Step{&teststeps.Step{StepID: "a"}, &teststeps.Step{StepID: "b", NeedIDs: []string{"a"}}})
	if err != nil {
		t.Fatal(err)
	}
	a := &applyArgs{}
	a.spec.file = "shop.yaml"
	why := "green's public.notes already holds 100 rows from before it left the replication: TRUNCATE it on green, then apply"

	var out strings.Builder
	err = reportApply(&out, &engine.ApplyResult{Skipped: []string{"a"}, Drifted: []string{"b"}, Blocked: []string{"b"}, Stalled: []string{"c"}, Why: map[string]string{"b": why}}, g, a, "shop.state.json")
	var ec *exitCodeError
	if !errors.As(err, &ec) || ec.code != exitError || !strings.Contains(err.Error(), "b blocked") {
		t.Fatalf("blocked: err = %v, want exit status %d naming b", err, exitError)
	}
	for _, want := range []string{"Apply stopped short", "b blocked until the cause is fixed", "were not run (what they build on is no longer what the spec and the servers say): c.", "pgshift apply -f shop.yaml", "! b: " + why} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("blocked: output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Apply complete") {
		t.Errorf("blocked: output says the apply is complete:\n%s", out.String())
	}
	if next := nextCommand(&engine.ApplyResult{Blocked: []string{"b"}}, a, false); !strings.Contains(next, "b blocked") {
		t.Errorf("the state's next command %q does not name the blocked step", next)
	}

	out.Reset()
	held := "traffic may be on green: the cutover started"
	if err := reportApply(&out, &engine.ApplyResult{Skipped: []string{"a"}, Drifted: []string{"b"}, Why: map[string]string{"b": held}}, g, a, "shop.state.json"); err != nil {
		t.Fatalf("held drift: err = %v, want none", err)
	}
	for _, want := range []string{"Apply complete", "1 drifted and left as they are (b)", "! b: " + held} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("held drift: output lacks %q:\n%s", want, out.String())
		}
	}
}
