// Package bench measures pgshift against real servers: `make bench` runs its
// benchmarks once each and prints the numbers (durations, throughput, table
// sizes). Speed targets live here, never in tests.
package bench
