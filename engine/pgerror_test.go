package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestWithServerDetail(t *testing.T) {
	pgErr := &pgconn.PgError{Severity: "ERROR", Code: "53400", Message: "all replication slots are in use",
		Hint: "Free one or increase max_replication_slots."}
	err := withServerDetail(fmt.Errorf("create replication slot %q on blue: %w", "pgshift_app", pgErr))
	want := `create replication slot "pgshift_app" on blue: ERROR: all replication slots are in use (SQLSTATE 53400) (HINT: Free one or increase max_replication_slots.)`
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
	var got *pgconn.PgError
	if !errors.As(err, &got) || got.Code != "53400" {
		t.Errorf("the PostgreSQL error is no longer reachable with errors.As")
	}

	detail := &pgconn.PgError{Severity: "ERROR", Code: "55006", Message: "replication slot \"s\" is active for PID 42",
		Detail: "Drop the subscription\n first."}
	if got := withServerDetail(detail).Error(); got != `ERROR: replication slot "s" is active for PID 42 (SQLSTATE 55006) (DETAIL: Drop the subscription first.)` {
		t.Errorf("detail folded onto one line: %s", got)
	}
	// A row's values stay out of the message.
	row := &pgconn.PgError{Severity: "ERROR", Code: "23505", Message: "duplicate key value violates unique constraint \"t_pkey\"",
		Detail: "Key (email)=(someone@example.com) already exists."}
	if got := withServerDetail(row).Error(); strings.Contains(got, "someone@") {
		t.Errorf("an integrity violation's row values reached the message: %s", got)
	}

	// Nothing to add: the same error comes back.
	plain := fmt.Errorf("wrapped: %w", context.Canceled)
	if withServerDetail(plain) != plain || withServerDetail(nil) != nil {
		t.Errorf("an error without a PostgreSQL detail must come back unchanged")
	}
}
