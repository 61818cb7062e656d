package querycompare

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgshift/pgshift/internal/pg"
)

// Marker opens every statement pgshift sends while comparing, so that
// blue's pg_stat_statements, read on the next run, leaves them out.
const Marker = "/* pgshift compare-queries */ "

// UnavailableError says blue's pg_stat_statements cannot be read, why and
// how to make it readable.
type UnavailableError struct {
	Database string
	Reason   string
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("pg_stat_statements on blue (database %q): %s. To enable it: add pg_stat_statements to shared_preload_libraries on blue (ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements', keeping any libraries already listed), restart blue, then run CREATE EXTENSION pg_stat_statements; in that database; or pass --top 0 with --queries FILE to compare only your own statements",
		e.Database, e.Reason)
}

// TopStatements reads blue's top statements of the current database by
// total execution time: at most top of them, pgshift's own left out. Each
// is named by its queryid. Blue's major chooses the columns (total_time
// before 13, toplevel since 14).
func TopStatements(ctx context.Context, db *pgx.Conn, top int) ([]Statement, error) {
	quietStatStatements(ctx, db)
	var dbname, schema string
	var num int
	err := db.QueryRow(ctx, Marker+`SELECT current_database(), coalesce((SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
		WHERE e.extname = 'pg_stat_statements'), ''), current_setting('server_version_num')::int`).Scan(&dbname, &schema, &num)
	if err != nil {
		return nil, fmt.Errorf("blue: look for pg_stat_statements: %w", err)
	}
	if schema == "" {
		return nil, &UnavailableError{Database: dbname, Reason: "the extension is not installed in this database"}
	}
	major := pg.VersionFromNum(num).Major
	total, mean, toplevel := "total_exec_time", "mean_exec_time", " AND s.toplevel"
	if major < 13 {
		total, mean = "total_time", "mean_time"
	}
	if major < 14 {
		toplevel = ""
	}
	q := fmt.Sprintf(Marker+`SELECT coalesce(s.queryid, 0), s.query, s.calls, s.%[1]s, s.%[2]s
		FROM %[3]s.pg_stat_statements s
		WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())%[4]s
		  AND s.query NOT LIKE '%%pgshift compare-queries%%'
		ORDER BY s.%[1]s DESC, s.queryid
		LIMIT $1`, total, mean, pg.QuoteIdent(schema), toplevel)
	// pgx reports a query's error at Query or at the end of the rows.
	readErr := func(err error) error {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && strings.Contains(pe.Message, "shared_preload_libraries") {
			return &UnavailableError{Database: dbname, Reason: "the extension is installed but the library is not loaded (" + pe.Message + ")"}
		}
		return fmt.Errorf("blue: read pg_stat_statements: %w", err)
	}
	rows, err := db.Query(ctx, q, top)
	if err != nil {
		return nil, readErr(err)
	}
	var out []Statement
	for rows.Next() {
		var s Statement
		if err := rows.Scan(&s.QueryID, &s.SQL, &s.Calls, &s.TotalTimeMS, &s.MeanTimeMS); err != nil {
			rows.Close()
			return nil, readErr(err)
		}
		s.Origin = FromStatStatements
		s.Name = fmt.Sprintf("queryid %d", s.QueryID)
		s.SQL = strings.TrimSpace(s.SQL)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, readErr(err)
	}
	return out, nil
}

// quietStatStatements asks blue's pg_stat_statements not to record this
// session (a superuser setting; without the right it stays on and Marker
// keeps the statements apart).
func quietStatStatements(ctx context.Context, conn *pgx.Conn) {
	_, _ = conn.Exec(ctx, Marker+"SET pg_stat_statements.track = 'none'")
}
