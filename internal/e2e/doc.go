// Package e2e holds end-to-end tests of pgshift: the real binary, built
// once per test run, driven as a user drives it (a spec file, the CLI, its
// exit status and output) against real PostgreSQL clusters of the test rig,
// with pgbench writing to blue. What green ends up holding is checked with
// internal/rowcompare, which shares no code with pgshift's verify step.
//
// The pagila dataset is read from ../shared/datasets/pagila beside the
// repository, or from $PGSHIFT_PAGILA_DIR; it is never copied in. The tests
// start servers, so they skip under -short:
//
//	go test ./internal/e2e/ -v
package e2e
