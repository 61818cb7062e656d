package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
)

// sqlstateInvalidCatalogName is what a server answers a connection to a
// database it does not have.
const sqlstateInvalidCatalogName = "3D000"

// missingTargetDatabase records the blocker for a green without the
// database target.dsn names, with the statement that creates it as blue's
// (encoding, locale, owner), and reports whether that is the case. Other
// connection failures are left to connectCheck.
func missingTargetDatabase(ctx context.Context, f *findings, env *engine.Env) bool {
	_, err := env.Target.Pool(ctx)
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) || pgErr.Code != sqlstateInvalidCatalogName {
		return false
	}
	cfg, cerr := env.Target.ConnConfig()
	if cerr != nil || cfg.Database == "" {
		return false
	}
	name := cfg.Database
	stmt, note := createDatabaseLikeBlue(ctx, env, cfg, name)
	f.check("connect to green", false, "", fmt.Sprintf("green (%s) has no database %s, which target.dsn names: create it on green as blue's, then plan again: %s%s",
		env.Target.Redacted(), pg.ShowIdent(name), stmt, note))
	return true
}

// blueDatabase is what CREATE DATABASE needs of blue's database; the
// catalog columns differ by major, so they are read from its JSON form.
type blueDatabase struct {
	Owner    string `json:"owner"`
	Encoding string `json:"encoding"`
	Row      struct {
		Collate   string  `json:"datcollate"`
		Ctype     string  `json:"datctype"`
		Provider  string  `json:"datlocprovider"` // 15+: c libc, i icu, b builtin (17+)
		ICULocale *string `json:"daticulocale"`   // 15, 16
		Locale    *string `json:"datlocale"`      // 17+
		ICURules  *string `json:"daticurules"`    // 16+
	} `json:"row"`
}

const blueDatabaseSQL = `
SELECT json_build_object('owner', pg_catalog.pg_get_userbyid(d.datdba),
                         'encoding', pg_catalog.pg_encoding_to_char(d.encoding),
                         'row', pg_catalog.to_json(d))::text
  FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()`

// createDatabaseLikeBlue is the CREATE DATABASE statement for green with
// blue's encoding, locale and owner, and a note when the owner is not on
// green yet (target.roles creates it later). Without blue it is the bare
// statement.
func createDatabaseLikeBlue(ctx context.Context, env *engine.Env, green *pgx.ConnConfig, name string) (string, string) {
	bare := "CREATE DATABASE " + pg.QuoteIdent(name) + ";"
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return bare, " (with blue's encoding and locale; blue is out of reach, see preflight.source)"
	}
	var raw string
	if err := blue.QueryRow(ctx, blueDatabaseSQL).Scan(&raw); err != nil {
		return bare, " (with blue's encoding and locale)"
	}
	var d blueDatabase
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		return bare, " (with blue's encoding and locale)"
	}
	owner := d.Owner
	note := ""
	if exists, known := roleOnGreen(ctx, green, owner); known && !exists {
		note = fmt.Sprintf(" (blue's owner %s is not on green yet: once target.roles has created it, run ALTER DATABASE %s OWNER TO %s;)",
			pg.ShowIdent(owner), pg.QuoteIdent(name), pg.QuoteIdent(owner))
		owner = ""
	}
	parts := []string{"CREATE DATABASE", pg.QuoteIdent(name), "WITH"}
	if owner != "" {
		parts = append(parts, "OWNER", pg.QuoteIdent(owner))
	}
	parts = append(parts, "TEMPLATE template0", "ENCODING", pg.QuoteLiteral(d.Encoding),
		"LC_COLLATE", pg.QuoteLiteral(d.Row.Collate), "LC_CTYPE", pg.QuoteLiteral(d.Row.Ctype))
	locale := d.Row.Locale
	if locale == nil {
		locale = d.Row.ICULocale
	}
	switch d.Row.Provider {
	case "i":
		parts = append(parts, "LOCALE_PROVIDER icu")
		if locale != nil {
			parts = append(parts, "ICU_LOCALE", pg.QuoteLiteral(*locale))
		}
		if d.Row.ICURules != nil && *d.Row.ICURules != "" {
			parts = append(parts, "ICU_RULES", pg.QuoteLiteral(*d.Row.ICURules))
		}
	case "b":
		parts = append(parts, "LOCALE_PROVIDER builtin")
		if locale != nil {
			parts = append(parts, "BUILTIN_LOCALE", pg.QuoteLiteral(*locale))
		}
	}
	return strings.Join(parts, " ") + ";", note
}

// roleOnGreen looks the role up through green's maintenance database (the
// target database does not exist); known is false when green cannot be
// asked.
func roleOnGreen(ctx context.Context, green *pgx.ConnConfig, role string) (exists, known bool) {
	for _, db := range []string{"postgres", "template1"} {
		cfg := green.Copy()
		cfg.Database = db
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			continue
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
			return false, false
		}
		return exists, true
	}
	return false, false
}
