package engine

import (
	"context"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/plans"
)

// convergingStep is a fake step whose Apply reconciles drift.
type convergingStep struct{ *fakeStep }

func (convergingStep) Converges() {}

// recheckingStep is a fake step whose verdict depends on its needs.
type recheckingStep struct{ *fakeStep }

func (recheckingStep) Rechecks() {}

// TestApplyConvergesDoneSteps: a done step that converges and observes a
// change runs again, the Rechecker below it runs again, a done step that
// observes nothing is skipped, and a hold keeps all of them as they are.
func TestApplyConvergesDoneSteps(t *testing.T) {
	r := &recorder{}
	pub := convergingStep{r.step("pub")}
	other := convergingStep{r.step("other")}
	plain := r.step("plain", "pub")
	verify := recheckingStep{r.step("verify", "pub")}
	g := mustCompile(t, pub, other, plain, verify)
	path := filepath.Join(t.TempDir(), "s.json")
	spec := testSpec()
	store := openStore(t, path, spec, g)
	if _, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}

	// Nothing drifted: the second apply does nothing.
	res, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Converged) != 0 || len(res.Applied) != 0 || r.count("pub") != 1 || r.count("verify") != 1 {
		t.Fatalf("apply without drift ran steps again: %+v", res)
	}

	// pub drifted (its observation shows a change).
	pub.change = plans.Change{Action: plans.ActionChange, Summary: "+ table public.new"}
	held, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{
		HoldConvergence: func(*Env) string { return "traffic on green" },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(held.Drifted, []string{"pub"}) || r.count("pub") != 1 || r.count("verify") != 1 {
		t.Fatalf("held apply: drifted %v, pub applied %d times, verify %d: want pub drifted and nothing run", held.Drifted, r.count("pub"), r.count("verify"))
	}
	res, err = Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Converged, []string{"pub", "verify"}) {
		t.Fatalf("converged %v, want [pub verify]", res.Converged)
	}
	if r.count("pub") != 2 || r.count("verify") != 2 || r.count("plain") != 1 || r.count("other") != 1 {
		t.Fatalf("applies: pub %d verify %d plain %d other %d; want 2 2 1 1", r.count("pub"), r.count("verify"), r.count("plain"), r.count("other"))
	}
	if got := statuses(t, path); got["pub"] != StatusDone || got["verify"] != StatusDone {
		t.Fatalf("state after converging: %v", got)
	}
	if !res.Complete() {
		t.Fatalf("converging apply incomplete: %+v", res)
	}
}

// TestApplyNeverAppliesABlockerAgain: a done step whose fresh observation
// is a blocker is reported drifted and not applied, also when the blocker
// lists no reasons.
func TestApplyNeverAppliesABlockerAgain(t *testing.T) {
	for _, blockers := range [][]string{nil, {"column public.t.c is an identity on blue"}} {
		r := &recorder{}
		pub := convergingStep{r.step("pub")}
		g := mustCompile(t, pub)
		path := filepath.Join(t.TempDir(), "s.json")
		spec := testSpec()
		store := openStore(t, path, spec, g)
		if _, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
		pub.change = plans.Change{Action: plans.ActionBlocker, Summary: "cannot add column public.t.c", Blockers: blockers}
		res, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.count("pub") != 1 || len(res.Converged) != 0 || !reflect.DeepEqual(res.Drifted, []string{"pub"}) {
			t.Fatalf("blockers %q: pub applied %d times, converged %v, drifted %v: want applied once, reported drifted",
				blockers, r.count("pub"), res.Converged, res.Drifted)
		}
		if got := statuses(t, path); got["pub"] != StatusDone {
			t.Fatalf("blockers %q: state %v, want pub still done", blockers, got)
		}
		if !reflect.DeepEqual(res.Blocked, []string{"pub"}) || !strings.Contains(res.Why["pub"], "cannot add column public.t.c") && !strings.Contains(res.Why["pub"], "identity on blue") {
			t.Fatalf("blockers %q: blocked %v, why %q: want pub blocked with its reason", blockers, res.Blocked, res.Why["pub"])
		}
		// Once traffic may be on green, the same blocker is drift held
		// like any other, not what stops the pipeline.
		held, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{HoldConvergence: func(*Env) string { return "traffic may be on green" }})
		if err != nil {
			t.Fatal(err)
		}
		if len(held.Blocked) != 0 || !reflect.DeepEqual(held.Drifted, []string{"pub"}) || !strings.Contains(held.Why["pub"], "traffic may be on green") {
			t.Fatalf("blockers %q with convergence held: blocked %v, drifted %v, why %q", blockers, held.Blocked, held.Drifted, held.Why["pub"])
		}
	}
}

