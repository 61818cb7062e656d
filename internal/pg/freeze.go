package pg

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The read-only freeze stops writes on a database without a pooler:
//
//	ALTER DATABASE x SET default_transaction_read_only = on
//
// It only changes the default of sessions that start afterwards. Sessions
// already connected keep writing; to stop them, wait for their write
// transactions to end (WaitForWriters) and end the sessions
// (TerminateSessions): their clients see a dropped connection and reconnect
// read-only. With PgBouncer in front, PAUSE is the freeze that clients do
// not notice, and the read-only freeze is a second lock for anything that
// bypasses the pooler.
//
// A default is not a wall: a session may still run BEGIN READ WRITE or
// SET default_transaction_read_only = off. pgshift's own writes on a frozen
// database (the drain marker row, CREATE SUBSCRIPTION) must do exactly that,
// and must use sessions opened before the freeze or set it themselves.
//
// A frozen database stays frozen across a crash of pgshift, so the run
// records the freeze before making it and the next command checks
// ReadOnlyFrozen and unfreezes.

// ReadOnlyState is a database's own default_transaction_read_only setting
// (ALTER DATABASE ... SET, for every role).
type ReadOnlyState struct {
	Set      bool   // the database has its own setting
	Value    string // as stored, e.g. "on"
	ReadOnly bool   // the setting makes new sessions read-only
}

const readOnlyStateSQL = `
SELECT c
  FROM pg_db_role_setting s
  JOIN pg_database d ON d.oid = s.setdatabase
 CROSS JOIN LATERAL unnest(s.setconfig) AS c
 WHERE d.datname = $1 AND s.setrole = 0
   AND c LIKE 'default\_transaction\_read\_only=%'`

// ReadOnlyFrozen reads a database's default_transaction_read_only setting.
func ReadOnlyFrozen(ctx context.Context, db Querier, name string) (ReadOnlyState, error) {
	rows, err := db.Query(ctx, readOnlyStateSQL, name)
	if err != nil {
		return ReadOnlyState{}, fmt.Errorf("database %s: read default_transaction_read_only: %w", name, err)
	}
	defer rows.Close()
	var st ReadOnlyState
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return ReadOnlyState{}, fmt.Errorf("database %s: read default_transaction_read_only: %w", name, err)
		}
		st.Set = true
		st.Value = strings.TrimPrefix(c, "default_transaction_read_only=")
		st.ReadOnly = IsTrue(st.Value)
	}
	if err := rows.Err(); err != nil {
		return ReadOnlyState{}, fmt.Errorf("database %s: read default_transaction_read_only: %w", name, err)
	}
	return st, nil
}

// isTrue reads a boolean setting as PostgreSQL does.
func IsTrue(v string) bool {
	switch strings.ToLower(strings.Trim(v, `"' `)) {
	case "on", "true", "yes", "1", "t", "y", "tr", "tru", "ye":
		return true
	}
	return false
}

// FreezeReadOnly makes new sessions on the database read-only; a no-op when
// they are already. It needs the database's owner or a superuser.
//
// The setting cannot say who made it. Before the first freeze, read
// ReadOnlyFrozen and record in the state whether the owner had made the
// database read-only: such a database must not be unfrozen afterwards. On a
// resumed run that record, not the live setting, tells the two apart.
func FreezeReadOnly(ctx context.Context, db Querier, name string) error {
	st, err := ReadOnlyFrozen(ctx, db, name)
	if err != nil {
		return err
	}
	if st.ReadOnly {
		return nil
	}
	if err := Exec(ctx, db, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" SET default_transaction_read_only = on"); err != nil {
		return fmt.Errorf("database %s: freeze (ALTER DATABASE ... SET default_transaction_read_only = on): %w (pgshift needs to own the database or be superuser)", name, err)
	}
	return nil
}

// UnfreezeReadOnly removes the database's default_transaction_read_only
// setting; a database without one is left as it is. New sessions write
// again; sessions opened during the freeze stay read-only until they end.
func UnfreezeReadOnly(ctx context.Context, db Querier, name string) error {
	st, err := ReadOnlyFrozen(ctx, db, name)
	if err != nil {
		return err
	}
	if !st.Set {
		return nil
	}
	if err := Exec(ctx, db, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" RESET default_transaction_read_only"); err != nil {
		return fmt.Errorf("database %s: unfreeze (ALTER DATABASE ... RESET default_transaction_read_only): %w; run it by hand to let writes in again", name, err)
	}
	return nil
}

// writersSQL lists other client sessions on the database that hold a
// transaction id: a transaction that has written and not ended.
const writersSQL = `
SELECT pid
  FROM pg_stat_activity
 WHERE datname = $1 AND pid <> pg_backend_pid()
   AND backend_type = 'client backend'
   AND backend_xid IS NOT NULL
 ORDER BY pid`

