package pg

import (
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

// quoteIdent quotes one identifier.
func QuoteIdent(name string) string { return pgx.Identifier{name}.Sanitize() }

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)

// showIdent is an identifier as a fix in a message shows it: bare when
// that reads the same to the server, quoted otherwise.
func ShowIdent(s string) string {
	if plainIdent.MatchString(s) {
		return s
	}
	return QuoteIdent(s)
}

// displayName is schema.name for messages: parts quoted only when they need
// it, so that public.events reads as such and "Odd Name" stays unambiguous.
func DisplayName(schema, name string) string {
	return ShowIdent(schema) + "." + ShowIdent(name)
}
