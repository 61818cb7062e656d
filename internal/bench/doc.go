// Package bench measures pgshift against real servers; speed targets live
// here, never in tests. BenchmarkCompare (`make bench`) fills one green from
// one blue pgbench database with every method in turn (native subscription,
// pgshift's snapshot copy through the real binary, pgcopydb, piped pg_dump,
// raw binary COPY), then times verify against scan floors, and prints one
// table; docs/benchmarks.md holds the numbers and what they mean.
// BenchmarkInitialCopy15To17 (`make bench-native`) is the native copy alone.
package bench
