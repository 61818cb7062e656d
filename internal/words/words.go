// Package words writes counts, lists and sizes the way pgshift's plans,
// logs and errors show them to people.
package words

import (
	"fmt"
	"strconv"
	"strings"
)

// Count writes "1 table" or "3 tables": the noun with an s when n is not 1.
func Count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// Plural writes "1 index" or "2 indexes", for nouns whose plural is not
// noun+s.
func Plural(n int, one, many string) string {
	return strconv.Itoa(n) + " " + Pick(n, one, many)
}

// Pick is one when n is 1, else many ("it" or "them").
func Pick(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// List shows at most ten names, then how many more.
func List(names []string) string {
	const max = 10
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:max], ", "), len(names)-max)
}

// Bytes writes a byte count in binary units ("512 B", "16.0 MiB"); a
// negative count is "unknown".
func Bytes(n int64) string {
	if n < 0 {
		return "unknown"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
