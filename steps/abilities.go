package steps

import "github.com/pgshift/pgshift/engine"

// What each step offers the engine. The engine finds the optional abilities
// by type assertion, so a misspelt method would silently drop one (a plan
// line, a status fact, a saved plan's check); these assertions make that a
// compile error instead.
var (
	_ engine.Step              = inspecting{preflightSource{}}
	_ engine.Describer         = preflightSource{}
	_ engine.RollbackDescriber = preflightSource{}
	_ engine.Fingerprinter     = preflightSource{}

	_ engine.Step              = inspecting{preflightTarget{}}
	_ engine.Describer         = preflightTarget{}
	_ engine.RollbackDescriber = preflightTarget{}
	_ engine.Fingerprinter     = preflightTarget{}

	_ engine.Step              = inspecting{audit{}}
	_ engine.Describer         = audit{}
	_ engine.RollbackDescriber = audit{}
	_ engine.Fingerprinter     = audit{}

	_ engine.Step              = roles{}
	_ engine.Converger         = roles{}
	_ engine.Describer         = roles{}
	_ engine.RollbackDescriber = roles{}

	_ engine.Step              = schemaStep{}
	_ engine.Converger         = schemaStep{}
	_ engine.Reporter          = schemaStep{}
	_ engine.Describer         = schemaStep{}
	_ engine.RollbackDescriber = schemaStep{}

	_ engine.Step              = settingsStep{}
	_ engine.Converger         = settingsStep{}
	_ engine.Reporter          = settingsStep{}
	_ engine.Describer         = settingsStep{}
	_ engine.RollbackDescriber = settingsStep{}

	_ engine.Step              = (*publicationStep)(nil)
	_ engine.Converger         = (*publicationStep)(nil)
	_ engine.Describer         = (*publicationStep)(nil)
	_ engine.RollbackDescriber = (*publicationStep)(nil)

	_ engine.Step              = (*slotStep)(nil)
	_ engine.Describer         = (*slotStep)(nil)
	_ engine.RollbackDescriber = (*slotStep)(nil)
	_ engine.Fingerprinter     = (*slotStep)(nil)

	_ engine.Step              = (*copyStep)(nil)
	_ engine.Describer         = (*copyStep)(nil)
	_ engine.RollbackDescriber = (*copyStep)(nil)
	_ engine.Fingerprinter     = (*copyStep)(nil)

	_ engine.Step              = (*subscriptionStep)(nil)
	_ engine.Converger         = (*subscriptionStep)(nil)
	_ engine.Describer         = (*subscriptionStep)(nil)
	_ engine.RollbackDescriber = (*subscriptionStep)(nil)
	_ engine.Fingerprinter     = (*subscriptionStep)(nil)
	_ engine.Reporter          = (*subscriptionStep)(nil)

	_ engine.Step              = (*catchupStep)(nil)
	_ engine.Rechecker         = (*catchupStep)(nil)
	_ engine.Describer         = (*catchupStep)(nil)
	_ engine.RollbackDescriber = (*catchupStep)(nil)
	_ engine.Fingerprinter     = (*catchupStep)(nil)
	_ engine.Reporter          = (*catchupStep)(nil)

	_ engine.Step              = (*verifyStep)(nil)
	_ engine.Rechecker         = (*verifyStep)(nil)
	_ engine.Describer         = (*verifyStep)(nil)
	_ engine.RollbackDescriber = (*verifyStep)(nil)
	_ engine.Fingerprinter     = (*verifyStep)(nil)
	_ engine.Reporter          = (*verifyStep)(nil)
)
