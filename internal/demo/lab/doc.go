// Package lab runs pgshift against real servers outside `go test`: it starts
// blue and green clusters and PgBouncer with the test rig (internal/pgtest),
// drives the pgshift binary as a user would type it, keeps pgbench writing
// through PgBouncer, and reads pgbench's per-transaction logs. `make demo`
// (internal/demo) and `make bench-cutover` (internal/bench/cutover) share it.
package lab
