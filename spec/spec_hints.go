package spec

import (
	"regexp"
	"sort"
	"strings"
)

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// nearest is the candidate closest to s when it is close enough to be a
// likely typo, else "".
func nearest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	ls := strings.ToLower(s)
	for _, c := range candidates {
		d := editDistance(ls, strings.ToLower(c))
		if d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	limit := max(2, len([]rune(s))/3)
	if best == "" || bestD > limit || bestD >= len([]rune(best)) {
		return ""
	}
	return best
}

// unknownKeyHint says which key was probably meant: a near spelling here, or
// the same key where it belongs elsewhere in the spec, or the valid keys.
func unknownKeyHint(key string, known []string, at []string) string {
	if n := nearest(key, known); n != "" {
		return "did you mean " + n + "?"
	}
	if key == "<<" {
		return "YAML merge keys are not supported: write the keys out"
	}
	if where := keyHome(key); where != "" && where != strings.Join(at, ".") {
		return key + " belongs under " + where
	}
	if len(known) == 0 {
		return ""
	}
	return "valid keys here: " + strings.Join(known, ", ")
}

// keyHome finds the mapping of the spec where key is defined ("" if none or
// if it is defined in several).
func keyHome(key string) string {
	var homes []string
	var walk func(s map[string]any, path []string, depth int)
	walk = func(s map[string]any, path []string, depth int) {
		if depth > 6 {
			return
		}
		s = deref(s)
		props, _ := s["properties"].(map[string]any)
		for name, ps := range props {
			if name == key {
				homes = append(homes, strings.Join(path, "."))
			}
			if m, ok := ps.(map[string]any); ok {
				walk(m, append(append([]string(nil), path...), name), depth+1)
			}
		}
	}
	walk(rawSchema, nil, 0)
	sort.Strings(homes)
	if len(homes) != 1 || homes[0] == "" {
		return ""
	}
	return homes[0]
}

var (
	durationWordRE = regexp.MustCompile(`(?i)^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zµ]*)\s*$`)
	durationWords  = map[string]string{
		"": "s", "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
		"ms": "ms", "msec": "ms", "millisecond": "ms", "milliseconds": "ms",
		"m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
		"h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
	}
	sizeWordRE = regexp.MustCompile(`(?i)^\s*([0-9]+)\s*([a-z]*)\s*$`)
	sizeWords  = map[string]string{
		"b": "B", "bytes": "B", "k": "KiB", "kb": "kB", "kib": "KiB", "m": "MiB", "mb": "MB", "mib": "MiB",
		"g": "GiB", "gb": "GB", "gib": "GiB", "t": "TiB", "tb": "TB", "tib": "TiB",
	}
)

// suggestDuration rewrites a duration as a person might write it ("10
// seconds", "5 min") into Go syntax, or "" when it cannot guess.
func suggestDuration(s string) string {
	m := durationWordRE.FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	unit, ok := durationWords[strings.ToLower(m[2])]
	if !ok {
		return ""
	}
	return m[1] + unit
}

// suggestSize rewrites "1 gb" or "512M" into a size pgshift reads.
func suggestSize(s string) string {
	m := sizeWordRE.FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	unit, ok := sizeWords[strings.ToLower(m[2])]
	if !ok {
		return ""
	}
	return m[1] + unit
}
