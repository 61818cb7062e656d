package cutover

import "testing"

// The live side is read from the recorded phases alone: the state, the
// plan and status all say it from them.
func TestLiveSide(t *testing.T) {
	for _, c := range []struct {
		phase phase
		rb    rollbackPhase
		want  string
	}{
		{phaseNone, rollbackNone, LiveBlue},
		{phasePrepared, rollbackNone, LiveBlue},
		{phaseFreezing, rollbackNone, LiveBlue},
		{phaseSwitching, rollbackNone, LiveUnknown},
		{phaseSwitched, rollbackNone, LiveGreen},
		{phaseLive, rollbackNone, LiveGreen},
		{phaseDone, rollbackNone, LiveGreen},
		{phaseAborted, rollbackNone, LiveBlue},
		{phaseDone, rollbackFreezing, LiveGreen},
		{phaseDone, rollbackSwitching, LiveUnknown},
		{phaseDone, rollbackSwitchedBack, LiveBlue},
		{phaseDone, rollbackDone, LiveBlue},
	} {
		out := map[string]string{keyPhase: string(c.phase), keyRollbackPhase: string(c.rb)}
		if got := LiveSide(out); got != c.want {
			t.Errorf("phase %q, rollback phase %q: live side %s, want %s", c.phase, c.rb, got, c.want)
		}
	}
	if got := LiveSide(nil); got != LiveBlue {
		t.Errorf("no outputs (never ran, or rolled back): live side %s, want blue", got)
	}
}

func TestFreezeInPlace(t *testing.T) {
	for _, tc := range []struct {
		outputs map[string]string
		want    bool
	}{
		{map[string]string{}, false},
		{map[string]string{keyPhase: string(phasePrepared)}, false},
		{map[string]string{keyPhase: string(phaseFreezing)}, true},
		{map[string]string{keyPhase: string(phaseSwitched)}, true},
		{map[string]string{keyPhase: string(phaseLive)}, false},
		{map[string]string{keyPhase: string(phaseAborted)}, false},
		{map[string]string{keyPhase: string(phaseDone), keyRollbackPhase: string(rollbackFreezing)}, true},
		{map[string]string{keyPhase: string(phaseDone), keyRollbackPhase: string(rollbackDone)}, false},
	} {
		if got := FreezeInPlace(tc.outputs); got != tc.want {
			t.Errorf("%v: FreezeInPlace %t, want %t", tc.outputs, got, tc.want)
		}
	}
}
