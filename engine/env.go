package engine

import (
	"context"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/spec"
)

// Env is what a step sees while it runs: the spec, both databases, a logger,
// metrics, and the outputs steps record (LSNs, counts) which the engine
// persists in the state file. The executor hands each step a copy whose
// StepID names it.
type Env struct {
	Spec    *spec.Spec
	Source  *Database // blue
	Target  *Database // green
	Log     hclog.Logger
	Metrics *Metrics
	// Progress draws live progress of long work on a terminal; NoProgress
	// elsewhere.
	Progress Progress
	StepID   string
	// Planning is set on the copies BuildPlan hands to steps: what a plan
	// observes and checks reports the servers as they are now, without
	// waiting (for a restarting server, say) as apply does.
	Planning bool

	outputs *outputStore
}

// NewEnv builds the run environment for a spec.
func NewEnv(s *spec.Spec, log hclog.Logger) *Env {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Env{
		Spec:     s,
		Source:   NewDatabase("blue", s.Source),
		Target:   NewDatabase("green", s.Target),
		Log:      log,
		Metrics:  NewMetrics(),
		Progress: NoProgress{},
		outputs:  &outputStore{values: map[string]map[string]string{}},
	}
}

// ForStep is the copy of the environment a step runs with.
func (e *Env) ForStep(id string) *Env {
	c := *e
	c.StepID = id
	c.Log = e.Log.Named(id)
	return &c
}

// Pools opens (or reuses) the pools of both sides, blue first: what most
// observations need.
func (e *Env) Pools(ctx context.Context) (blue, green *pgxpool.Pool, err error) {
	if blue, err = e.Source.Pool(ctx); err != nil {
		return nil, nil, err
	}
	if green, err = e.Target.Pool(ctx); err != nil {
		return nil, nil, err
	}
	return blue, green, nil
}

// Record stores an output of the running step (never a secret). During
// apply and rollback each call is checkpointed to the state file before it
// returns, so a step resumed after a crash finds it: record results (LSNs,
// snapshot names, counts), not a stream of progress.
func (e *Env) Record(key, value string) {
	e.outputs.set(e.StepID, key, value)
}

// Output reads an output recorded by a step in this run or a previous one.
func (e *Env) Output(stepID, key string) (string, bool) {
	return e.outputs.get(stepID, key)
}

// Outputs returns a copy of one step's outputs.
func (e *Env) Outputs(stepID string) map[string]string {
	return e.outputs.all(stepID)
}

// LoadOutputs seeds outputs from a saved state.
func (e *Env) LoadOutputs(stepID string, values map[string]string) {
	for k, v := range values {
		e.outputs.set(stepID, k, v)
	}
}

// OnRecord sets a function called after every Record, outside any lock:
// the executor checkpoints each output to the state file as it is recorded,
// so a step resumed after a crash finds what it recorded before.
func (e *Env) OnRecord(fn func(stepID, key, value string)) {
	e.outputs.mu.Lock()
	defer e.outputs.mu.Unlock()
	e.outputs.hook = fn
}

// Close releases connections.
func (e *Env) Close() {
	e.Source.Close()
	e.Target.Close()
}

type outputStore struct {
	mu     sync.Mutex
	values map[string]map[string]string
	hook   func(step, key, value string)
}

func (o *outputStore) set(step, key, value string) {
	o.mu.Lock()
	if o.values[step] == nil {
		o.values[step] = map[string]string{}
	}
	o.values[step][key] = value
	hook := o.hook
	o.mu.Unlock()
	if hook != nil {
		hook(step, key, value)
	}
}

// clear forgets a step's outputs (after its rollback they describe nothing).
func (o *outputStore) clear(step string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.values, step)
}

func (o *outputStore) get(step, key string) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	v, ok := o.values[step][key]
	return v, ok
}

func (o *outputStore) all(step string) map[string]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]string, len(o.values[step]))
	for k, v := range o.values[step] {
		out[k] = v
	}
	return out
}