// TestApplyFailedConvergenceIsNotConverged: a drifted step whose apply
// fails is listed as failed only, not as converged too.
func TestApplyFailedConvergenceIsNotConverged(t *testing.T) {
	r := &recorder{failApply: map[string]bool{}}
	pub := convergingStep{r.step("pub")}
	verify := recheckingStep{r.step("verify", "pub")}
	other := convergingStep{r.step("other")}
	check := recheckingStep{r.step("check", "other")}
	g := mustCompile(t, pub, verify, other, check)
	path := filepath.Join(t.TempDir(), "s.json")
	spec := testSpec()
	store := openStore(t, path, spec, g)
	if _, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	// Both drift; pub's apply fails, and so does check's (a Rechecker
	// applied again because other was).
	pub.change = plans.Change{Action: plans.ActionChange, Summary: "+ table public.new"}
	other.change = plans.Change{Action: plans.ActionChange, Summary: "+ table public.other"}
	r.mu.Lock()
	r.failApply["pub"], r.failApply["check"] = true, true
	r.mu.Unlock()
	res, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, f := range res.Failed {
		failed = append(failed, f.ID)
	}
	sort.Strings(failed)
	if !reflect.DeepEqual(res.Converged, []string{"other"}) || !reflect.DeepEqual(failed, []string{"check", "pub"}) {
		t.Fatalf("converged %v, failed %v: want converged [other], failed [check pub]", res.Converged, failed)
	}
}

// TestApplyBlockedStepStopsWhatNeedsIt: the steps that need a blocked step
// are not run (a pending one stays pending, a done one stays done), and
// the run is not complete.
func TestApplyBlockedStepStopsWhatNeedsIt(t *testing.T) {
	r := &recorder{failApply: map[string]bool{"cutover": true}}
	pub := convergingStep{r.step("pub")}
	plain := r.step("plain", "pub")
	cut := r.step("cutover", "plain")
	g := mustCompile(t, pub, plain, cut)
	path := filepath.Join(t.TempDir(), "s.json")
	spec := testSpec()
	store := openStore(t, path, spec, g)
	if _, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.failApply["cutover"] = false
	r.mu.Unlock()
	pub.change = plans.Change{Action: plans.ActionBlocker, Summary: "a role green lacks", Blockers: []string{"role app is a superuser on blue"}}
	res, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.count("cutover") != 1 || r.count("plain") != 1 || r.count("pub") != 1 {
		t.Fatalf("applies after pub was blocked: pub %d plain %d cutover %d, want 1 1 1 (nothing run)", r.count("pub"), r.count("plain"), r.count("cutover"))
	}
	sort.Strings(res.Stalled)
	if !reflect.DeepEqual(res.Blocked, []string{"pub"}) || !reflect.DeepEqual(res.Stalled, []string{"cutover", "plain"}) || len(res.Failed) != 0 || res.Complete() {
		t.Fatalf("blocked %v, stalled %v, failed %v, complete %v: want pub blocked, plain and cutover stalled, none failed, incomplete",
			res.Blocked, res.Stalled, res.Failed, res.Complete())
	}
	if got := statuses(t, path); got["pub"] != StatusDone || got["plain"] != StatusDone || got["cutover"] == StatusDone {
		t.Fatalf("state %v: want pub and plain still done, cutover not done", got)
	}

	// The cause fixed: pub's observation is a change again; the next apply
	// converges it and runs what was stalled.
	pub.change = plans.Change{Action: plans.ActionChange, Summary: "+ role app"}
	res, err = Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete() || r.count("pub") != 2 || r.count("cutover") != 2 || len(res.Stalled) != 0 {
		t.Fatalf("after the fix: complete %v, pub %d, cutover %d, stalled %v: want complete, pub applied again, cutover run", res.Complete(), r.count("pub"), r.count("cutover"), res.Stalled)
	}
	if got := statuses(t, path); got["cutover"] != StatusDone {
		t.Fatalf("state after the fix %v: want cutover done", got)
	}
}
