package engine

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// withServerDetail adds the DETAIL and HINT lines of the PostgreSQL error
// inside err to its message: pgx's message keeps only the first line, and
// the hint is often the fix ("Free one or increase max_replication_slots").
// The result still wraps err, for errors.Is and errors.As.
func withServerDetail(err error) error {
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) {
		return err
	}
	msg := err.Error()
	var extra []string
	// Integrity violations (class 23) detail the offending row's values:
	// user data, kept out of logs and the state file.
	if d := oneLine(pgErr.Detail, 300); d != "" && !strings.HasPrefix(pgErr.Code, "23") && !strings.Contains(msg, d) {
		extra = append(extra, "DETAIL: "+d)
	}
	if h := oneLine(pgErr.Hint, 300); h != "" && !strings.Contains(msg, h) {
		extra = append(extra, "HINT: "+h)
	}
	if len(extra) == 0 {
		return err
	}
	return &detailedError{err: err, msg: msg + " (" + strings.Join(extra, "; ") + ")"}
}

type detailedError struct {
	err error
	msg string
}

func (e *detailedError) Error() string { return e.msg }
func (e *detailedError) Unwrap() error { return e.err }

// oneLine folds a server text onto one line and bounds its length: a
// detail may quote a whole row.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
