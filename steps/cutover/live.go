package cutover

import "github.com/pgshift/pgshift/steps/stepid"

// The live side is the one the application writes to: blue until a
// cutover switches, green from then on, blue again once a rollback of the
// cutover switched back. The recorded phases (phase.go) are its one source:
// LiveSide reads them, and the output keyLive repeats it in the state each
// time a cutover or rollback settles, outside its pause (each record is a
// durable state write, kept out of the users' downtime).

// The live sides as the state, the plan and status name them.
const (
	LiveBlue    = "blue"
	LiveGreen   = "green"
	LiveUnknown = "unknown" // a killed run left a switch half-done
)

// LiveSide says which side is live from the cutover step's recorded
// outputs. No outputs (the cutover never ran, or was rolled back and its
// outputs cleared) is blue. A switch a killed run left half-done is
// LiveUnknown: status then says how to settle it.
func LiveSide(outputs map[string]string) string {
	ph, rb := phase(outputs[keyPhase]), rollbackPhase(outputs[keyRollbackPhase])
	switch {
	case rb.back():
		return LiveBlue
	case rb == rollbackSwitching, rb == rollbackNone && ph == phaseSwitching:
		return LiveUnknown
	case ph.reached(phaseSwitched):
		return LiveGreen // a rollback frozen but not switched leaves traffic on green
	}
	return LiveBlue
}

// recordLive records the live side the phases now give; called once a
// cutover, abort or rollback has settled, never inside a pause.
func (r *run) recordLive() {
	r.record(keyLive, LiveSide(r.env.Outputs(stepid.Cutover)))
}
