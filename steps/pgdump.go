package steps

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ClientTool is a libpq client program (pg_dump, psql) and its major version.
type ClientTool struct {
	Path  string
	Major int
}

// clientBinDirs is where distributions install versioned client programs
// (Debian and Ubuntu: /usr/lib/postgresql/<major>/bin; RHEL: /usr/pgsql-<major>/bin).
var clientBinDirs = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"}

var clientVersionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// parseClientMajor reads the major version from `pg_dump --version` output,
// e.g. "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)".
func parseClientMajor(out string) (int, error) {
	m := clientVersionRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("unrecognised version output %q", strings.TrimSpace(out))
	}
	return strconv.Atoi(m[1])
}

// toolVersion runs `<path> --version`.
func toolVersion(ctx context.Context, path string) (ClientTool, error) {
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return ClientTool{}, fmt.Errorf("run %s --version: %w", path, err)
	}
	major, err := parseClientMajor(string(out))
	if err != nil {
		return ClientTool{}, fmt.Errorf("%s: %w", path, err)
	}
	return ClientTool{Path: path, Major: major}, nil
}

// candidates lists every program of that name on PATH and in the versioned
// client folders, each once.
func candidates(name string) []string {
	var paths []string
	seen := map[string]bool{}
	add := func(p string) {
		if p == "" || seen[p] {
			return
		}
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return
		}
		seen[p] = true
		paths = append(paths, p)
	}
	if p, err := exec.LookPath(name); err == nil {
		add(p)
	}
	for _, pattern := range clientBinDirs {
		dirs, _ := filepath.Glob(pattern)
		for _, d := range dirs {
			add(filepath.Join(d, name))
		}
	}
	return paths
}

// choosePgDump picks among the pg_dump programs found: its major must be at
// least blue's (older pg_dump refuses newer servers), and preferably at most
// green's, since a newer pg_dump may emit settings green does not know
// (pg_dump 17 writes SET transaction_timeout, which 16 rejects). Among those,
// the newest wins.
func choosePgDump(found []ClientTool, blueMajor, greenMajor int) (ClientTool, bool) {
	var ok []ClientTool
	for _, t := range found {
		if t.Major >= blueMajor {
			ok = append(ok, t)
		}
	}
	if len(ok) == 0 {
		return ClientTool{}, false
	}
	sort.SliceStable(ok, func(i, j int) bool {
		fi, fj := greenMajor == 0 || ok[i].Major <= greenMajor, greenMajor == 0 || ok[j].Major <= greenMajor
		if fi != fj {
			return fi // fitting green first
		}
		if fi {
			return ok[i].Major > ok[j].Major // newest that fits
		}
		return ok[i].Major < ok[j].Major // else the least too new
	})
	return ok[0], true
}

// installHint names the package that brings pg_dump of a major version.
func installHint(major int) string {
	return fmt.Sprintf("install pg_dump %d or newer (Debian/Ubuntu: apt-get install postgresql-client-%d; RHEL: dnf install postgresql%d) and set schema.pg_dump to its path if it is not on PATH, e.g. /usr/lib/postgresql/%d/bin/pg_dump",
		major, major, major, major)
}

// FindPgDump finds the pg_dump to dump blue with: spec.schema.pg_dump when
// set, else the best of PATH and the versioned client folders. greenMajor
// may be 0 when green's version is unknown.
func FindPgDump(ctx context.Context, configured string, blueMajor, greenMajor int) (ClientTool, error) {
	if configured != "" {
		t, err := toolVersion(ctx, configured)
		if err != nil {
			return ClientTool{}, fmt.Errorf("schema.pg_dump %s: %w; %s", configured, err, installHint(blueMajor))
		}
		if t.Major < blueMajor {
			return ClientTool{}, fmt.Errorf("schema.pg_dump %s is pg_dump %d, older than blue's PostgreSQL %d: %s",
				configured, t.Major, blueMajor, installHint(blueMajor))
		}
		return t, nil
	}
	var found []ClientTool
	var seen []string
	for _, p := range candidates("pg_dump") {
		t, err := toolVersion(ctx, p)
		if err != nil {
			continue
		}
		found = append(found, t)
		seen = append(seen, fmt.Sprintf("%s (%d)", p, t.Major))
	}
	if t, ok := choosePgDump(found, blueMajor, greenMajor); ok {
		return t, nil
	}
	if len(found) == 0 {
		return ClientTool{}, fmt.Errorf("no pg_dump found on PATH or in %s: %s",
			strings.Join(clientBinDirs, ", "), installHint(blueMajor))
	}
	return ClientTool{}, fmt.Errorf("every pg_dump found is older than blue's PostgreSQL %d (%s): %s",
		blueMajor, strings.Join(seen, ", "), installHint(blueMajor))
}

// FindPsql finds psql for restoring: the one beside pg_dump (same client
// package), else the one on PATH. psql of any version restores plain SQL
// into any server version.
func FindPsql(pgDump ClientTool) (string, error) {
	sibling := filepath.Join(filepath.Dir(pgDump.Path), "psql")
	if st, err := os.Stat(sibling); err == nil && !st.IsDir() {
		return sibling, nil
	}
	if p, err := exec.LookPath("psql"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no psql beside %s or on PATH: install the client package (Debian/Ubuntu: apt-get install postgresql-client-%d)",
		pgDump.Path, pgDump.Major)
}
