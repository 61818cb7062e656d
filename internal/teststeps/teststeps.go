// Package teststeps provides slow, idempotent steps that need no server: each
// records its effect, keyed by its ID, in a folder, and journals every Apply
// and Rollback it starts. They exist to test the engine and the CLI (the
// crash test kills a real pgshift binary running them); pgshift contains
// them only when built with the pgshift_teststeps tag.
package teststeps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/plans"
)

// Environment variables of a pgshift built with the pgshift_teststeps tag.
const (
	EnvDir   = "PGSHIFT_TESTSTEPS_DIR"   // folder of effects.json and journal; unset: the real steps
	EnvDelay = "PGSHIFT_TESTSTEPS_DELAY" // how long each Apply takes (default 20ms)
	EnvFail  = "PGSHIFT_TESTSTEPS_FAIL"  // comma-separated IDs whose Apply fails
	EnvGate  = "PGSHIFT_TESTSTEPS_GATE"  // "1": add a gated cutover step
)

// Shape is the test DAG: the agreed step IDs and needs, without the cutover.
var Shape = []struct {
	ID    string
	Needs []string
}{
	{"preflight.source", nil},
	{"preflight.target", nil},
	{"audit", []string{"preflight.source", "preflight.target"}},
	{"target.roles", []string{"audit"}},
	{"target.schema", []string{"target.roles"}},
	{"source.publication", []string{"audit"}},
	{"source.slot", []string{"source.publication"}},
	{"target.subscription", []string{"target.schema", "source.slot"}},
	{"replication.catchup", []string{"target.subscription"}},
	{"verify", []string{"replication.catchup"}},
}

// FromEnv builds the test steps when EnvDir is set.
func FromEnv() ([]engine.Step, bool) {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		return nil, false
	}
	delay := 20 * time.Millisecond
	if d, err := time.ParseDuration(os.Getenv(EnvDelay)); err == nil {
		delay = d
	}
	fail := map[string]bool{}
	for _, id := range strings.Split(os.Getenv(EnvFail), ",") {
		fail[strings.TrimSpace(id)] = true
	}
	var out []engine.Step
	for _, s := range Shape {
		out = append(out, &Step{StepID: s.ID, NeedIDs: s.Needs, Dir: dir, Delay: delay, Fail: fail[s.ID]})
	}
	if os.Getenv(EnvGate) == "1" {
		out = append(out, &GatedStep{Step{StepID: "cutover", NeedIDs: []string{"verify"}, Dir: dir, Delay: delay, Fail: fail["cutover"]}})
	}
	return out, true
}

// Step is an idempotent test step. Apply checks that the steps it needs
// recorded their token output (so lost outputs show), waits, adds its
// effect unless present, records its token, and waits again (so that kills
// land both before and after the effect).
type Step struct {
	StepID  string
	NeedIDs []string
	Dir     string
	Delay   time.Duration
	Fail    bool
}

func (s *Step) ID() string      { return s.StepID }
func (s *Step) Needs() []string { return s.NeedIDs }

func (s *Step) Observe(context.Context, *engine.Env) (plans.Change, error) {
	effects, err := ReadEffects(s.Dir)
	if err != nil {
		return plans.Change{}, err
	}
	if effects[s.StepID] > 0 {
		return plans.Change{Action: plans.ActionNone, Summary: "effect present"}, nil
	}
	return plans.Change{Action: plans.ActionCreate, Summary: "add effect " + s.StepID}, nil
}

func (s *Step) Describe() plans.Change {
	return plans.Change{Summary: "add effect " + s.StepID, Details: []string{"effects.json: " + s.StepID + " = 1"}}
}

func (s *Step) DescribeRollback() string { return "remove effect " + s.StepID }

func (s *Step) Check(context.Context, *engine.Env) ([]plans.Precondition, error) { return nil, nil }

func (s *Step) Apply(ctx context.Context, env *engine.Env) error {
	if err := journal(s.Dir, "apply", s.StepID); err != nil {
		return err
	}
	for _, n := range s.NeedIDs {
		if tok, _ := env.Output(n, "token"); tok != n+"-token" {
			return fmt.Errorf("output token of %s is %q, want %q: outputs were lost", n, tok, n+"-token")
		}
	}
	if s.Fail {
		return errors.New("failing as asked by " + EnvFail)
	}
	if err := sleep(ctx, s.Delay/2); err != nil {
		return err
	}
	if err := setEffect(s.Dir, s.StepID, true); err != nil {
		return err
	}
	env.Record("token", s.StepID+"-token")
	return sleep(ctx, s.Delay-s.Delay/2)
}

func (s *Step) Rollback(ctx context.Context, env *engine.Env) error {
	if err := journal(s.Dir, "rollback", s.StepID); err != nil {
		return err
	}
	if err := sleep(ctx, s.Delay/2); err != nil {
		return err
	}
	return setEffect(s.Dir, s.StepID, false)
}

func (s *Step) Report(context.Context, *engine.Env) ([]string, error) {
	effects, err := ReadEffects(s.Dir)
	if err != nil {
		return nil, err
	}
	return []string{fmt.Sprintf("effect count %d", effects[s.StepID])}, nil
}

// GatedStep is a Step that needs approval, like the cutover.
type GatedStep struct{ Step }

func (g *GatedStep) Gate() string { return "the test cutover needs approval" }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// JournalFile lists, one line each, "apply ID PID" or "rollback ID PID" for
// every Apply and Rollback started, appended and synced before the work.
const JournalFile = "journal"

// EffectsFile maps each step ID to how many times its effect was added.
const EffectsFile = "effects.json"

var mu sync.Mutex // one pgshift process at a time holds the state lock

func journal(dir, op, id string) error {
	mu.Lock()
	defer mu.Unlock()
	f, err := os.OpenFile(filepath.Join(dir, JournalFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s %s %d\n", op, id, os.Getpid()); err != nil {
		return err
	}
	return f.Sync()
}

// ReadEffects reads the effects file (empty when absent).
func ReadEffects(dir string) (map[string]int, error) {
	data, err := os.ReadFile(filepath.Join(dir, EffectsFile))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]int{}, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]int{}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("effects file damaged: %w", err)
	}
	return m, nil
}

// setEffect adds (once) or removes a step's effect, atomically.
func setEffect(dir, id string, present bool) error {
	mu.Lock()
	defer mu.Unlock()
	m, err := ReadEffects(dir)
	if err != nil {
		return err
	}
	switch {
	case present && m[id] > 0, !present && m[id] == 0:
		return nil // idempotent: already so
	case present:
		m[id]++
	default:
		delete(m, id)
	}
	data, _ := json.Marshal(m) // sorted keys
	tmp, err := os.CreateTemp(dir, ".effects-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, EffectsFile)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
