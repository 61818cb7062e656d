package steps

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
)

// removedExtensions are the extensions PostgreSQL removed from its contrib
// modules, with the first major without them (release notes of each major).
// No package brings them back for that major: the fix is to drop them on
// blue.
var removedExtensions = map[string]int{
	"tsearch2":     10, // built into core since 8.3
	"chkpass":      11,
	"timetravel":   12,
	"adminpack":    17, // pgAdmin's file functions: pg_file_write and friends
	"old_snapshot": 17, // went with old_snapshot_threshold
}

// contribExtensions are the extensions PostgreSQL ships as contrib modules:
// they come with the server's own packages, not one package each.
var contribExtensions = map[string]bool{
	"adminpack": true, "amcheck": true, "autoinc": true, "bloom": true, "btree_gin": true, "btree_gist": true,
	"citext": true, "cube": true, "dblink": true, "dict_int": true, "dict_xsyn": true, "earthdistance": true,
	"file_fdw": true, "fuzzystrmatch": true, "hstore": true, "insert_username": true, "intagg": true,
	"intarray": true, "isn": true, "lo": true, "ltree": true, "moddatetime": true, "old_snapshot": true,
	"pageinspect": true, "pg_buffercache": true, "pg_freespacemap": true, "pg_prewarm": true,
	"pg_stat_statements": true, "pg_surgery": true, "pg_trgm": true, "pg_visibility": true, "pg_walinspect": true,
	"pgcrypto": true, "pgrowlocks": true, "pgstattuple": true, "postgres_fdw": true, "refint": true, "seg": true,
	"sslinfo": true, "tablefunc": true, "tcn": true, "tsm_system_rows": true, "tsm_system_time": true,
	"unaccent": true, "uuid-ossp": true, "xml2": true,
}

// procLanguagePackages are the procedural languages Debian and Ubuntu ship
// in packages of their own (postgresql-plperl-17).
var procLanguagePackages = map[string]string{
	"plperl": "plperl", "plperlu": "plperl", "plpython3u": "plpython3", "pltcl": "pltcl", "pltclu": "pltcl",
}

// auditExtensions: every extension on blue must be available on green
// (the schema restore runs CREATE EXTENSION, which installs green's default
// version). A missing one is a blocker whose fix depends on why it is
// missing: removed from PostgreSQL in green's major (drop it on blue), a
// contrib module or language not installed, or a third-party package.
func auditExtensions(ctx context.Context, f *findings, blue, green *pgxpool.Pool, pair majorPair) error {
	type ext struct{ name, version string }
	rows, err := blue.Query(ctx, `SELECT extname, extversion FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("blue: list extensions: %w", err)
	}
	var exts []ext
	for rows.Next() {
		var e ext
		if err := rows.Scan(&e.name, &e.version); err != nil {
			rows.Close()
			return fmt.Errorf("blue: list extensions: %w", err)
		}
		exts = append(exts, e)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("blue: list extensions: %w", err)
	}
	missing := 0
	for _, e := range exts {
		var defaultVersion *string
		err := green.QueryRow(ctx, `SELECT (SELECT default_version FROM pg_available_extensions WHERE name = $1)`, e.name).Scan(&defaultVersion)
		if err != nil {
			return fmt.Errorf("green: read available extensions: %w", err)
		}
		switch {
		case defaultVersion == nil:
			missing++
			f.detail("extension %s %s: not available on green", e.name, e.version)
			f.check("extension "+e.name+" available on green", false, "", missingExtensionFix(e.name, pair.green))
		case *defaultVersion == e.version:
			f.detail("extension %s %s: available on green", e.name, e.version)
		default:
			f.detail("extension %s %s: green installs %s", e.name, e.version, *defaultVersion)
			f.warn("extension %s is %s on blue and green installs %s: check its release notes for changes the application sees", e.name, e.version, *defaultVersion)
		}
	}
	if missing == 0 {
		f.check("extensions available on green", true, fmt.Sprintf("%d of %d available", len(exts), len(exts)), "")
	}
	if len(exts) > 0 {
		f.fact("%s", words.Plural(len(exts), "extension", "extensions"))
	}
	return nil
}

// missingExtensionFix is the blocker for an extension green does not offer,
// with the fix that exists for green's major.
func missingExtensionFix(name string, greenMajor int) string {
	if gone, ok := removedExtensions[name]; ok && greenMajor >= gone {
		return fmt.Sprintf("extension %s no longer exists in PostgreSQL %d (removed from PostgreSQL in %d; no package provides it): drop it on blue (DROP EXTENSION %s;) before the upgrade, after moving what uses it to other functions, so that the schema restore on green does not try to create it",
			name, greenMajor, gone, pg.ShowIdent(name))
	}
	if contribExtensions[name] {
		return fmt.Sprintf("green does not offer extension %s, one of PostgreSQL's contrib modules: install them on green's host (Debian/Ubuntu: they come with postgresql-%d; RHEL: postgresql%d-contrib), or drop it on blue if unused (DROP EXTENSION %s;)",
			name, greenMajor, greenMajor, pg.ShowIdent(name))
	}
	if pkg, ok := procLanguagePackages[name]; ok {
		return fmt.Sprintf("green does not offer language %s: install it on green's host (Debian/Ubuntu: postgresql-%s-%d; RHEL: postgresql%d-%s), or drop it on blue if unused (DROP EXTENSION %s;)",
			name, pkg, greenMajor, greenMajor, pkg, pg.ShowIdent(name))
	}
	return fmt.Sprintf("green does not offer extension %s used on blue: install the package that provides it for PostgreSQL %d on green's host (Debian/Ubuntu: postgresql-%d-<name>, e.g. postgresql-%d-%s), or drop it on blue if unused (DROP EXTENSION %s;)",
		name, greenMajor, greenMajor, greenMajor, name, pg.ShowIdent(name))
}
