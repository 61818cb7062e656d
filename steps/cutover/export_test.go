package cutover

import (
	"context"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/switcher"
)

// What the integration tests (package cutover_test, which runs the real
// pipeline of package steps) reach inside the cutover.

type StepT = cutoverStep

const (
	CoPhase      = keyPhase
	CoConfirmed  = keyConfirmed
	CoPauseMS    = keyPauseMS
	RbPauseMS    = keyRollbackPauseMS
	PhaseAborted = string(phaseAborted)
)

var (
	FailedPreconditions = failedPreconditions
	NewSwitchDriver     = newSwitchDriver
)

// NewStep is the cutover step with a hook run at named stages of the
// freeze (nil: none).
func NewStep(s *spec.Spec, hook func(stage string) error) *cutoverStep {
	return &cutoverStep{spec: s, hook: hook}
}

// ConfirmThroughSwitch runs the write through cutover.confirm.dsn alone.
func ConfirmThroughSwitch(ctx context.Context, step *cutoverStep, env *engine.Env) error {
	r, err := step.open(ctx, env)
	if err != nil {
		return err
	}
	defer r.close()
	return r.confirmThroughSwitch(ctx)
}

// SetDriver replaces how the step builds its switch driver (tests wrap the
// real one to break it at a precise moment).
func (s *cutoverStep) SetDriver(build func(*spec.Spec) (switcher.Driver, error)) { s.newDriver = build }

// SetHook replaces the step's stage hook (nil: none).
func (s *cutoverStep) SetHook(hook func(stage string) error) { s.hook = hook }

// FrozenPhase says whether a recorded phase leaves a freeze in place.
func FrozenPhase(p string) bool { return phase(p).frozen() }
