package steps

import "strconv"

// countOf writes "1 table" or "3 tables": plans and errors are read by people.
func countOf(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
