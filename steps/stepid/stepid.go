// Package stepid names the steps of an upgrade. The IDs are a contract:
// plans, state files, metrics and logs carry them, and step packages name
// the steps they need by them, so they never change.
package stepid

const (
	PreflightSource = "preflight.source"    // checks blue
	PreflightTarget = "preflight.target"    // checks green
	Audit           = "audit"               // the compatibility report
	Roles           = "target.roles"        // blue's roles on green
	Schema          = "target.schema"       // blue's schema on green
	Settings        = "target.settings"     // blue's settings, and the spec's, on green
	Publication     = "source.publication"  // blue publishes the selected tables
	Slot            = "source.slot"         // blue keeps WAL for green
	Copy            = "target.copy"         // pgshift's own snapshot copy
	Subscription    = "target.subscription" // green subscribes to blue
	Catchup         = "replication.catchup" // green close behind blue
	Verify          = "verify"              // both sides hold the same rows
	Cutover         = "cutover"             // the application moves to green
)

// VerifyResult is the output of the verify step that the cutover reads:
// "passed" or "failed".
const VerifyResult = "result"
