package engine

import (
	"github.com/hashicorp/go-hclog"
)

// Env is what a step sees while it runs: the spec, both databases and a
// logger. The engine builds one per run.
type Env struct {
	Spec   *Spec
	Source *Database // blue
	Target *Database // green
	Log    hclog.Logger
}

// NewEnv builds the run environment for a spec.
func NewEnv(spec *Spec, log hclog.Logger) *Env {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Env{
		Spec:   spec,
		Source: NewDatabase("blue", spec.Source),
		Target: NewDatabase("green", spec.Target),
		Log:    log,
	}
}

// Close releases connections.
func (e *Env) Close() {
	e.Source.Close()
	e.Target.Close()
}
