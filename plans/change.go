// Package plans holds the plan model (what applying a spec would change) and
// its renderers. It imports nothing of pgshift: it is data and views only.
package plans

// Action is what applying a step would do, as observed on the live databases.
type Action string

const (
	ActionNone        Action = "none"        // ✓ already in place
	ActionCreate      Action = "create"      // +
	ActionChange      Action = "change"      // ~
	ActionDestroy     Action = "destroy"     // -
	ActionWarning     Action = "warning"     // ! nothing blocks, but a reviewer must read this
	ActionBlocker     Action = "blocker"     // ✗ apply would refuse
	ActionUninspected Action = "uninspected" // ? planned offline, live state not read
)

// Change is one step's observed difference between the live state and the spec.
type Change struct {
	Action  Action   `json:"action"`
	Summary string   `json:"summary"`           // one line, shown beside the step ID
	Details []string `json:"details,omitempty"` // SQL to run, "before -> after" lines
	// Warnings and Blockers are findings a step reports beside its action
	// (audit findings, missing privileges). Each says what is wrong and the fix.
	Warnings []string `json:"warnings,omitempty"`
	Blockers []string `json:"blockers,omitempty"`
}

// Precondition is one thing that must hold before a step applies, with its
// live verdict.
type Precondition struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}
