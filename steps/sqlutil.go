package steps

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// QuoteLiteral quotes s as an SQL string literal for statements that cannot
// take parameters (COMMENT ON, CREATE ROLE ... PASSWORD). It follows libpq's
// PQescapeLiteral: quotes doubled, and backslashes doubled inside E'...' so
// the result is safe whatever standard_conforming_strings says.
func QuoteLiteral(s string) string {
	quoted := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		return "E" + strings.ReplaceAll(quoted, `\`, `\\`)
	}
	return quoted
}

// ServerVersion is a server's version as server_version_num (130023) and
// its major version (13).
type ServerVersion struct {
	Num   int
	Major int
}

func (v ServerVersion) String() string {
	if v.Major >= 10 {
		return fmt.Sprintf("%d.%d", v.Major, v.Num%10000)
	}
	return fmt.Sprintf("%d.%d.%d", v.Num/10000, v.Num/100%100, v.Num%100)
}

// ServerVersionOf reads the server's version.
func ServerVersionOf(ctx context.Context, db querier) (ServerVersion, error) {
	num, err := scalar[int](ctx, db, "SELECT current_setting('server_version_num')::int")
	if err != nil {
		return ServerVersion{}, fmt.Errorf("read server version: %w", err)
	}
	return versionFromNum(num), nil
}

func versionFromNum(num int) ServerVersion {
	// Before 10 the major had two parts (9.6); those servers are refused
	// anyway (no logical replication), so 9 is enough to compare.
	return ServerVersion{Num: num, Major: num / 10000}
}

// scalar runs a query that returns one row of one column.
func scalar[T any](ctx context.Context, db querier, sql string, args ...any) (T, error) {
	var v T
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return v, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return v, err
		}
		return v, fmt.Errorf("query returned no row")
	}
	if err := rows.Scan(&v); err != nil {
		return v, err
	}
	rows.Close()
	return v, rows.Err()
}

// setting reads one server setting as text.
func setting(ctx context.Context, db querier, name string) (string, error) {
	v, err := scalar[string](ctx, db, "SELECT current_setting($1)", name)
	if err != nil {
		return "", fmt.Errorf("read setting %s: %w", name, err)
	}
	return v, nil
}

// quoteIdent quotes one identifier.
func quoteIdent(name string) string { return pgx.Identifier{name}.Sanitize() }

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)

// showIdent is an identifier as a fix in a message shows it: bare when
// that reads the same to the server, quoted otherwise.
func showIdent(s string) string {
	if plainIdent.MatchString(s) {
		return s
	}
	return quoteIdent(s)
}

// displayName is schema.name for messages: parts quoted only when they need
// it, so that public.events reads as such and "Odd Name" stays unambiguous.
func displayName(schema, name string) string {
	return showIdent(schema) + "." + showIdent(name)
}

// DisplayName is the table's name for messages (see displayName).
func (t Table) DisplayName() string { return displayName(t.Schema, t.Name) }
