package pgtest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// PagilaDir is where the pagila sample database lives: $PGSHIFT_PAGILA_DIR,
// else shared/datasets/pagila beside the repository. Tests read it from
// there; it is never copied into the repository.
func PagilaDir() string {
	if d := os.Getenv("PGSHIFT_PAGILA_DIR"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..") // internal/pgtest -> repository root
	return filepath.Clean(filepath.Join(root, "..", "shared", "datasets", "pagila"))
}

// PagilaFile is one file of the pagila dataset; the test fails, saying how
// to point at the dataset, when it is not there.
func PagilaFile(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(PagilaDir(), name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("pagila dataset: %v (set PGSHIFT_PAGILA_DIR to the folder holding pagila-schema.sql and pagila-data.sql)", err)
	}
	return p
}
