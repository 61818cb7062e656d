package verify

import (
	"math/big"
)

// lessID orders row ids for reports: part by part, numerically where both
// parts are numbers, else as text.
func lessID(a, b string) bool {
	pa, pb := splitID(a), splitID(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		if pa[i] == pb[i] {
			continue
		}
		x, okx := new(big.Float).SetString(pa[i])
		y, oky := new(big.Float).SetString(pb[i])
		if okx && oky {
			if c := x.Cmp(y); c != 0 {
				return c < 0
			}
		}
		return pa[i] < pb[i]
	}
	return len(pa) < len(pb)
}
