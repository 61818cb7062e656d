// Package querycompare runs the same statements on blue and on green and
// reports which got slower on green, and which changed plan: the query
// regression report of `pgshift compare-queries` (docs/compare-queries.md).
//
// One concept per file: options.go (what the user chooses), statement.go
// (a statement and its kind), source_statstatements.go and source_file.go
// (where statements come from), plan.go (EXPLAIN's JSON as a tree),
// shape.go (the plan shape and how two shapes differ), stats.go (timings and
// the regression decision), runner.go (EXPLAIN on both servers, read-only
// and rolled back), report.go (the result as data) and render_*.go (text,
// markdown and JSON over that data).
//
// It reads blue and never writes to it; on green it runs ANALYZE on tables
// never analyzed, and writing statements only with Options.AllowWrites,
// inside a transaction that is rolled back. It imports nothing of pgshift
// but internal/pg.
package querycompare
