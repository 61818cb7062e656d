package cutover

// phase is where a cutover stands. It is recorded in the state (output
// keyPhase) before each transition, so that any later run, apply or
// rollback, can finish or undo a cutover that was killed.
type phase string

// The phases of a cutover, in order. A freeze is in place from freezing to
// switched (inclusive); live means clients write on green.
const (
	phaseNone      phase = ""
	phasePrepared  phase = "prepared"
	phaseFreezing  phase = "freezing"
	phaseSwitching phase = "switching" // Switch(green) was called: traffic may have moved
	phaseSwitched  phase = "switched"  // traffic on green, still frozen
	phaseLive      phase = "live"
	phaseDone      phase = "done"
	phaseAborted   phase = "aborted" // back on blue, unfrozen: as if none had begun
)

func (p phase) rank() int {
	switch p {
	case phasePrepared:
		return 1
	case phaseFreezing:
		return 2
	case phaseSwitching:
		return 3
	case phaseSwitched:
		return 4
	case phaseLive:
		return 5
	case phaseDone:
		return 6
	}
	return 0 // none, aborted
}

// reached says whether the cutover got to q or past it.
func (p phase) reached(q phase) bool { return p.rank() >= q.rank() }

// frozen says whether the phase leaves a freeze in place.
func (p phase) frozen() bool { return p.reached(phaseFreezing) && !p.reached(phaseLive) }

// rollbackPhase is where the rollback of a cutover stands (output
// keyRollbackPhase): green frozen, traffic switched back, blue live again.
type rollbackPhase string

const (
	rollbackNone         rollbackPhase = ""
	rollbackFreezing     rollbackPhase = "freezing"
	rollbackSwitching    rollbackPhase = "switching"
	rollbackSwitchedBack rollbackPhase = "switched-back"
	rollbackDone         rollbackPhase = "done"
)

// frozen says whether the rollback phase leaves green frozen.
func (p rollbackPhase) frozen() bool { return p == rollbackFreezing || p == rollbackSwitching }

// back says whether traffic was brought back to blue.
func (p rollbackPhase) back() bool { return p == rollbackSwitchedBack || p == rollbackDone }
