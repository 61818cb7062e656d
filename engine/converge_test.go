package engine

import (
	"context"
	"path/filepath"
	"reflect"
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
