package verify

import (
	"fmt"
	"strings"
	"time"
)

// Report is the outcome of one verification.
type Report struct {
	Mode     Mode
	Workers  int
	Tables   []TableReport // ordered by schema and name
	Duration time.Duration
}

// TableReport is one table's outcome.
type TableReport struct {
	Table    string // schema.name
	Method   string // "primary-key ranges", "hash buckets" or "row count (no columns)"
	Segments int    // key ranges, or hash buckets
	Rows     int64  // rows on blue at the first read
	Bytes    int64  // heap and TOAST bytes on blue
	// Rechecked counts segments that differed at the first read (green
	// behind blue, usually) and were re-checked row by row.
	Rechecked int
	// Rounds is the most re-read rounds a row of the table needed to settle.
	Rounds      int
	Differences []Difference
}

// Difference is a persistent difference in one segment of a table.
type Difference struct {
	Table   string
	Segment string // the primary-key range or hash buckets compared
	// KeyRange is the first and last differing key ("id=17 .. id=4711"),
	// when more than one differs.
	KeyRange  string
	Changed   int      // rows on both sides whose contents differ
	OnlyBlue  int      // rows missing on green
	OnlyGreen int      // rows green has and blue does not
	Unsettled int      // rows that kept changing on blue through every re-check
	Keys      []string // the first differing keys, each with what differs
}

func (d Difference) String() string {
	var parts []string
	if d.Changed > 0 {
		parts = append(parts, fmt.Sprintf("%d changed", d.Changed))
	}
	if d.OnlyBlue > 0 {
		parts = append(parts, fmt.Sprintf("%d missing on green", d.OnlyBlue))
	}
	if d.OnlyGreen > 0 {
		parts = append(parts, fmt.Sprintf("%d only on green", d.OnlyGreen))
	}
	if d.Unsettled > 0 {
		parts = append(parts, fmt.Sprintf("%d kept changing on blue and could not be compared", d.Unsettled))
	}
	s := fmt.Sprintf("%s: %s: %s", d.Table, d.Segment, strings.Join(parts, ", "))
	if d.KeyRange != "" {
		s += "; keys " + d.KeyRange
	}
	if len(d.Keys) > 0 {
		s += ": " + strings.Join(d.Keys, "; ")
	}
	return s
}

// OK says whether every table matched.
func (r *Report) OK() bool { return len(r.Differences()) == 0 }

// Differences lists every difference, table by table.
func (r *Report) Differences() []Difference {
	var out []Difference
	for _, t := range r.Tables {
		out = append(out, t.Differences...)
	}
	return out
}

// Rows is the rows compared (counted on blue).
func (r *Report) Rows() int64 {
	var n int64
	for _, t := range r.Tables {
		n += t.Rows
	}
	return n
}

// Bytes is the table data compared (heap and TOAST on blue).
func (r *Report) Bytes() int64 {
	var n int64
	for _, t := range r.Tables {
		n += t.Bytes
	}
	return n
}

// RowsPerSecond and MBPerSecond are throughput over the whole run.
func (r *Report) RowsPerSecond() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Rows()) / r.Duration.Seconds()
}

func (r *Report) MBPerSecond() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Bytes()) / (1 << 20) / r.Duration.Seconds()
}

// Summary is one line: what was compared, how fast, and the verdict.
func (r *Report) Summary() string {
	verdict := "no differences"
	if n := len(r.Differences()); n > 0 {
		tables := 0
		for _, t := range r.Tables {
			if len(t.Differences) > 0 {
				tables++
			}
		}
		verdict = fmt.Sprintf("%d difference(s) in %d table(s)", n, tables)
	}
	return fmt.Sprintf("%s: %d tables, %d rows, %.1f MB in %s (%.0f rows/s, %.1f MB/s, %d workers): %s",
		r.Mode, len(r.Tables), r.Rows(), float64(r.Bytes())/(1<<20), r.Duration.Round(time.Millisecond),
		r.RowsPerSecond(), r.MBPerSecond(), r.Workers, verdict)
}

// Error is the failure message for a report with differences: every
// difference on its own line, then what to do.
func (r *Report) Error() string {
	var b strings.Builder
	b.WriteString("verify found differences between blue and green:\n")
	for _, d := range r.Differences() {
		b.WriteString("  " + d.String() + "\n")
	}
	b.WriteString("green does not hold the same data as blue: inspect the rows named above on both sides " +
		"(a write made directly on green, or a replication conflict in green's log, are the usual causes); " +
		"rows that kept changing on blue compare once writes are lighter: run verify again")
	return b.String()
}
