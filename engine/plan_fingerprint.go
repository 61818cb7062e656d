package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/pgshift/pgshift/plans"
)

// fingerprint identifies what a plan observed: both server versions and, per
// step in order, its fingerprint (Fingerprinter) or its whole change.
func fingerprint(p *plans.Plan, g *Graph) string {
	h := sha256.New()
	h.Write([]byte("blue " + p.Blue.Version + "\ngreen " + p.Green.Version + "\n"))
	for _, st := range p.Steps {
		h.Write([]byte("step " + st.ID + "\n"))
		s, _ := g.Step(st.ID)
		if f, ok := s.(Fingerprinter); ok {
			h.Write([]byte(strings.TrimSpace(f.Fingerprint(st.Change)) + "\n"))
			continue
		}
		h.Write(canonicalJSON(st.Change))
		h.Write(canonicalJSON(st.Preconditions))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
