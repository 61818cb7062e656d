package steps

import (
	"context"
	"fmt"
	"strings"

	"github.com/pgshift/pgshift/internal/pg"
)

// serverSetting is one row of pg_settings.
type serverSetting struct {
	name, setting, unit, vartype, source, context string
	pendingRestart                                bool
}

// serverLevel says whether a setting's value comes from the server's
// configuration (files, command line, environment), not from a default,
// the database, the role, the client or the session.
func (s serverSetting) serverLevel() bool {
	switch s.source {
	case "configuration file", "command line", "environment variable":
		return true
	}
	return false
}

func (s serverSetting) shown() string { return shownValue(s.setting, s.unit) }

func (s serverSetting) canon() string { return canonical(s.setting, s.unit, s.vartype) }

// canonOf reduces a value written for this parameter ("64MB") to the form
// canon gives pg_settings' own.
func (s serverSetting) canonOf(v string) string { return canonical(v, s.unit, s.vartype) }

// readServerSettings reads pg_settings by lowercase name.
func readServerSettings(ctx context.Context, db pg.Querier) (map[string]serverSetting, error) {
	rows, err := db.Query(ctx, `
SELECT name, setting, coalesce(unit, ''), vartype, source, context, coalesce(pending_restart, false)
  FROM pg_catalog.pg_settings WHERE setting IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("read pg_settings: %w", err)
	}
	defer rows.Close()
	out := map[string]serverSetting{}
	for rows.Next() {
		var s serverSetting
		if err := rows.Scan(&s.name, &s.setting, &s.unit, &s.vartype, &s.source, &s.context, &s.pendingRestart); err != nil {
			return nil, fmt.Errorf("read pg_settings: %w", err)
		}
		// Lookups ignore case as PostgreSQL does (pg_settings writes DateStyle).
		s.name = strings.ToLower(s.name)
		out[s.name] = s
	}
	return out, rows.Err()
}

// readAutoConf reads what ALTER SYSTEM wrote (postgresql.auto.conf, as
// pg_file_settings shows it; the last line of a name wins). It needs a
// superuser; ok is false when green's role may not read it.
func readAutoConf(ctx context.Context, db pg.Querier) (map[string]string, bool, error) {
	readable, err := pg.Scalar[bool](ctx, db, `SELECT has_function_privilege('pg_catalog.pg_show_all_file_settings()', 'EXECUTE')`)
	if err != nil {
		return nil, false, fmt.Errorf("check access to pg_file_settings: %w", err)
	}
	if !readable {
		return nil, false, nil
	}
	rows, err := db.Query(ctx, `
SELECT name, setting FROM pg_catalog.pg_file_settings
 WHERE sourcefile LIKE '%postgresql.auto.conf' AND setting IS NOT NULL ORDER BY seqno`)
	if err != nil {
		return nil, false, fmt.Errorf("read pg_file_settings: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return nil, false, fmt.Errorf("read pg_file_settings: %w", err)
		}
		out[strings.ToLower(name)] = value
	}
	return out, true, rows.Err()
}

// settingScope is where a pg_db_role_setting entry applies: the database
// (Role "" and InDB), every role (Role "", not InDB: ALTER ROLE ALL), a
// role everywhere, or a role in the database.
type settingScope struct {
	Role string `json:"role,omitempty"`
	InDB bool   `json:"in_db,omitempty"`
}

// settingKey is one parameter in one scope.
type settingKey struct {
	settingScope
	Name string `json:"name"`
}

// describe names the scope for messages: "database app", "role app in
// database app".
func (s settingScope) describe(db string) string {
	switch {
	case s.Role == "" && s.InDB:
		return "database " + pg.ShowIdent(db)
	case s.Role == "":
		return "every role (ALTER ROLE ALL)"
	case s.InDB:
		return "role " + pg.ShowIdent(s.Role) + " in database " + pg.ShowIdent(db)
	}
	return "role " + pg.ShowIdent(s.Role)
}

// alterSQL is the start of the statement that sets or resets a parameter
// in this scope on a database named db.
func (s settingScope) alterSQL(db string) string {
	switch {
	case s.Role == "" && s.InDB:
		return "ALTER DATABASE " + pg.QuoteIdent(db)
	case s.Role == "":
		return "ALTER ROLE ALL"
	case s.InDB:
		return "ALTER ROLE " + pg.QuoteIdent(s.Role) + " IN DATABASE " + pg.QuoteIdent(db)
	}
	return "ALTER ROLE " + pg.QuoteIdent(s.Role)
}

func (k settingKey) setSQL(db, value string) string {
	return k.alterSQL(db) + " SET " + pg.QuoteIdent(k.Name) + " TO " + setValueSQL(k.Name, value)
}

func (k settingKey) resetSQL(db string) string {
	return k.alterSQL(db) + " RESET " + pg.QuoteIdent(k.Name)
}

// readDBRoleSettings reads the settings of the current database, of every
// role, and of each role everywhere or in this database
// (pg_db_role_setting; settings for other databases are not this
// upgrade's).
func readDBRoleSettings(ctx context.Context, db pg.Querier) (map[settingKey]string, error) {
	rows, err := db.Query(ctx, `
SELECT coalesce(r.rolname, ''), s.setdatabase <> 0, c.cfg
  FROM pg_catalog.pg_db_role_setting s
  LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
 CROSS JOIN LATERAL pg_catalog.unnest(s.setconfig) AS c(cfg)
 WHERE s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))
   AND (s.setrole = 0 OR r.rolname IS NOT NULL)`)
	if err != nil {
		return nil, fmt.Errorf("read database and role settings (pg_db_role_setting): %w", err)
	}
	defer rows.Close()
	out := map[settingKey]string{}
	for rows.Next() {
		var k settingKey
		var cfg string
		if err := rows.Scan(&k.Role, &k.InDB, &cfg); err != nil {
			return nil, fmt.Errorf("read database and role settings: %w", err)
		}
		name, value, _ := strings.Cut(cfg, "=")
		k.Name = name
		out[k] = value
	}
	return out, rows.Err()
}

// sameStored says whether two stored values of a parameter are the same
// setting: list parameters element by element, others as written.
func sameStored(name, a, b string) bool {
	if listParams[name] {
		x, y := splitGUCList(a), splitGUCList(b)
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	return strings.TrimSpace(a) == strings.TrimSpace(b)
}

// extension is one extension of blue, or of green's catalog.
type extension struct{ name, version string }

// extensionLines say at which version green gets each of blue's extensions
// (the schema restore runs CREATE EXTENSION, which installs the default
// version of green's control file), and warn where green already has one
// older than it offers.
func extensionLines(ctx context.Context, blue, green pg.Querier) (details, warnings []string, err error) {
	rows, err := blue.Query(ctx, `SELECT extname, extversion FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql' ORDER BY 1`)
	if err != nil {
		return nil, nil, fmt.Errorf("blue: list extensions: %w", err)
	}
	var exts []extension
	for rows.Next() {
		var e extension
		if err := rows.Scan(&e.name, &e.version); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("blue: list extensions: %w", err)
		}
		exts = append(exts, e)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("blue: list extensions: %w", err)
	}
	for _, e := range exts {
		var def, installed *string
		err := green.QueryRow(ctx, `
SELECT (SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = $1),
       (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = $1)`, e.name).Scan(&def, &installed)
		if err != nil {
			return nil, nil, fmt.Errorf("green: read available extensions: %w", err)
		}
		switch {
		case installed != nil && def != nil && *installed != *def:
			details = append(details, fmt.Sprintf("-- extension %s: blue %s, green has %s and offers %s", e.name, e.version, *installed, *def))
			warnings = append(warnings, fmt.Sprintf("extension %s on green is %s and green offers %s (blue has %s): update it on green (ALTER EXTENSION %s UPDATE;) if the application needs the newer version",
				e.name, *installed, *def, e.version, pg.ShowIdent(e.name)))
		case installed != nil:
			details = append(details, fmt.Sprintf("-- extension %s: blue %s, green has %s", e.name, e.version, *installed))
		case def == nil:
			details = append(details, fmt.Sprintf("-- extension %s: blue %s, green does not offer it (the audit names the fix)", e.name, e.version))
		case *def == e.version:
			details = append(details, fmt.Sprintf("-- extension %s: the schema restore creates %s on green, as on blue", e.name, *def))
		default:
			details = append(details, fmt.Sprintf("-- extension %s: blue %s, the schema restore creates %s on green (the default version green offers)", e.name, e.version, *def))
		}
	}
	return details, warnings, nil
}
