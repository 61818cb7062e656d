package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
)

// fakeStep is a step of pure logic for engine tests.
type fakeStep struct {
	id       string
	needs    []string
	apply    func(ctx context.Context, env *Env) error
	rollback func(ctx context.Context, env *Env) error
	change   plans.Change
	gate     string
}

func (s *fakeStep) ID() string      { return s.id }
func (s *fakeStep) Needs() []string { return s.needs }
func (s *fakeStep) Observe(context.Context, *Env) (plans.Change, error) {
	return s.change, nil
}
func (s *fakeStep) Check(context.Context, *Env) ([]plans.Precondition, error) { return nil, nil }
func (s *fakeStep) Apply(ctx context.Context, env *Env) error {
	if s.apply != nil {
		return s.apply(ctx, env)
	}
	return nil
}
func (s *fakeStep) Rollback(ctx context.Context, env *Env) error {
	if s.rollback != nil {
		return s.rollback(ctx, env)
	}
	return nil
}

type gatedStep struct{ *fakeStep }

func (g gatedStep) Gate() string { return g.gate }

// recorder counts applies and rollbacks per step, in order.
type recorder struct {
	mu        sync.Mutex
	applied   []string
	rolled    []string
	failApply map[string]bool
}

func (r *recorder) step(id string, needs ...string) *fakeStep {
	return &fakeStep{id: id, needs: needs,
		apply: func(context.Context, *Env) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.applied = append(r.applied, id)
			if r.failApply[id] {
				return errors.New("boom in " + id)
			}
			return nil
		},
		rollback: func(context.Context, *Env) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.rolled = append(r.rolled, id)
			return nil
		},
	}
}

func (r *recorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, a := range r.applied {
		if a == id {
			n++
		}
	}
	return n
}

func testSpec() *spec.Spec {
	return &spec.Spec{Version: 1, Name: "orders", Source: spec.Endpoint{DSN: "postgres://u@blue:5432/db"}, Target: spec.Endpoint{DSN: "postgres://u@green:5432/db"}}
}

