package steps

import (
	"context"
	"fmt"
	"strings"

	"github.com/pgshift/pgshift/internal/pg"
)

// dbLocale is how a database stores and sorts text.
type dbLocale struct {
	name, encoding, collate, ctype string
	provider                       string // libc, icu or builtin
	locale                         string // the ICU or builtin locale; "" with libc
	version                        string // the collation's actual version; "" when unknown
}

func (l dbLocale) sorting() string {
	if l.provider == "libc" {
		if l.collate == l.ctype {
			return "libc " + l.collate
		}
		return fmt.Sprintf("libc LC_COLLATE %s, LC_CTYPE %s", l.collate, l.ctype)
	}
	return l.provider + " " + l.locale
}

// readLocale reads the connected database's encoding and locale. Columns
// that some majors lack (datlocprovider since 15, daticulocale 15-16,
// datlocale since 17) are read through to_jsonb.
func readLocale(ctx context.Context, db pg.Querier, major int) (dbLocale, error) {
	version := `(SELECT pg_catalog.pg_collation_actual_version(c.oid) FROM pg_catalog.pg_collation c
                  WHERE c.collname = d.datcollate AND c.collprovider = 'c' AND c.collencoding IN (-1, d.encoding) LIMIT 1)`
	if major >= 15 {
		version = `pg_catalog.pg_database_collation_actual_version(d.oid)`
	}
	var l dbLocale
	var provider string
	var ver *string
	err := db.QueryRow(ctx, `
SELECT d.datname, pg_catalog.pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
       coalesce(to_jsonb(d)->>'datlocprovider', 'c'),
       coalesce(to_jsonb(d)->>'datlocale', to_jsonb(d)->>'daticulocale', ''),
       `+version+`
  FROM pg_catalog.pg_database d WHERE d.datname = current_database()`).
		Scan(&l.name, &l.encoding, &l.collate, &l.ctype, &provider, &l.locale, &ver)
	if err != nil {
		return l, fmt.Errorf("read the database's encoding and locale: %w", err)
	}
	switch provider {
	case "i":
		l.provider = "icu"
	case "b":
		l.provider = "builtin"
	default:
		l.provider, l.locale = "libc", ""
	}
	if ver != nil {
		l.version = *ver
	}
	return l, nil
}

// createDatabaseLike is the statement that makes a database of green's name
// with blue's encoding and locale.
func createDatabaseLike(name string, blue dbLocale, greenMajor int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE DATABASE %s TEMPLATE template0 ENCODING %s LC_COLLATE %s LC_CTYPE %s",
		pg.ShowIdent(name), pg.QuoteLiteral(blue.encoding), pg.QuoteLiteral(blue.collate), pg.QuoteLiteral(blue.ctype))
	if greenMajor >= 15 {
		// Say the provider: template0's may differ from blue's.
		switch blue.provider {
		case "icu":
			fmt.Fprintf(&b, " LOCALE_PROVIDER icu ICU_LOCALE %s", pg.QuoteLiteral(blue.locale))
		case "builtin":
			fmt.Fprintf(&b, " LOCALE_PROVIDER builtin BUILTIN_LOCALE %s", pg.QuoteLiteral(blue.locale))
		default:
			b.WriteString(" LOCALE_PROVIDER libc")
		}
	}
	return b.String() + ";"
}

// auditLocale compares blue's and green's databases: a different encoding
// blocks (text blue stores may not exist in green's encoding, and the copy
// converts every value); a different collation, provider or collation
// version only warns, since green builds its own indexes in its own order,
// but text sorts and compares differently after the cutover.
func auditLocale(ctx context.Context, f *findings, blue, green pg.Querier) error {
	bm, err := pg.ServerMajor(ctx, blue)
	if err != nil {
		return fmt.Errorf("blue: %w", err)
	}
	gm, err := pg.ServerMajor(ctx, green)
	if err != nil {
		return fmt.Errorf("green: %w", err)
	}
	b, err := readLocale(ctx, blue, bm)
	if err != nil {
		return fmt.Errorf("blue: %w", err)
	}
	g, err := readLocale(ctx, green, gm)
	if err != nil {
		return fmt.Errorf("green: %w", err)
	}
	recreate := fmt.Sprintf("DROP DATABASE %s; %s", pg.ShowIdent(g.name), createDatabaseLike(g.name, b, gm))
	f.check("same encoding on green", b.encoding == g.encoding, b.encoding,
		fmt.Sprintf("blue's database %s is %s and green's %s is %s: logical replication converts every text value, and fails on a character %s cannot hold. Recreate green's database with blue's encoding while it is still empty (connected to another database on green): %s",
			pg.ShowIdent(b.name), b.encoding, pg.ShowIdent(g.name), g.encoding, g.encoding, recreate))
	if b.encoding != g.encoding {
		return nil // the fix recreates green's database with blue's locale too
	}
	if b.sorting() != g.sorting() {
		f.warn("blue's database sorts text by %s and green's by %s: green builds its indexes in its own order, so they stay consistent, but ORDER BY, comparisons (<, BETWEEN) and unique constraints on text may give other results after the cutover; to keep blue's order, recreate green's database while it is still empty: %s",
			b.sorting(), g.sorting(), recreate)
		return nil
	}
	if b.version != "" && g.version != "" && b.version != g.version {
		f.warn("blue's collation %s is version %s and green's version %s (another glibc or ICU): the same locale may sort some strings differently; green's indexes are built in green's order, but ORDER BY and comparisons on text may give other results after the cutover: check the ordering the application relies on",
			b.sorting(), b.version, g.version)
	}
	f.detail("database encoding %s, collation %s on both sides", b.encoding, b.sorting())
	return nil
}
