// Package steps holds the real steps of an upgrade, one file per step kind
// (the cutover, the largest, in its own package steps/cutover).
// All SQL lives here. Each file registers its constructor in init, so adding
// a step kind touches no shared list.
package steps

import (
	"sort"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/cutover"
)

// constructor builds the steps of one kind for a spec; it returns none when
// the spec does not call for that kind (for example target.copy under the
// subscription copy method).
type constructor func(spec *spec.Spec) []engine.Step

var constructors []constructor

func register(c constructor) { constructors = append(constructors, c) }

func init() {
	register(func(s *spec.Spec) []engine.Step { return []engine.Step{cutover.New(s)} })
}

// For returns every step the spec calls for, sorted by ID; the engine orders
// them by their dependencies.
func For(spec *spec.Spec) []engine.Step {
	var all []engine.Step
	for _, c := range constructors {
		all = append(all, c(spec)...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID() < all[j].ID() })
	return all
}
