package querycompare

import (
	"math"
	"slices"
	"time"
)

// Timing is one side's runs of a statement.
type Timing struct {
	RunsMS   []float64 `json:"runs_ms"` // execution time of each round, as EXPLAIN ANALYZE measured it
	MedianMS float64   `json:"median_ms"`
	MinMS    float64   `json:"min_ms"`
	MaxMS    float64   `json:"max_ms"`
	P90MS    float64   `json:"p90_ms"`
	// PlanningMS is the median planning time.
	PlanningMS float64 `json:"planning_ms"`
	// Shared buffers of the median run: found in shared buffers, and read
	// (from the OS cache or the disk).
	SharedHit  int64 `json:"shared_hit"`
	SharedRead int64 `json:"shared_read"`
}

// run is one EXPLAIN ANALYZE of a statement.
type run struct {
	exec, planning float64
	hit, read      int64
}

// summarize makes a Timing of runs (at least one).
func summarize(runs []run) Timing {
	var t Timing
	exec := make([]float64, len(runs))
	planning := make([]float64, len(runs))
	for i, r := range runs {
		exec[i], planning[i] = r.exec, r.planning
	}
	t.RunsMS = slices.Clone(exec)
	sorted := slices.Sorted(slices.Values(exec))
	t.MedianMS, t.MinMS, t.MaxMS, t.P90MS = median(sorted), sorted[0], sorted[len(sorted)-1], percentile(sorted, 0.9)
	t.PlanningMS = median(slices.Sorted(slices.Values(planning)))
	// The median run's buffers: the run nearest the median.
	best := 0
	for i, r := range runs {
		if math.Abs(r.exec-t.MedianMS) < math.Abs(runs[best].exec-t.MedianMS) {
			best = i
		}
	}
	t.SharedHit, t.SharedRead = runs[best].hit, runs[best].read
	return t
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// minMeasurableMS keeps the ratio finite when blue's median rounds to 0.
const minMeasurableMS = 0.001

// Decide compares medians in milliseconds: the ratio green/blue, and
// whether that is a regression: the ratio above o.MaxRatio and green
// slower by more than o.MinDiff. Both must hold: a 0.1 ms statement that
// takes 0.3 ms is 3x but harmless, and 1 s that takes 1.01 s is 10 ms
// slower and noise.
func Decide(blueMS, greenMS float64, o Options) (ratio float64, regression bool) {
	ratio = greenMS / math.Max(blueMS, minMeasurableMS)
	diff := time.Duration((greenMS - blueMS) * float64(time.Millisecond))
	return ratio, ratio > o.MaxRatio && diff > o.MinDiff
}
