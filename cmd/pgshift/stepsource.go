package main

import (
	"context"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps"
)

// stepsFor gives the steps of a spec. Release builds use the real steps; a
// build with the pgshift_teststeps tag swaps in test steps (teststeps.go).
var stepsFor = steps.For

// planVersions reads both servers' versions for a plan; nil queries them.
// Only a test build replaces it, when its steps touch no server.
var planVersions func(ctx context.Context, env *engine.Env) (blue, green string, err error)

// compileSpec builds the DAG of a spec's steps.
func compileSpec(spec *spec.Spec) (*engine.Graph, error) {
	g, err := engine.Compile(stepsFor(spec))
	if err != nil {
		return nil, &exitCodeError{code: exitError, err: err}
	}
	return g, nil
}
