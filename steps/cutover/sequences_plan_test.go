package cutover

import (
	"math"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pg"
)

func seqState(name string, inc, min, max int64, called bool, last int64) SequenceState {
	return SequenceState{Schema: "public", Name: name, Increment: inc, Min: min, Max: max, Readable: true, Called: called, Last: last}
}

func TestPlanSequenceSync(t *testing.T) {
	src := []SequenceState{
		seqState("asc", 1, 1, math.MaxInt64, true, 500),
		seqState("desc", -1, math.MinInt64, -1, true, -500),
		seqState("near_max", 1, 1, 32767, true, 32000),
		seqState("near_min", -5, -1000, -1, true, -990),
		seqState("never", 1, 1, math.MaxInt64, false, 42), // RESTART WITH 42, never called since
		seqState("target_ahead", 1, 1, math.MaxInt64, true, 10),
		seqState("only_source", 1, 1, 100, true, 1),
		seqState("flipped", 1, 1, 100, true, 1),
	}
	dst := []SequenceState{
		seqState("asc", 1, 1, math.MaxInt64, false, 1),
		seqState("desc", -1, math.MinInt64, -1, false, -1),
		seqState("near_max", 1, 1, 32767, false, 1),
		seqState("near_min", -5, -1000, -1, false, -1),
		seqState("never", 1, 1, math.MaxInt64, false, 1),
		seqState("target_ahead", 1, 1, math.MaxInt64, true, 5000),
		seqState("only_target", 1, 1, 100, false, 1),
		seqState("flipped", -1, -100, -1, false, -1),
	}
	report, plan := planSequenceSync(src, dst, 1000)

	got := map[string]SequenceSync{}
	for _, s := range report.Synced {
		got[s.Sequence] = s
	}
	want := map[string]SequenceSync{
		"public.asc":          {Value: 1500, IsCalled: true},
		"public.desc":         {Value: -1500, IsCalled: true},
		"public.near_max":     {Value: 32767, IsCalled: true, Clamped: true},
		"public.near_min":     {Value: -1000, IsCalled: true, Clamped: true},
		"public.never":        {Value: 42, IsCalled: false},
		"public.target_ahead": {Value: 5000, IsCalled: true, Kept: true},
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: not in the report", name)
			continue
		}
		if g.Value != w.Value || g.IsCalled != w.IsCalled || g.Clamped != w.Clamped || g.Kept != w.Kept {
			t.Errorf("%s: got value=%d called=%v clamped=%v kept=%v, want value=%d called=%v clamped=%v kept=%v",
				name, g.Value, g.IsCalled, g.Clamped, g.Kept, w.Value, w.IsCalled, w.Clamped, w.Kept)
		}
	}
	if got["public.never"].SourceLast != nil {
		t.Errorf("never: SourceLast should be nil for a sequence never called")
	}
	if len(report.Synced) != len(want) {
		t.Errorf("synced %d sequences, want %d", len(report.Synced), len(want))
	}
	if len(plan.names) != 5 { // all but the kept one
		t.Errorf("plan sets %d sequences (%v), want 5", len(plan.names), plan.names)
	}
	if len(report.OnlyOnSource) != 1 || report.OnlyOnSource[0] != "public.only_source" {
		t.Errorf("OnlyOnSource = %v", report.OnlyOnSource)
	}
	if len(report.OnlyOnTarget) != 1 || report.OnlyOnTarget[0] != "public.only_target" {
		t.Errorf("OnlyOnTarget = %v", report.OnlyOnTarget)
	}
	if len(report.Mismatched) != 1 || report.Mismatched[0] != "public.flipped" {
		t.Errorf("Mismatched = %v", report.Mismatched)
	}
	// only_source, flipped and the two clamped sequences.
	if n := len(report.Problems()); n != 4 {
		t.Errorf("%d problems, want 4: %q", n, report.Problems())
	}
}

func TestAddClampNoOverflow(t *testing.T) {
	if v, c := addClamp(math.MaxInt64-5, 1000, 1, math.MaxInt64); v != math.MaxInt64 || !c {
		t.Errorf("near MaxInt64: %d %v", v, c)
	}
	if v, c := addClamp(math.MinInt64+5, -1000, math.MinInt64, -1); v != math.MinInt64 || !c {
		t.Errorf("near MinInt64: %d %v", v, c)
	}
	if v, c := addClamp(10, 5, 1, 100); v != 15 || c {
		t.Errorf("plain: %d %v", v, c)
	}
}

func TestIsTrue(t *testing.T) {
	for _, v := range []string{"on", "true", "1", "yes", "ON"} {
		if !pg.IsTrue(v) {
			t.Errorf("isTrue(%q) = false", v)
		}
	}
	for _, v := range []string{"off", "false", "0", "no", ""} {
		if pg.IsTrue(v) {
			t.Errorf("isTrue(%q) = true", v)
		}
	}
}

// TestCyclingSequenceNeverRunsOut: a CYCLE sequence held at its bound is
// not a problem (its next value starts over), a sequence without CYCLE is.
func TestCyclingSequenceNeverRunsOut(t *testing.T) {
	cycling := seqState("ring", 1, 1, 100, true, 99)
	cycling.Cycle = true
	src := []SequenceState{cycling, seqState("plain", 1, 1, 100, true, 99)}
	dstCycling := seqState("ring", 1, 1, 100, false, 1)
	dstCycling.Cycle = true
	dst := []SequenceState{dstCycling, seqState("plain", 1, 1, 100, false, 1)}
	report, _ := planSequenceSync(src, dst, 1000)
	problems := report.Problems()
	if len(problems) != 1 || !strings.Contains(problems[0], "public.plain") || !strings.Contains(problems[0], "run out") {
		t.Fatalf("problems %q, want one for public.plain only (public.ring cycles)", problems)
	}
}
