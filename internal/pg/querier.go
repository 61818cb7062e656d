package pg

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is what *pgx.Conn, pgx.Tx and *pgxpool.Pool all offer: every
// helper here takes one, so a caller passes whichever it holds.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// scalar runs a query that returns one row of one column.
func Scalar[T any](ctx context.Context, db Querier, sql string, args ...any) (T, error) {
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
func Setting(ctx context.Context, db Querier, name string) (string, error) {
	v, err := Scalar[string](ctx, db, "SELECT current_setting($1)", name)
	if err != nil {
		return "", fmt.Errorf("read setting %s: %w", name, err)
	}
	return v, nil
}

// execSQL runs a statement that returns no rows through a querier.
func Exec(ctx context.Context, db Querier, sql string, args ...any) error {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}
