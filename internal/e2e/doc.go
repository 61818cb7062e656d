// Package e2e holds end-to-end tests of pgshift: the real binary, built
// once per test run, driven as a user drives it (a spec file, the CLI, its
// exit status and output) against real PostgreSQL clusters of the test rig,
// with pgbench writing to blue. What green ends up holding is checked with
// internal/rowcompare, which shares no code with pgshift's verify step.
package e2e
