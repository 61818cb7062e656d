//go:build pgshift_teststeps

package main

import (
	"context"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/teststeps"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps"
)

// A test build runs the test steps when PGSHIFT_TESTSTEPS_DIR is set; release
// builds do not contain them.
func init() {
	stepsFor = func(spec *spec.Spec) []engine.Step {
		if s, ok := teststeps.FromEnv(); ok {
			return s
		}
		return steps.For(spec)
	}
	planVersions = func(ctx context.Context, env *engine.Env) (string, string, error) {
		if _, ok := teststeps.FromEnv(); ok {
			return "test", "test", nil // the test steps touch no server
		}
		return engine.ServerVersions(ctx, env)
	}
}
