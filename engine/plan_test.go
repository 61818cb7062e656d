package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/plans"
)

func fakeVersions(context.Context, *Env) (string, string, error) { return "13.23", "17.10", nil }

func TestPlanObservesInOrderAndChecksOnlyReadySteps(t *testing.T) {
	a := &fakeStep{id: "a", change: plans.Change{Action: plans.ActionNone, Summary: "in place"}}
	b := &fakeStep{id: "b", needs: []string{"a"}, change: plans.Change{Action: plans.ActionCreate, Summary: "CREATE"}}
	c := &checkedStep{fakeStep{id: "c", needs: []string{"b"}, change: plans.Change{Action: plans.ActionCreate}}}
	d := &checkedStep{fakeStep{id: "d", needs: []string{"a"}, change: plans.Change{Action: plans.ActionChange}}}
	g := mustCompile(t, d, c, b, a)
	p, err := BuildPlan(context.Background(), g, NewEnv(testSpec(), nil), PlanOptions{Versions: fakeVersions})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range p.Steps {
		ids = append(ids, s.ID)
	}
	if strings.Join(ids, ",") != "a,b,c,d" {
		t.Fatalf("plan order %v", ids)
	}
	if len(p.Steps[2].Preconditions) != 0 {
		t.Fatal("c needs b, which is pending: its preconditions must not be checked yet")
	}
	if len(p.Steps[3].Preconditions) != 1 || p.Summary.Blockers != 1 {
		t.Fatalf("d's failed precondition must count as a blocker: %+v", p.Summary)
	}
	if p.Blue.Version != "13.23" || p.Fingerprint == "" || p.SpecHash == "" {
		t.Fatalf("plan header: %+v", p)
	}
}

type checkedStep struct{ fakeStep }

func (s *checkedStep) Check(context.Context, *Env) ([]plans.Precondition, error) {
	return []plans.Precondition{{Name: "slot free", OK: false, Detail: "max_replication_slots reached: raise it"}}, nil
}

func TestSavedPlanRefusedWhenStale(t *testing.T) {
	step := &fakeStep{id: "source.publication", change: plans.Change{Action: plans.ActionCreate, Summary: "CREATE PUBLICATION"}}
	g := mustCompile(t, step)
	spec := testSpec()
	env := NewEnv(spec, nil)
	opts := PlanOptions{Versions: fakeVersions}
	saved, err := BuildPlan(context.Background(), g, env, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckSavedPlan(context.Background(), saved, "plan.json", g, env, opts); err != nil {
		t.Fatalf("fresh plan refused: %v", err)
	}

	// Live state moved on: the publication now exists.
	step.change = plans.Change{Action: plans.ActionNone, Summary: "publication exists"}
	err = CheckSavedPlan(context.Background(), saved, "plan.json", g, env, opts)
	var stale *StalePlanError
	if !errors.As(err, &stale) {
		t.Fatalf("moved live state: %v", err)
	}
	want := "saved plan plan.json is stale: blue or green has changed (source.publication) since it was made. Run `pgshift plan -out plan.json` again, review it, and apply the new plan (to resume an interrupted apply, run `pgshift apply -f SPEC` instead)"
	if err.Error() != want {
		t.Fatalf("message:\n%s\nwant\n%s", err, want)
	}
	step.change = plans.Change{Action: plans.ActionCreate, Summary: "CREATE PUBLICATION"}

	// The spec changed.
	spec2 := testSpec()
	spec2.Sequences.Margin = 5
	err = CheckSavedPlan(context.Background(), saved, "plan.json", g, NewEnv(spec2, nil), opts)
	if !errors.As(err, &stale) || !strings.Contains(err.Error(), "the spec has changed since it was made") {
		t.Fatalf("changed spec: %v", err)
	}

	// An offline plan observed nothing.
	off, _ := BuildPlan(context.Background(), g, env, PlanOptions{Offline: true})
	if err := CheckSavedPlan(context.Background(), off, "plan.json", g, env, opts); err == nil || !strings.Contains(err.Error(), "--offline") {
		t.Fatalf("offline plan: %v", err)
	}
}
