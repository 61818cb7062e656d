package pg

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// replIsUndefined reports SQLSTATE 42704 (undefined_object) and friends
// that idempotent drops treat as "already gone".
func IsUndefined(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42704" || pgErr.Code == "42P01")
}

// isObjectInUse reports SQLSTATE 55006 (object_in_use): a slot someone
// holds, a subscription whose workers still run.
func IsObjectInUse(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55006"
}
