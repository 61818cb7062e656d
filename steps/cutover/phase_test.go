package cutover

import "testing"

// The recorded phase alone decides what a later run does: finish, undo, or
// leave alone. These are the facts it reads.
func TestPhases(t *testing.T) {
	order := []phase{phasePrepared, phaseFreezing, phaseSwitching, phaseSwitched, phaseLive, phaseDone}
	for i, p := range order {
		for j, q := range order {
			if got := p.reached(q); got != (i >= j) {
				t.Errorf("%q.reached(%q) = %v", p, q, got)
			}
		}
	}
	frozen := map[phase]bool{phaseFreezing: true, phaseSwitching: true, phaseSwitched: true}
	for _, p := range append(order, phaseNone, phaseAborted) {
		if p.frozen() != frozen[p] {
			t.Errorf("%q.frozen() = %v", p, p.frozen())
		}
	}
	if phaseAborted.reached(phasePrepared) {
		t.Errorf("an aborted cutover counts as started")
	}
	for p, want := range map[rollbackPhase][2]bool{ // frozen, back
		rollbackNone: {false, false}, rollbackFreezing: {true, false}, rollbackSwitching: {true, false},
		rollbackSwitchedBack: {false, true}, rollbackDone: {false, true},
	} {
		if p.frozen() != want[0] || p.back() != want[1] {
			t.Errorf("%q: frozen %v back %v, want %v", p, p.frozen(), p.back(), want)
		}
	}
	// Traffic may be on green once the switch was called, until a rollback
	// brought it back.
	for _, c := range []struct {
		out  map[string]string
		want bool
	}{
		{map[string]string{keyPhase: "freezing"}, false},
		{map[string]string{keyPhase: "switching"}, true},
		{map[string]string{keyPhase: "done"}, true},
		{map[string]string{keyPhase: "done", keyRollbackPhase: "freezing"}, true},
		{map[string]string{keyPhase: "done", keyRollbackPhase: "switched-back"}, false},
		{map[string]string{keyPhase: "aborted"}, false},
	} {
		if got := TrafficMayBeOnGreen(c.out); got != c.want {
			t.Errorf("TrafficMayBeOnGreen(%v) = %v", c.out, got)
		}
	}
}
