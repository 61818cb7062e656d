package watch

import "sort"

// Reading is one threshold's verdict in one collection.
type Reading struct {
	Key   string // stable per threshold and object: "max_lag", "max_retained_wal/<slot>", ...
	Over  bool   // the threshold is crossed
	Known bool   // false when the value could not be read this time
}

// Transition is a threshold crossed or recovered.
type Transition struct {
	Key  string
	Over bool // true: newly crossed; false: recovered
}

// Thresholds remembers which thresholds are crossed, so that a crossing is
// reported once, when it happens, and a recovery once, when it ends. An
// unknown reading (the server could not be read) changes nothing: a
// collection that failed neither raises nor clears a warning.
type Thresholds struct {
	over map[string]bool
}

// Update takes this collection's readings and returns the transitions, in
// key order. A key absent from readings (a table-sync slot that is gone)
// recovers.
func (t *Thresholds) Update(readings []Reading) []Transition {
	if t.over == nil {
		t.over = map[string]bool{}
	}
	seen := map[string]bool{}
	var out []Transition
	for _, r := range readings {
		seen[r.Key] = true
		if !r.Known {
			continue
		}
		if r.Over != t.over[r.Key] {
			out = append(out, Transition{Key: r.Key, Over: r.Over})
		}
		if r.Over {
			t.over[r.Key] = true
		} else {
			delete(t.over, r.Key)
		}
	}
	for k := range t.over {
		if !seen[k] {
			out = append(out, Transition{Key: k, Over: false})
			delete(t.over, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Crossed lists the keys currently over their threshold, in order.
func (t *Thresholds) Crossed() []string {
	var keys []string
	for k := range t.over {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
