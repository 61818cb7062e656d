package plans

// FormatVersion is the version of the JSON plan format (see docs/plan-format.md).
// It changes only when a field is removed or changes meaning; new fields are
// added without a bump.
const FormatVersion = 1

// Plan is what applying a spec would change, step by step, as observed on the
// live databases (or described offline). It is data only: Text, Markdown and
// JSON render it, and a saved plan is its JSON form.
type Plan struct {
	FormatVersion int    `json:"format_version"`
	Name          string `json:"name"`
	Blue          Server `json:"blue"`
	Green         Server `json:"green"`
	// Offline is true when no database was read: every step is uninspected.
	Offline bool   `json:"offline"`
	Steps   []Step `json:"steps"`
	// Summary is filled by Summarize; renderers call it themselves.
	Summary Summary `json:"summary"`

	// SpecFile, SpecHash and Fingerprint tie a saved plan to what it was made
	// from: apply refuses the plan when the spec's hash or a fresh observation's
	// fingerprint differs. Fingerprint is empty for an offline plan.
	SpecFile    string `json:"spec_file,omitempty"`
	SpecHash    string `json:"spec_hash,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// SpecVars and SpecVarsFile are the template inputs the spec was
	// rendered with (saved plans only), so that `apply PLAN` renders the same
	// spec. Template variables never hold secrets.
	SpecVars     map[string]string `json:"spec_vars,omitempty"`
	SpecVarsFile string            `json:"spec_vars_file,omitempty"`
}

// Server is one side of the upgrade as the plan shows it.
type Server struct {
	Address string `json:"address"`           // DSN without password: postgres://user@host:port/db
	Version string `json:"version,omitempty"` // server_version, "" when not inspected
}

// Step is one step's line in the plan.
type Step struct {
	ID    string   `json:"id"`
	Needs []string `json:"needs"`
	Change
	// Preconditions are checked only when every step this one needs is already
	// in place, so that the verdict is the one apply would see.
	Preconditions []Precondition `json:"preconditions,omitempty"`
}

// Summary counts the plan's steps by action, and its findings.
type Summary struct {
	Create      int `json:"create"`
	Change      int `json:"change"`
	Destroy     int `json:"destroy"`
	InPlace     int `json:"in_place"`
	Uninspected int `json:"uninspected"`
	Warnings    int `json:"warnings"`
	Blockers    int `json:"blockers"`
}

// Summarize counts actions and findings and stores the result in p.Summary.
// A step whose action is warning (or blocker) without listing any counts as
// one finding, so that every ! and ✗ line is counted.
func (p *Plan) Summarize() Summary {
	var s Summary
	for _, st := range p.Steps {
		switch st.Action {
		case ActionCreate:
			s.Create++
		case ActionChange:
			s.Change++
		case ActionDestroy:
			s.Destroy++
		case ActionNone:
			s.InPlace++
		case ActionUninspected:
			s.Uninspected++
		}
		s.Warnings += len(st.Warnings)
		if st.Action == ActionWarning && len(st.Warnings) == 0 {
			s.Warnings++
		}
		s.Blockers += len(st.Blockers) + failedPreconditions(st.Preconditions)
		if st.Action == ActionBlocker && len(st.Blockers) == 0 {
			s.Blockers++
		}
	}
	p.Summary = s
	return s
}

func failedPreconditions(pcs []Precondition) int {
	n := 0
	for _, pc := range pcs {
		if !pc.OK {
			n++
		}
	}
	return n
}

// HasChanges says whether apply would do anything: a step to create, change
// or destroy, or one not inspected (offline, it may have work to do).
func (s Summary) HasChanges() bool {
	return s.Create+s.Change+s.Destroy+s.Uninspected > 0
}

// Empty says the plan has nothing to do and nothing to report.
func (s Summary) Empty() bool {
	return !s.HasChanges() && s.Warnings == 0 && s.Blockers == 0
}
