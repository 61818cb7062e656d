package bench

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The table still prints when a method fails, with the failure's reason,
// and the ratios come from the methods that succeeded.
func TestReportShowsFailedRowsAndRatios(t *testing.T) {
	rep := report{
		scale: 1, rows: "100000", splitMB: 128,
		copies: [][]result{
			{
				{name: "native subscription (copy_data = true)", wall: 20 * time.Second},
				{name: "pgshift snapshot, 2 workers", wall: 10 * time.Second, peakRSS: 23 << 20},
				{name: "pgcopydb clone", err: errors.New("pgcopydb not installed")},
			},
			{
				{name: "native subscription (copy_data = true)", wall: 30 * time.Second},
				{name: "pgshift snapshot, 2 workers", err: errors.New("apply: connection refused")},
				{name: "pgcopydb clone", err: errors.New("pgcopydb not installed")},
			},
		},
	}
	var out strings.Builder
	printReport(&out, rep)
	text := out.String()
	for _, want := range []string{
		"FAILED", "pgcopydb not installed", // no round succeeded: the reason shows
		"10.0, FAILED", // a failed round among good ones
		"2.00×",        // native's best 20 s against the snapshot's 10 s
		"23 MB",
		"best: snapshot 2w at least 2× faster than native        met",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
}

func TestMedian(t *testing.T) {
	r := &row{ok: []time.Duration{5, 1, 3, 100}}
	if got := r.median(); got != 4 {
		t.Errorf("median of 5, 1, 3, 100 = %d, want 4", got)
	}
	r.ok = append(r.ok, 2)
	if got := r.median(); got != 3 {
		t.Errorf("median of 5, 1, 3, 100, 2 = %d, want 3", got)
	}
}