func mustCompile(t *testing.T, steps ...Step) *Graph {
	t.Helper()
	g, err := Compile(steps)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func openStore(t *testing.T, path string, s *spec.Spec, g *Graph) *StateStore {
	t.Helper()
	st, err := OpenState(path, s, g, StateOptions{Operation: "apply"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func statuses(t *testing.T, path string) map[string]Status {
	t.Helper()
	s, err := ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Status{}
	for _, c := range s.Steps {
		out[c.ID] = c.Status
	}
	return out
}

func TestApplyFailureIsolation(t *testing.T) {
	r := &recorder{failApply: map[string]bool{"b": true}}
	g := mustCompile(t, r.step("a"), r.step("b", "a"), r.step("c", "b"), r.step("d", "c"), r.step("x"), r.step("y", "x"))
	path := filepath.Join(t.TempDir(), "s.json")
	store := openStore(t, path, testSpec(), g)
	res, err := Apply(context.Background(), g, NewEnv(testSpec(), nil), store, ApplyOptions{Parallelism: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed) != 1 || res.Failed[0].ID != "b" || !strings.Contains(res.Failed[0].Err.Error(), "boom in b") {
		t.Fatalf("failed = %+v, want only b as root cause", res.Failed)
	}
	var up []string
	for _, u := range res.Upstream {
		up = append(up, u.ID)
	}
	if !reflect.DeepEqual(up, []string{"c", "d"}) {
		t.Fatalf("upstream-failed = %v, want [c d]", up)
	}
	want := map[string]Status{"a": StatusDone, "b": StatusFailed, "c": StatusUpstreamFailed, "d": StatusUpstreamFailed, "x": StatusDone, "y": StatusDone}
	if got := statuses(t, path); !reflect.DeepEqual(got, want) {
		t.Fatalf("state = %v, want %v", got, want)
	}
	s, _ := ReadState(path)
	if c := s.Step("d"); c.Note != "not run: b failed" {
		t.Fatalf("d's note = %q, want the root cause b", c.Note)
	}
	if c := s.Step("b"); c.Error != "boom in b" {
		t.Fatalf("b's error = %q", c.Error)
	}
	if r.count("c") != 0 || r.count("d") != 0 {
		t.Fatal("dependents of a failed step ran")
	}
}

func TestApplyResumeSkipsDoneAndReappliesRunning(t *testing.T) {
	r := &recorder{failApply: map[string]bool{"c": true}}
	g := mustCompile(t, r.step("a"), r.step("b", "a"), r.step("c", "b"), r.step("d", "c"))
	path := filepath.Join(t.TempDir(), "s.json")
	spec := testSpec()
	store := openStore(t, path, spec, g)
	if _, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	store.Close()

	// Simulate a run killed while b was running: b must run again.
	store = openStore(t, path, spec, g)
	if err := store.UpdateStep("b", func(c *StepState) { c.Status = StatusRunning }); err != nil {
		t.Fatal(err)
	}
	r.failApply = nil
	res, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete() {
		t.Fatalf("second apply incomplete: %+v", res)
	}
	if n := r.count("a"); n != 1 {
		t.Fatalf("a (done) applied %d times, want 1", n)
	}
	if n := r.count("b"); n != 2 {
		t.Fatalf("b (left running) applied %d times, want 2", n)
	}
	if !reflect.DeepEqual(res.Skipped, []string{"a"}) || !reflect.DeepEqual(res.Applied, []string{"b", "c", "d"}) {
		t.Fatalf("skipped %v applied %v", res.Skipped, res.Applied)
	}
	s, _ := ReadState(path)
	if c := s.Step("b"); c.Attempts != 2 {
		t.Fatalf("b attempts = %d, want 2", c.Attempts)
	}
}

func TestApplyMarksRunningBeforeStartAndCheckpointsOutputs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	var seen Status
	var seenOutput string
	a := &fakeStep{id: "a", apply: func(_ context.Context, env *Env) error {
		seen = statuses(t, path)["a"]
		env.Record("lsn", "0/16B3748")
		s, _ := ReadState(path)
		seenOutput = s.Step("a").Outputs["lsn"]
		return errors.New("fails after recording")
	}}
	g := mustCompile(t, a)
	spec := testSpec()
	store := openStore(t, path, spec, g)
	if _, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if seen != StatusRunning {
		t.Fatalf("status on disk while a ran = %q, want running", seen)
	}
	if seenOutput != "0/16B3748" {
		t.Fatalf("output on disk right after Record = %q", seenOutput)
	}
	store.Close()

	// The next run sees the output recorded before the failure.
	var got string
	a.apply = func(_ context.Context, env *Env) error { got, _ = env.Output("a", "lsn"); return nil }
	store = openStore(t, path, spec, g)
	if _, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if got != "0/16B3748" {
		t.Fatalf("resumed step read output %q", got)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("state mode %v, want 0600", info.Mode().Perm())
	}
}

func TestApplyGateAndUntil(t *testing.T) {
	r := &recorder{}
	cut := gatedStep{r.step("cutover", "verify")}
	cut.gate = "pauses writes"
	g := mustCompile(t, r.step("prep"), r.step("verify", "prep"), cut, r.step("after", "cutover"))
	path := filepath.Join(t.TempDir(), "s.json")
	spec := testSpec()
	store := openStore(t, path, spec, g)
	env := NewEnv(spec, nil)

	res, err := Apply(context.Background(), g, env, store, ApplyOptions{Until: "prep"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Applied, []string{"prep"}) || r.count("verify") != 0 {
		t.Fatalf("--until prep applied %v", res.Applied)
	}
	if _, err := Apply(context.Background(), g, env, store, ApplyOptions{Until: "nope"}); err == nil || !strings.Contains(err.Error(), "no such step") {
		t.Fatalf("unknown --until: %v", err)
	}

	res, err = Apply(context.Background(), g, env, store, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Held, []string{"cutover"}) || !reflect.DeepEqual(res.Waiting, []string{"after"}) || len(res.Failed) != 0 {
		t.Fatalf("gate: held %v waiting %v failed %v", res.Held, res.Waiting, res.Failed)
	}
	if got := statuses(t, path); got["cutover"] != StatusPending || got["after"] != StatusPending {
		t.Fatalf("held steps must stay pending: %v", got)
	}
	if res.Gates["cutover"] != "pauses writes" {
		t.Fatalf("gate text %q", res.Gates["cutover"])
	}

	res, err = Apply(context.Background(), g, env, store, ApplyOptions{Approve: map[string]bool{"cutover": true}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete() || !reflect.DeepEqual(res.Applied, []string{"cutover", "after"}) {
		t.Fatalf("approved: %+v", res)
	}
}

func TestRollbackOrderAndBlocking(t *testing.T) {
	r := &recorder{}
	steps := []Step{r.step("a"), r.step("b", "a"), r.step("c", "b"), r.step("x", "a"), r.step("never", "c")}
	g := mustCompile(t, steps...)
	path := filepath.Join(t.TempDir(), "s.json")
	spec := testSpec()
	store := openStore(t, path, spec, g)
	env := NewEnv(spec, nil)
	if _, err := Apply(context.Background(), g, env, store, ApplyOptions{Until: "c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), g, env, store, ApplyOptions{Until: "x"}); err != nil {
		t.Fatal(err)
	}
	targets, _ := RollbackTargets(g, store.Snapshot())
	if want := []string{"x", "c", "b", "a"}; !reflect.DeepEqual(targets, want) {
		t.Fatalf("targets %v, want %v (never is pending)", targets, want)
	}
	res, err := Rollback(context.Background(), g, env, store, RollbackOptions{Parallelism: 1})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, id := range r.rolled {
		pos[id] = i
	}
	if len(r.rolled) != 4 || pos["c"] > pos["b"] || pos["b"] > pos["a"] || pos["x"] > pos["a"] {
		t.Fatalf("rollback order %v: every step must roll back before the steps it needs", r.rolled)
	}
	if !res.Complete() {
		t.Fatalf("rollback incomplete: %+v", res)
	}
	for id, st := range statuses(t, path) {
		if want := StatusRolledBack; id != "never" && st != want {
			t.Fatalf("%s is %s after rollback", id, st)
		}
	}

	// A failing rollback keeps the steps it needs.
	if _, err := Apply(context.Background(), g, env, store, ApplyOptions{Until: "c"}); err != nil {
		t.Fatal(err)
	}
	cs, _ := g.Step("c")
	cs.(*fakeStep).rollback = func(context.Context, *Env) error { return errors.New("cannot drop") }
	res, err = Rollback(context.Background(), g, env, store, RollbackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed) != 1 || res.Failed[0].ID != "c" || len(res.Blocked) != 2 {
		t.Fatalf("failed %v blocked %v", res.Failed, res.Blocked)
	}
	got := statuses(t, path)
	if got["c"] != StatusRollbackFailed || got["b"] != StatusDone || got["a"] != StatusDone {
		t.Fatalf("after failed rollback: %v", got)
	}
}

func TestLockRefusesSecondRun(t *testing.T) {
	g := mustCompile(t, &fakeStep{id: "a"})
	path := filepath.Join(t.TempDir(), "s.json")
	spec := testSpec()
	first := openStore(t, path, spec, g)
	_, err := OpenState(path, spec, g, StateOptions{Operation: "apply"})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	host, _ := os.Hostname()
	if want := "state is locked by pid " + strconv.Itoa(os.Getpid()) + " on " + host + " since "; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("lock message %q, want prefix %q", err, want)
	}
	if info, held := LockHolder(path); !held || info == nil || info.PID != os.Getpid() {
		t.Fatalf("LockHolder = %+v, %v", info, held)
	}
	first.Close()
	if _, held := LockHolder(path); held {
		t.Fatal("lock still held after Close")
	}
	second := openStore(t, path, spec, g)
	second.Close()
}

func TestStateRefusesChangedSpec(t *testing.T) {
	r := &recorder{}
	g := mustCompile(t, r.step("a"))
	path := filepath.Join(t.TempDir(), "s.json")
	spec := testSpec()
	store := openStore(t, path, spec, g)
	if _, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	store.Close()

	changed := testSpec()
	changed.Verify.Mode = "count"
	_, err := OpenState(path, changed, g, StateOptions{})
	var sc *SpecChangedError
	if !errors.As(err, &sc) || !strings.Contains(err.Error(), "--accept-spec-change") {
		t.Fatalf("changed spec: %v", err)
	}
	other := testSpec()
	other.Name = "billing"
	if _, err := OpenState(path, other, g, StateOptions{}); err == nil || !strings.Contains(err.Error(), `belongs to spec "orders"`) {
		t.Fatalf("other spec: %v", err)
	}
	st, err := OpenState(path, changed, g, StateOptions{AcceptSpecChange: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Snapshot().Spec.Hash != changed.Hash() || st.Snapshot().Step("a").Status != StatusDone {
		t.Fatal("accepted spec change must keep progress and record the new hash")
	}
}

// A step cut short by a signal stays running (resumed by the next run, like
// after a kill) and the steps after it stay pending: nothing failed.
func TestApplyInterruptedLeavesStepRunningAndDependentsPending(t *testing.T) {
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	long := &fakeStep{id: "b", needs: []string{"a"}, apply: func(ctx context.Context, _ *Env) error {
		cancel() // the signal arrives while b works
		<-ctx.Done()
		return ctx.Err()
	}}
	g := mustCompile(t, r.step("a"), long, r.step("c", "b"))
	path := filepath.Join(t.TempDir(), "s.json")
	spec := testSpec()
	store := openStore(t, path, spec, g)
	res, err := Apply(ctx, g, NewEnv(spec, nil), store, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed) > 0 || len(res.Upstream) > 0 {
		t.Fatalf("an interrupted run reports failures: failed %v upstream %v", res.Failed, res.Upstream)
	}
	if !reflect.DeepEqual(res.Interrupted, []string{"b"}) || !reflect.DeepEqual(res.NotStarted, []string{"c"}) {
		t.Fatalf("interrupted %v not started %v, want [b] [c]", res.Interrupted, res.NotStarted)
	}
	store.Close()
	want := map[string]Status{"a": StatusDone, "b": StatusRunning, "c": StatusPending}
	for id, st := range want {
		if got := statuses(t, path)[id]; got != st && !(st == StatusPending && got == "") {
			t.Errorf("%s: status %q, want %q", id, got, st)
		}
	}

	// The next run takes b up again and finishes.
	long.apply = nil
	store = openStore(t, path, spec, g)
	res, err = Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{})
	if err != nil || !res.Complete() || !reflect.DeepEqual(res.Applied, []string{"b", "c"}) {
		t.Fatalf("resume: %+v, %v; want b and c applied", res, err)
	}
}

// Knock-on outcomes of an earlier run are not shown as current while the
// next run works: a step marked upstream-failed goes back to pending.
func TestApplyResetsStaleUpstreamFailed(t *testing.T) {
	r := &recorder{failApply: map[string]bool{"a": true}}
	g := mustCompile(t, r.step("a"), r.step("b", "a"))
	path := filepath.Join(t.TempDir(), "s.json")
	spec := testSpec()
	store := openStore(t, path, spec, g)
	if _, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	store.Close()
	if got := statuses(t, path)["b"]; got != StatusUpstreamFailed {
		t.Fatalf("b after a failed: %q, want upstream-failed", got)
	}

	var during Status
	a := &fakeStep{id: "a", apply: func(context.Context, *Env) error {
		during = statuses(t, path)["b"]
		return nil
	}}
	g = mustCompile(t, a, r.step("b", "a"))
	store = openStore(t, path, spec, g)
	defer store.Close()
	if _, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if during != StatusPending {
		t.Fatalf("b while a ran again: %q, want pending", during)
	}
}

// An interrupted rollback blames nothing: the step cut short stays
// rolling-back, and the steps it needs are left for the next run, not
// "kept because a rollback failed".
func TestRollbackInterruptedBlamesNothing(t *testing.T) {
	r := &recorder{}
	g := mustCompile(t, r.step("a"), r.step("b", "a"))
	path := filepath.Join(t.TempDir(), "s.json")
	spec := testSpec()
	store := openStore(t, path, spec, g)
	defer store.Close()
	if _, err := Apply(context.Background(), g, NewEnv(spec, nil), store, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, _ := g.Step("b")
	b.(*fakeStep).rollback = func(ctx context.Context, _ *Env) error {
		cancel()
		<-ctx.Done()
		return ctx.Err()
	}
	res, err := Rollback(ctx, g, NewEnv(spec, nil), store, RollbackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed)+len(res.Blocked) > 0 || !reflect.DeepEqual(res.Interrupted, []string{"b"}) || !reflect.DeepEqual(res.NotStarted, []string{"a"}) {
		t.Fatalf("failed %v blocked %v interrupted %v not started %v; want only b interrupted and a not started", res.Failed, res.Blocked, res.Interrupted, res.NotStarted)
	}
	st := statuses(t, path)
	if st["b"] != StatusRollingBack || st["a"] != StatusDone {
		t.Fatalf("statuses %v, want b rolling-back and a done", st)
	}
	s, _ := ReadState(path)
	if n := s.Step("a").Note; n != "" {
		t.Fatalf("a's note %q, want none", n)
	}
}