// WaitForWriters waits until no other session on the database is inside a
// transaction that has written, polling every pollEvery. When ctx's deadline
// comes first it returns the process ids still writing; it stops polling
// just before the deadline so that db's connection is not cut mid-query.
func WaitForWriters(ctx context.Context, db Querier, name string, pollEvery time.Duration) error {
	if pollEvery <= 0 {
		pollEvery = 10 * time.Millisecond
	}
	var lastSeen []int32
	for {
		pids, err := writers(ctx, db, name)
		if err != nil {
			// The deadline came during a poll: name the writers seen last.
			if ctx.Err() != nil && len(lastSeen) > 0 {
				return fmt.Errorf("database %s: sessions %v are still in write transactions: %w", name, lastSeen, ctx.Err())
			}
			return err
		}
		lastSeen = pids
		if len(pids) == 0 {
			return nil
		}
		wait := pollEvery
		last := false
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= pollEvery {
			wait, last = time.Until(dl), true
		}
		select {
		case <-ctx.Done():
			last = true
		case <-time.After(wait):
		}
		if last {
			cause := ctx.Err()
			if cause == nil {
				cause = context.DeadlineExceeded
			}
			return fmt.Errorf("database %s: sessions %v are still in write transactions: %w", name, pids, cause)
		}
	}
}

func writers(ctx context.Context, db Querier, name string) ([]int32, error) {
	rows, err := db.Query(ctx, writersSQL, name)
	if err != nil {
		return nil, fmt.Errorf("database %s: list write transactions: %w", name, err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("database %s: list write transactions: %w", name, err)
	}
	return pids, nil
}

// TerminateSessions ends every other client session on the database,
// except those whose application_name is keepApplication (when not ""), and
// returns how many it ended. Their clients see the connection drop.
func TerminateSessions(ctx context.Context, db Querier, name, keepApplication string) (int, error) {
	n, err := Scalar[int64](ctx, db, `
SELECT count(pg_terminate_backend(pid))
  FROM pg_stat_activity
 WHERE datname = $1 AND pid <> pg_backend_pid()
   AND backend_type = 'client backend'
   AND ($2 = '' OR application_name IS DISTINCT FROM $2)`, name, keepApplication)
	if err != nil {
		return 0, fmt.Errorf("database %s: end sessions: %w", name, err)
	}
	return int(n), nil
}

// UnendableSessions lists the client sessions on the database that the
// connected role could not end (pg_terminate_backend needs superuser for a
// superuser's session, and membership of the session's role or of
// pg_signal_backend for the others), except keepApplication's, each as
// "pid N (role R, application A)". The read-only freeze ends every
// session, so a role without those rights must learn of them before it.
func UnendableSessions(ctx context.Context, db Querier, name, keepApplication string) ([]string, error) {
	rows, err := db.Query(ctx, `
SELECT format('pid %s (role %s, application %s)', a.pid, a.usename, coalesce(nullif(a.application_name, ''), 'none'))
  FROM pg_stat_activity a
  JOIN pg_roles r ON r.oid = a.usesysid
 WHERE a.datname = $1 AND a.pid <> pg_backend_pid()
   AND a.backend_type = 'client backend'
   AND ($2 = '' OR a.application_name IS DISTINCT FROM $2)
   AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
   AND NOT pg_has_role(current_user, a.usesysid, 'MEMBER')
   AND (r.rolsuper OR NOT pg_has_role(current_user, 'pg_signal_backend', 'MEMBER'))
 ORDER BY a.pid`, name, keepApplication)
	if err != nil {
		return nil, fmt.Errorf("database %s: list sessions: %w", name, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("database %s: list sessions: %w", name, err)
	}
	return out, nil
}

// OpenTransactions lists the other client sessions on the database inside
// a transaction begun before startedBefore, oldest first, except
// keepApplication's (when not ""), each as "pid N (role R, application A,
// idle in transaction for 9.1 s)". A pooler freeze (PgBouncer PAUSE) waits
// for the transactions running when it was issued: when it times out, they
// are what to name.
func OpenTransactions(ctx context.Context, db Querier, name, keepApplication string, startedBefore time.Time) ([]string, error) {
	rows, err := db.Query(ctx, `
SELECT format('pid %s (role %s, application %s, %s for %s s)', pid, usename,
              coalesce(nullif(application_name, ''), 'none'), coalesce(state, 'unknown'),
              round(extract(epoch FROM clock_timestamp() - xact_start)::numeric, 1))
  FROM pg_stat_activity
 WHERE datname = $1 AND pid <> pg_backend_pid()
   AND backend_type = 'client backend'
   AND xact_start < $3
   AND ($2 = '' OR application_name IS DISTINCT FROM $2)
 ORDER BY xact_start, pid`, name, keepApplication, startedBefore)
	if err != nil {
		return nil, fmt.Errorf("database %s: list open transactions: %w", name, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("database %s: list open transactions: %w", name, err)
	}
	return out, nil
}
